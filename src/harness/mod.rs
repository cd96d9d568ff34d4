//! A recording session from start to end: creates the run directory, starts the writer, the
//! sampler and the workers (or adopts running processes), waits for the end (all workers
//! exited, a signal, or the duration), stops the workers and closes the recording in an order
//! that loses nothing: workers, then output pumps, then the sampler, then the writer, then
//! compaction, and last the manifest that says the run finished.

mod output;
mod workers;

use crate::clock::RunClock;
use crate::probe::{host_facts, ProcRoot};
use crate::recording::{
    redact, write_manifest, Compactor, EventKind, Manifest, RecordingWriter, RunStatus,
    WriterConfig, WriterStats, FORMAT_VERSION,
};
use crate::sampler::{Sampler, SamplerConfig, SamplerStats};
use crate::supervisor::{Exit, StopRequest};
use anyhow::{bail, Context};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workers::Workers;

#[derive(Debug, Clone)]
pub struct HarnessConfig {
    pub run_dir: PathBuf,
    pub interval: Duration,
    pub rollup_cpu_fraction: f64,
    /// Between SIGTERM and SIGKILL when stopping workers.
    pub grace: Duration,
    /// Stop the run after this long.
    pub duration: Option<Duration>,
    pub trial_regex: Option<Regex>,
    pub segment_duration: Duration,
    pub root: ProcRoot,
}

pub enum Workload {
    /// Start `workers` copies of `argv`.
    Spawn { argv: Vec<String>, workers: u32 },
    /// Record running processes; `logs[i]` is tailed for worker i's trial lines.
    Attach { pids: Vec<i32>, logs: Vec<PathBuf> },
}

#[derive(Debug)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub stop_reason: String,
    /// Worker exits that memwarden did not cause.
    pub failed_workers: Vec<(u32, Exit)>,
    pub writer: WriterStats,
    pub sampler: SamplerStats,
}

pub fn record(
    config: HarnessConfig,
    workload: Workload,
    stop: Arc<StopRequest>,
) -> anyhow::Result<RunSummary> {
    prepare_run_dir(&config.run_dir)?;
    let clock = RunClock::start();
    let mut manifest = new_manifest(&config, &workload, &clock);
    write_manifest(&config.run_dir, &manifest)?;

    let compactor = Compactor::start();
    let writer_config = WriterConfig {
        segment_duration: config.segment_duration,
        ..WriterConfig::default()
    };
    let writer = RecordingWriter::start(&config.run_dir, writer_config, compactor.queue())?;
    let records = writer.sender();
    let sampler_config = SamplerConfig {
        interval: config.interval,
        rollup_cpu_fraction: config.rollup_cpu_fraction,
        root: config.root.clone(),
    };
    let sampler = Sampler::start(sampler_config, clock, records.clone())
        .context("cannot start the sampler")?;
    let mut workers = Workers::new(&config, clock, records.clone(), sampler.control())?;

    if let Err(error) = workers.start(&workload, &stop) {
        let message = format!("start failed: {error:#}");
        records.event_now(&clock, None, EventKind::Note { message });
        workers.stop(&stop);
        finish(
            writer,
            compactor,
            sampler,
            &config.run_dir,
            &mut manifest,
            "start failed",
        )?;
        return Err(error);
    }
    let deadline = config.duration.map(|d| Instant::now() + d);
    let mut failed_workers = Vec::new();
    let stop_reason = loop {
        failed_workers.extend(workers.poll());
        if stop.requested() {
            break "stop requested (signal)";
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break "duration reached";
        }
        if workers.all_exited() {
            break "all workers exited";
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    records.event_now(
        &clock,
        None,
        EventKind::Stop {
            reason: stop_reason.into(),
        },
    );
    workers.stop(&stop);
    let (writer_stats, sampler_stats) = finish(
        writer,
        compactor,
        sampler,
        &config.run_dir,
        &mut manifest,
        stop_reason,
    )?;
    Ok(RunSummary {
        run_dir: config.run_dir,
        stop_reason: stop_reason.into(),
        failed_workers,
        writer: writer_stats,
        sampler: sampler_stats,
    })
}

fn new_manifest(config: &HarnessConfig, workload: &Workload, clock: &RunClock) -> Manifest {
    let facts = host_facts(&config.root);
    let (mode, command, workers) = match workload {
        Workload::Spawn { argv, workers } => ("run", redact(argv), *workers),
        Workload::Attach { pids, .. } => (
            "attach",
            pids.iter().map(|p| p.to_string()).collect(),
            pids.len() as u32,
        ),
    };
    let start = std::time::UNIX_EPOCH + Duration::from_nanos(clock.start_wall_ns());
    Manifest {
        format_version: FORMAT_VERSION,
        memwarden_version: env!("CARGO_PKG_VERSION").into(),
        mode: mode.into(),
        command,
        workers,
        host: facts.host,
        boot_id: facts.boot_id,
        kernel: facts.kernel,
        start_wall_ns: clock.start_wall_ns(),
        start_rfc3339: humantime::format_rfc3339_millis(start).to_string(),
        interval_ns: config.interval.as_nanos() as u64,
        page_size: procfs::page_size(),
        status: RunStatus::Running,
        end_wall_ns: None,
        end_reason: None,
    }
}

fn prepare_run_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.join(crate::recording::MANIFEST_FILE).exists() {
        bail!(
            "{}: already holds a recording; choose another --out",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))
}

fn finish(
    writer: RecordingWriter,
    compactor: Compactor,
    sampler: Sampler,
    dir: &Path,
    manifest: &mut Manifest,
    reason: &str,
) -> anyhow::Result<(WriterStats, SamplerStats)> {
    let sampler_stats = sampler.stop();
    let writer_stats = writer.finish()?;
    for error in compactor.finish(writer_stats.open_segments.clone()) {
        // The log stays in place and is read instead: nothing is lost, so warn and go on.
        eprintln!("memwarden: warning: compaction failed: {error}");
    }
    manifest.status = RunStatus::Finished;
    manifest.end_wall_ns = Some(crate::clock::wall_ns());
    manifest.end_reason = Some(reason.to_string());
    write_manifest(dir, manifest)?;
    Ok((writer_stats, sampler_stats))
}
