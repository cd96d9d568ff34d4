//! A recording someone attends: the live view on their terminal while it runs, the metrics
//! exporter beside it, and at its end the summary, the verdict and the report. `run`,
//! `attach` and `demo` record this way, `watch` ends this way, and `soak` serves its metrics
//! the same way.

use crate::analysis::Findings;
use crate::console::{say, View};
use crate::exit::{EXIT_FINDING, EXIT_OK};
use crate::harness::{record, HarnessConfig, RunSummary, Workload};
use crate::live::{draw_until, SharedStatus};
use crate::metrics::MetricsOptions;
use crate::stop_token::StopToken;
use crate::supervisor::{stop_on_signals, Exit};
use std::path::{Path, PathBuf};

/// What the person asked of the attended part: no live view (`--quiet`), no report
/// (`--no-report`), and where to serve metrics.
#[derive(Debug, Clone, Default)]
pub struct Attendance {
    pub quiet: bool,
    pub no_report: bool,
    pub metrics: MetricsOptions,
}

/// Records with the live view on a terminal (unless `--quiet`), then says how the run went:
/// the summary, the verdict, the recording's and the report's paths. Returns the exit code and
/// what the verdict was drawn from.
pub fn record_and_conclude(
    mut config: HarnessConfig,
    workload: Workload,
    attendance: &Attendance,
) -> anyhow::Result<(u8, Option<Concluded>)> {
    let live = SharedStatus::default();
    let exporter = start_metrics(&attendance.metrics, &live)?;
    let what = match &workload {
        Workload::Spawn { workers, .. } => format!("{workers} worker(s)"),
        Workload::Attach { pids, .. } => format!("{} attached process(es)", pids.len()),
    };
    say(format!(
        "recording {what} into {} (Ctrl-C stops; twice kills the workers at once)",
        config.run_dir.display()
    ));
    config.live = Some(live.clone());
    let done = StopToken::new();
    let drawer = (!attendance.quiet)
        .then(View::start)
        .flatten()
        .and_then(|terminal| {
            let (live, done) = (live.clone(), done.clone());
            std::thread::Builder::new()
                .name("memwarden-view".into())
                .spawn(move || draw_until(&terminal, &live, &done))
                .ok()
        });
    let summary = record(config, workload, stop_on_signals()?);
    done.stop();
    if let Some(drawer) = drawer {
        let _ = drawer.join();
    }
    if let Some(exporter) = exporter {
        exporter.finish();
    }
    let summary = summary?;
    let code = print_summary(&summary);
    let crashes: Vec<(u32, String)> = summary
        .failed_workers
        .iter()
        .map(|(worker, exit)| (*worker, exit_words(exit)))
        .collect();
    let concluded = conclude(&summary.run_dir, attendance.no_report, &crashes);
    Ok((code, concluded))
}

/// Starts serving the live status to Prometheus when asked; an address or directory that cannot
/// be used is an error before any worker starts.
pub fn start_metrics(
    options: &MetricsOptions,
    live: &SharedStatus,
) -> anyhow::Result<Option<crate::metrics::Exporter>> {
    if options.listen.is_none() && options.textfile.is_none() {
        return Ok(None);
    }
    let exporter = crate::metrics::Exporter::start(options, live.clone())?;
    if let Some(address) = exporter.listening {
        say(format!("metrics: http://{address}/metrics"));
    }
    if let Some(dir) = &options.textfile {
        say(format!(
            "metrics: {} (every 2 s)",
            dir.join(crate::metrics::TEXTFILE).display()
        ));
    }
    Ok(Some(exporter))
}

/// What the end-of-run verdict was drawn from.
pub struct Concluded {
    pub findings: Findings,
    pub report: Option<PathBuf>,
}

/// The verdict of the recording in `run_dir` and where it and its report are; the report is
/// written unless `no_report`. A failure here is a warning: the recording is whole, and
/// `memwarden report` can try again.
pub fn conclude(run_dir: &Path, no_report: bool, crashes: &[(u32, String)]) -> Option<Concluded> {
    let made = if no_report {
        crate::analysis::analyze_run(run_dir, crate::analysis::HORIZON)
            .map(|(_, f)| (f, None))
            .map_err(anyhow::Error::from)
    } else {
        let job = crate::report::pipeline::ReportJob::for_run(run_dir, None, false);
        crate::report::pipeline::write_report_with(&job, None).map(|(path, f)| (f, Some(path)))
    };
    let (findings, report) = match made {
        Ok(made) => made,
        Err(error) => {
            say(format!(
                "warning: no verdict: {}; try `memwarden report {}`",
                crate::exit::describe(&error),
                run_dir.display()
            ));
            return None;
        }
    };
    for line in crate::analysis::brief::brief(&findings, crashes) {
        say(line);
    }
    say(format!("recording: {}", run_dir.display()));
    if let Some(report) = &report {
        say(format!("report: {}", report.display()));
    }
    Some(Concluded { findings, report })
}

/// `exited with code 3`, `was killed by signal 9`.
pub fn exit_words(exit: &Exit) -> String {
    match (exit.code, exit.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (_, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".into(),
    }
}

pub fn print_summary(summary: &RunSummary) -> u8 {
    eprintln!(
        "memwarden: {}: {} ticks, {} events, {} smaps snapshots, {} overrun ticks, {} dropped",
        summary.stop_reason,
        summary.writer.ticks,
        summary.writer.events,
        summary.writer.snapshots,
        summary.sampler.overrun_ticks,
        summary.writer.dropped_ticks,
    );
    for (worker, exit) in &summary.failed_workers {
        say(format!("worker {worker} {}", exit_words(exit)));
    }
    if let Some(counters) = &summary.policy {
        let restarts: u64 = counters.restarts.values().sum();
        eprintln!(
            "memwarden: policy: {} trial(s) held back by the brake, {} escalation(s), {restarts} restart(s), {} crash(es)",
            counters.brakes, counters.escalations, counters.crashes
        );
        for reason in &counters.degraded {
            eprintln!("memwarden: degraded: {reason}");
        }
    }
    println!("{}", summary.run_dir.display());
    let degraded = summary
        .policy
        .as_ref()
        .is_some_and(|c| !c.degraded.is_empty());
    if summary.failed_workers.is_empty() && !degraded {
        EXIT_OK
    } else {
        EXIT_FINDING
    }
}
