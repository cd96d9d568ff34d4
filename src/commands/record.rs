//! `memwarden run` and `memwarden attach`.

use super::{default_run_dir, EXIT_FINDING, EXIT_OK};
use crate::cli::{AttachArgs, PolicyArgs, RecordArgs, RunArgs};
use crate::harness::{record, HarnessConfig, RunSummary, Workload};
use crate::policy::Policy;
use crate::probe::ProcRoot;
use crate::sampler::HoldLimits;
use crate::supervisor::stop_on_signals;
use std::time::Duration;

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&args.policy)?;
    let grace = args
        .grace
        .or_else(|| policy.as_ref().map(|(p, _)| p.restart.grace))
        .unwrap_or(Duration::from_secs(10));
    let workload = Workload::Spawn {
        argv: args.command,
        workers: args.workers,
    };
    let mut config = harness_config(&args.record, grace);
    config.trace_python = args.trace_python;
    if let Some((mut policy, text)) = policy {
        policy.restart.grace = grace;
        config.policy = Some(policy);
        config.policy_text = Some(text);
    }
    record_with(config, workload)
}

/// The policy from `--policy` and the knob flags (which win), or `None` when none was given.
/// Returns the text to keep beside the recording too.
pub(crate) fn load_policy(args: &PolicyArgs) -> anyhow::Result<Option<(Policy, String)>> {
    let knobs = args.budget.is_some()
        || args.max_worker_pss.is_some()
        || args.restart_every_trials.is_some()
        || args.restart_every.is_some()
        || args.stagger.is_some()
        || args.canary_trials.is_some()
        || args.memory_max.is_some();
    let (mut policy, mut text) = match &args.policy {
        Some(path) => {
            let policy = Policy::load(path)?;
            (policy, std::fs::read_to_string(path).unwrap_or_default())
        }
        None if knobs => (Policy::default(), String::new()),
        None => return Ok(None),
    };
    let mut flags = Vec::new();
    if let Some(budget) = args.budget {
        policy.budget = Some(budget);
        flags.push(format!("budget = \"{budget}B\""));
    }
    if let Some(max) = args.max_worker_pss {
        policy.restart.max_worker_pss = Some(max);
        flags.push(format!("restart.max_worker_pss = \"{max}B\""));
    }
    if let Some(n) = args.restart_every_trials {
        policy.restart.every_trials = Some(n);
        flags.push(format!("restart.every_trials = {n}"));
    }
    if let Some(every) = args.restart_every {
        policy.restart.every = Some(every);
        flags.push(format!(
            "restart.every = \"{}\"",
            humantime::format_duration(every)
        ));
    }
    if let Some(stagger) = args.stagger {
        policy.start.stagger = Some(stagger);
        flags.push(format!(
            "start.stagger = \"{}\"",
            humantime::format_duration(stagger)
        ));
    }
    if let Some(n) = args.canary_trials {
        policy.start.canary_trials = Some(n);
        flags.push(format!("start.canary_trials = {n}"));
    }
    if let Some(max) = args.memory_max {
        policy.containment.memory_max = Some(max);
        flags.push(format!("containment.memory_max = \"{max}B\""));
    }
    if let Err(conflict) = policy.check() {
        anyhow::bail!("the policy with the flags given: {}", conflict.message);
    }
    if !flags.is_empty() {
        text.push_str("\n# From the command line, overriding the above:\n# ");
        text.push_str(&flags.join("\n# "));
        text.push('\n');
    }
    Ok(Some((policy, text)))
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
        hold: HoldLimits {
            max_stall_ns: args.max_stall.as_nanos() as u64,
            fraction: args.max_hold / 100.0,
        },
        grace,
        duration: args.duration,
        trial_regex: args.trial_regex.clone(),
        segment_duration: args.segment,
        root: ProcRoot::default(),
        policy: None,
        policy_text: None,
        mode: "run".into(),
        env: Vec::new(),
        live: None,
        trace_python: false,
    }
}

pub(crate) fn record_and_report(
    args: &RecordArgs,
    grace: Duration,
    workload: Workload,
) -> anyhow::Result<u8> {
    record_with(harness_config(args, grace), workload)
}

pub(crate) fn record_with(config: HarnessConfig, workload: Workload) -> anyhow::Result<u8> {
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
