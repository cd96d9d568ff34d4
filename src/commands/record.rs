//! `memwarden run` and `memwarden attach`.

use crate::attended::{record_and_conclude, Attendance};
use crate::cli::{AttachArgs, MetricsArgs, RunArgs, ViewArgs};
use crate::harness::Workload;
use std::time::Duration;

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let policy = args.policy.load()?;
    let grace = args
        .grace
        .or_else(|| policy.as_ref().map(|(p, _)| p.restart.grace))
        .unwrap_or(Duration::from_secs(10));
    let workload = Workload::Spawn {
        argv: args.command,
        workers: args.workers,
    };
    let mut config = args.record.harness_config(grace);
    config.trace_python = args.trace_python;
    if let Some((mut policy, text)) = policy {
        policy.restart.grace = grace;
        config.policy = Some(policy);
        config.policy_text = Some(text);
    }
    Ok(record_and_conclude(config, workload, &attendance(args.view, &args.metrics))?.0)
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
    let config = args.record.harness_config(Duration::ZERO);
    Ok(record_and_conclude(config, workload, &attendance(args.view, &args.metrics))?.0)
}

/// What `--quiet`, `--no-report` and the `--metrics-*` flags ask of an attended recording.
pub(super) fn attendance(view: ViewArgs, metrics: &MetricsArgs) -> Attendance {
    Attendance {
        quiet: view.quiet,
        no_report: view.no_report,
        metrics: metrics.options(),
    }
}
