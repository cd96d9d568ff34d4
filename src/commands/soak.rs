//! `memwarden soak`: workers for hours under the policy (started again whenever they finish),
//! live progress, a report checkpoint (published off the box) every `--checkpoint`, and a
//! pass/fail verdict at the end.

use super::record::{harness_config, load_policy};
use super::{EXIT_FINDING, EXIT_OK};
use crate::analysis::{self, Findings, Options};
use crate::cli::{ReportArgs, SoakArgs};
use crate::harness::{record, LiveStatus, SharedStatus, Workload};
use crate::policy::Policy;
use crate::recording::{write_atomically, Recording};
use crate::soak::publish::{publish, Publisher};
use crate::soak::{
    judge, oom_kills_of_run, progress_line, verdict_text, worker_lines, SoakVerdict,
};
use crate::supervisor::stop_on_signals;
use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn soak(args: SoakArgs) -> anyhow::Result<u8> {
    let Some(total) = args.record.duration else {
        anyhow::bail!("soak needs --duration (e.g. 2m in CI, 12h before a rollout)");
    };
    let (mut policy, text) =
        load_policy(&args.policy)?.unwrap_or_else(|| (Policy::default(), String::new()));
    policy.restart.when_finished = true;
    if let Some(grace) = args.grace {
        policy.restart.grace = grace;
    }
    let mut publishers = Vec::new();
    if let Some(dir) = &args.publish {
        publishers.push(Publisher::Dir(dir.clone()));
    }
    if let Some(command) = &args.publish_cmd {
        publishers.push(Publisher::Command(command.0.clone()));
    }
    let mut config = harness_config(&args.record, policy.restart.grace);
    config.policy = Some(policy);
    config.policy_text = Some(text);
    config.mode = "soak".into();
    let live: SharedStatus = Arc::new(Mutex::new(LiveStatus::default()));
    config.live = Some(live.clone());
    let run_dir = config.run_dir.clone();
    eprintln!(
        "memwarden: soak: {} worker(s) for {} into {} (checkpoint every {})",
        args.workers,
        humantime::format_duration(total),
        run_dir.display(),
        humantime::format_duration(args.checkpoint)
    );
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let (live, done) = (live.clone(), done.clone());
        std::thread::spawn(move || show_progress(&live, &done, total))
    };
    let checkpoints = {
        let (dir, done, every) = (run_dir.clone(), done.clone(), args.checkpoint);
        let publishers = publishers.clone();
        let live = live.clone();
        let budget = args.max_growth;
        std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !done.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    checkpoint(&dir, &live, budget, &publishers);
                    next += every;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let workload = Workload::Spawn {
        argv: args.command.clone(),
        workers: args.workers,
    };
    let summary = record(config, workload, stop_on_signals()?);
    done.store(true, Ordering::Relaxed);
    let _ = progress.join();
    let _ = checkpoints.join();
    let summary = summary?;
    let recording = Recording::open(&run_dir)?;
    // The report's own analysis gives the verdict; only where the report cannot be written
    // (its plots, say) is the recording analysed on its own.
    let findings = match report(&run_dir, None) {
        Ok((_, findings)) => findings,
        Err(error) => {
            eprintln!(
                "memwarden: warning: the final report failed: {}",
                crate::exit::describe(&error)
            );
            analysis::analyze(&recording, &Options::default())?
        }
    };
    let counters = summary.policy.clone().unwrap_or_default();
    let elapsed = live.lock().map_or(0, |s| s.elapsed_ns) as f64 / 1e9;
    let kills = kernel_kills(&recording);
    let verdict = judge(
        &findings,
        args.max_growth,
        &summary.failed_workers,
        &kills,
        &counters,
        elapsed,
    );
    write_verdict(&run_dir.join("verdict.json"), &verdict)?;
    for publisher in &publishers {
        say_published(publish(&run_dir, publisher));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", verdict_text(&verdict));
        println!("The report: {}", run_dir.join("report/report.md").display());
    }
    Ok(if verdict.passed() {
        EXIT_OK
    } else {
        EXIT_FINDING
    })
}

/// OOM kills of the run's processes in the kernel log (`dmesg -T`), which also sees a worker's
/// children; where it cannot be read, says so: only the workers' own exits are then checked.
fn kernel_kills(recording: &Recording) -> Vec<String> {
    let output = std::process::Command::new("dmesg").arg("-T").output();
    let text = match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            eprintln!("memwarden: note: cannot read the kernel log (dmesg -T): OOM kills of the workers' child processes are not checked");
            return Vec::new();
        }
    };
    let pids = crate::recording::worker_pids(&recording.events);
    let start = recording.manifest.start_wall_ns;
    let year = super::report::year_of(start);
    oom_kills_of_run(&crate::report::oom_kills(&text, year), &pids, start)
}

fn write_verdict(path: &Path, verdict: &SoakVerdict) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(verdict)?;
    write_atomically(path, json.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn report(run_dir: &Path, out: Option<PathBuf>) -> anyhow::Result<(PathBuf, Findings)> {
    super::write_report_with(&ReportArgs::for_run(run_dir, out, false), None)
}

/// `RUN_DIR/checkpoint/`: the report so far and the verdict so far (from the findings and the
/// live counters), replaced whole each time; then published.
fn checkpoint(
    run_dir: &Path,
    live: &SharedStatus,
    budget: Option<crate::analysis::gates::GrowthBudget>,
    publishers: &[Publisher],
) {
    let fresh = run_dir.join("checkpoint.partial");
    let kept = run_dir.join("checkpoint");
    let written = (|| -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&fresh);
        let (_, findings) = report(run_dir, Some(fresh.clone()))?;
        let status = live.lock().map(|s| s.clone()).unwrap_or_default();
        let verdict = judge(
            &findings,
            budget,
            &[],
            &[],
            &status.counters,
            status.elapsed_ns as f64 / 1e9,
        );
        write_verdict(&fresh.join("verdict.json"), &verdict)?;
        let _ = std::fs::remove_dir_all(&kept);
        std::fs::rename(&fresh, &kept).context("cannot move the checkpoint in place")?;
        Ok(())
    })();
    match written {
        Ok(()) => {
            for publisher in publishers {
                say_published(publish(run_dir, publisher));
            }
        }
        Err(error) => eprintln!(
            "memwarden: warning: checkpoint failed: {}",
            crate::exit::describe(&error)
        ),
    }
}

fn say_published(result: Result<String, String>) {
    match result {
        Ok(what) => eprintln!("memwarden: published: {what}"),
        Err(why) => eprintln!("memwarden: warning: publish failed: {why}"),
    }
}

/// Bars on a terminal; plain lines (for CI logs) every tenth of the run, at most a minute apart.
fn show_progress(live: &SharedStatus, done: &AtomicBool, total: Duration) {
    let snapshot = || live.lock().map(|s| s.clone()).unwrap_or_default();
    let total_s = total.as_secs_f64();
    if std::io::stderr().is_terminal() {
        let multi = MultiProgress::new();
        let header = multi.add(ProgressBar::new(total.as_secs().max(1)));
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {msg}") {
            header.set_style(style);
        }
        let mut bars: Vec<ProgressBar> = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let status = snapshot();
            header.set_position(status.elapsed_ns / 1_000_000_000);
            header.set_message(progress_line(&status, total_s));
            for (index, line) in worker_lines(&status).into_iter().enumerate() {
                if bars.len() <= index {
                    let bar = multi.add(ProgressBar::new_spinner());
                    if let Ok(style) = ProgressStyle::with_template("  {msg}") {
                        bar.set_style(style);
                    }
                    bars.push(bar);
                }
                bars[index].set_message(line);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        header.finish();
        bars.iter().for_each(ProgressBar::finish);
        return;
    }
    let every = (total / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut next = Instant::now() + every;
    while !done.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            let status = snapshot();
            eprintln!("memwarden: soak: {}", progress_line(&status, total_s));
            for line in worker_lines(&status) {
                eprintln!("memwarden: soak:   {line}");
            }
            next += every;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
