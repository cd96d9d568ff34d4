//! `memwarden run` and `memwarden attach`.

use super::{default_run_dir, EXIT_FINDING, EXIT_OK};
use crate::cli::{AttachArgs, RecordArgs, RunArgs};
use crate::harness::{record, HarnessConfig, RunSummary, Workload};
use crate::probe::ProcRoot;
use crate::supervisor::stop_on_signals;
use std::time::Duration;

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let workload = Workload::Spawn {
        argv: args.command,
        workers: args.workers,
    };
    record_and_report(&args.record, args.grace, workload)
}

pub fn attach(args: AttachArgs) -> anyhow::Result<u8> {
    if args.logs.len() > args.pids.len() {
        anyhow::bail!(
            "{} --log files for {} pids: each --log goes with one PID",
            args.logs.len(),
            args.pids.len()
        );
    }
    let root = crate::probe::ProcRoot::default();
    if let Some(pid) = args
        .pids
        .iter()
        .find(|&&pid| crate::probe::ProcessHandle::try_open(&root, pid).is_none())
    {
        anyhow::bail!("no process with pid {pid}");
    }
    let workload = Workload::Attach {
        pids: args.pids,
        logs: args.logs,
    };
    record_and_report(&args.record, Duration::ZERO, workload)
}

pub(crate) fn harness_config(args: &RecordArgs, grace: Duration) -> HarnessConfig {
    HarnessConfig {
        run_dir: args.out.clone().unwrap_or_else(default_run_dir),
        interval: args.interval,
        rollup_cpu_fraction: args.rollup_cpu / 100.0,
        grace,
        duration: args.duration,
        trial_regex: args.trial_regex.clone(),
        segment_duration: args.segment,
        root: ProcRoot::default(),
    }
}

pub(crate) fn record_and_report(
    args: &RecordArgs,
    grace: Duration,
    workload: Workload,
) -> anyhow::Result<u8> {
    let config = harness_config(args, grace);
    let what = match &workload {
        Workload::Spawn { workers, .. } => format!("{workers} worker(s)"),
        Workload::Attach { pids, .. } => format!("{} attached process(es)", pids.len()),
    };
    eprintln!(
        "memwarden: recording {what} into {} (Ctrl-C stops; twice kills the workers at once)",
        config.run_dir.display()
    );
    let summary = record(config, workload, stop_on_signals()?)?;
    Ok(print_summary(&summary))
}

pub(crate) fn print_summary(summary: &RunSummary) -> u8 {
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
        match (exit.code, exit.signal) {
            (Some(code), _) => eprintln!("memwarden: worker {worker} exited with code {code}"),
            (_, Some(signal)) => {
                eprintln!("memwarden: worker {worker} was killed by signal {signal}")
            }
            _ => eprintln!("memwarden: worker {worker} ended"),
        }
    }
    println!("{}", summary.run_dir.display());
    if summary.failed_workers.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDING
    }
}
