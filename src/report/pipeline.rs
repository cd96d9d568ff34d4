//! From a recording (or worker and kernel logs alone) to `report.md` and its plots: analysis,
//! what this host can tell (its boot, its kernel log), the plots, and the Markdown, written
//! beside the recording or where the job says. `memwarden report` and every command that
//! reports on its own recording (soak, replay, simulate, the demo) run this one pipeline.

use super::plots::PolicyMarks;
use super::{oom_kills, worker_log, ReportInput};
use crate::analysis::{self, Findings, Options};
use crate::exit::own_work;
use crate::plot::Format;
use crate::policy::Simulation;
use crate::probe::{boot_wall_ns, host_facts, ProcRoot};
use crate::recording::{
    Event, EventKind, Manifest, PolicyAction, Recording, RunStatus, FORMAT_VERSION,
};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// What to report on and where.
#[derive(Debug, Clone, Default)]
pub struct ReportJob {
    /// The run directory; `None` reports from `worker_logs` and `kernel_logs` alone.
    pub run_dir: Option<PathBuf>,
    /// Where report.md and plots/ go (default: RUN_DIR/report, or ./memwarden-report).
    pub out: Option<PathBuf>,
    pub svg: bool,
    pub kernel_logs: Vec<PathBuf>,
    pub worker_logs: Vec<PathBuf>,
    /// Leave out what only this host can tell (reports kept in a repository).
    pub no_host: bool,
}

impl ReportJob {
    /// The report of a recording, with no logs added: what commands that record write at
    /// their end.
    pub fn for_run(run_dir: &Path, out: Option<PathBuf>, no_host: bool) -> Self {
        Self {
            run_dir: Some(run_dir.to_path_buf()),
            out,
            no_host,
            ..Self::default()
        }
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes `report.md` and `plots/`; returns the report's path.
pub fn write_report(job: &ReportJob) -> anyhow::Result<PathBuf> {
    Ok(write_report_with(job, None)?.0)
}

/// The same, with a policy simulation: its actions (as events) join the recording's. Also
/// returns the findings the report was written from, so a caller that needs them (a verdict)
/// does not analyse the recording a second time.
pub fn write_report_with(
    job: &ReportJob,
    simulation: Option<(&Simulation, Vec<Event>)>,
) -> anyhow::Result<(PathBuf, Findings)> {
    let worker_logs: Vec<String> = job
        .worker_logs
        .iter()
        .map(|p| read_text(p))
        .collect::<anyhow::Result<_>>()?;
    let (manifest, events, analysis, data_files, out) = match &job.run_dir {
        Some(dir) => {
            let mut recording = Recording::open(dir)?;
            recording.manifest.check_version(dir)?;
            add_worker_logs(
                &mut recording.events,
                &worker_logs,
                &job.worker_logs,
                &recording.manifest,
            );
            let options = Options {
                live: recording.manifest.still_recording(),
                ..Options::default()
            };
            let analysis = analysis::analyze_with_series(&recording, &options)?;
            if let Some((_, events)) = &simulation {
                recording.events.extend(events.iter().cloned());
                recording.events.sort_by_key(|e| e.t_ns);
            }
            // A published run's partition belongs to the layout: its report goes elsewhere.
            let out = job.out.clone().unwrap_or_else(|| {
                if crate::recording::layout::published_run(dir).is_some() {
                    PathBuf::from("memwarden-report")
                } else {
                    dir.join("report")
                }
            });
            let files = data_files(dir)?;
            (recording.manifest, recording.events, analysis, files, out)
        }
        None => {
            let manifest = logs_manifest(&job.worker_logs, &worker_logs)?;
            let mut events = Vec::new();
            add_worker_logs(&mut events, &worker_logs, &job.worker_logs, &manifest);
            let analysis = analysis::logs_only(&manifest, &events);
            let out = job
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("memwarden-report"));
            (manifest, events, analysis, Vec::new(), out)
        }
    };
    let year = year_of(manifest.start_wall_ns);
    let mut kills = Vec::new();
    for log in &job.kernel_logs {
        kills.extend(oom_kills(&read_text(log)?, year));
    }
    let input = ReportInput {
        manifest: &manifest,
        events: &events,
        analysis: &analysis,
        kills: &kills,
        current_boot_id: None,
        boot_wall_ns: None,
        data_files,
        plots: Vec::new(),
        reporter_version: env!("CARGO_PKG_VERSION").to_string(),
        simulation: simulation.map(|(s, _)| s),
    };
    let path = write(job, input, &out)?;
    Ok((path, analysis.findings))
}

/// Adds the plots and what this host can tell, then writes the report.
fn write(job: &ReportJob, mut input: ReportInput, out: &Path) -> anyhow::Result<PathBuf> {
    let plots_dir = out.join("plots");
    own_work(
        std::fs::create_dir_all(&plots_dir)
            .with_context(|| format!("cannot create {}", plots_dir.display())),
    )?;
    let format = if job.svg { Format::Svg } else { Format::Png };
    let start_wall_ns = input.manifest.start_wall_ns;
    let marks = policy_marks(input.events, input.simulation);
    input.plots = own_work(super::plots::write_plots(
        input.analysis,
        start_wall_ns,
        &plots_dir,
        format,
        &marks,
    ))?;
    let root = ProcRoot::new("/proc");
    let current_boot_id = Some(host_facts(&root).boot_id).filter(|b| !b.is_empty());
    let same_boot = current_boot_id.as_deref() == Some(input.manifest.boot_id.as_str());
    if !job.no_host {
        input.boot_wall_ns = same_boot.then(|| boot_wall_ns(&root)).flatten();
        input.current_boot_id = current_boot_id;
    }
    let text = super::render(&input);
    let path = out.join("report.md");
    own_work(crate::recording::write_atomically(&path, text.as_bytes()))?;
    Ok(path)
}

/// Restarts (live or simulated) and the simulated available memory, at most ~600 points (the
/// lowest of each stretch, as the recorded line shows).
fn policy_marks(events: &[Event], simulation: Option<&Simulation>) -> PolicyMarks {
    let restarts_s = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Policy { action, .. } if *action == PolicyAction::Stop))
        .map(|e| e.t_ns as f64 / 1e9)
        .collect();
    let simulated_available = simulation.map_or_else(Vec::new, |s| {
        let stride = s.points.len().div_ceil(600).max(1);
        s.points
            .chunks(stride)
            .filter_map(|chunk| {
                let low = chunk.iter().min_by_key(|p| p.simulated_available_bytes)?;
                Some((
                    chunk[0].t_ns as f64 / 1e9,
                    low.simulated_available_bytes as f64,
                ))
            })
            .collect()
    });
    PolicyMarks {
        restarts_s,
        simulated_available,
    }
}

/// Adds the trials of each worker log to workers that have none recorded.
fn add_worker_logs(
    events: &mut Vec<Event>,
    texts: &[String],
    paths: &[PathBuf],
    manifest: &Manifest,
) {
    for (worker, (text, path)) in texts.iter().zip(paths).enumerate() {
        let worker = worker as u32;
        let has_trials = events
            .iter()
            .any(|e| e.worker == Some(worker) && matches!(e.kind, EventKind::TrialEnd { .. }));
        if has_trials {
            eprintln!(
                "memwarden: note: worker {worker} has recorded trials; {} is not used",
                path.display()
            );
            continue;
        }
        events.extend(worker_log::trial_events(
            text,
            worker,
            manifest.start_wall_ns,
        ));
    }
    events.sort_by_key(|e| e.t_ns);
}

/// A manifest for a report from logs alone: the clock starts at the first logged line.
fn logs_manifest(paths: &[PathBuf], texts: &[String]) -> anyhow::Result<Manifest> {
    let start = texts
        .iter()
        .filter_map(|t| worker_log::first_time_ns(t))
        .min()
        .context(
            "the worker logs hold no timed Optuna lines (`[I 2026-11-22 18:31:02,123] ...`)",
        )?;
    let stamp = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(start),
    )
    .to_string();
    Ok(Manifest {
        format_version: FORMAT_VERSION,
        memwarden_version: env!("CARGO_PKG_VERSION").to_string(),
        mode: "logs".into(),
        command: paths.iter().map(|p| p.display().to_string()).collect(),
        workers: texts.len() as u32,
        host: String::new(),
        boot_id: String::new(),
        kernel: String::new(),
        start_wall_ns: start,
        start_rfc3339: stamp,
        interval_ns: 0,
        page_size: 0,
        status: RunStatus::Finished,
        end_wall_ns: None,
        end_reason: None,
        memory_cgroup: None,
        harness: None,
        orchestrator: None,
    })
}

/// The UTC year of a wall-clock instant: kernel logs without a year take the run's.
pub fn year_of(wall_ns: u64) -> i32 {
    let stamp = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(wall_ns),
    )
    .to_string();
    stamp.get(..4).and_then(|y| y.parse().ok()).unwrap_or(1970)
}

fn data_files(dir: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file()
                .then(|| (e.file_name().to_string_lossy().into_owned(), meta.len()))
        })
        .collect();
    files.sort();
    Ok(files)
}
