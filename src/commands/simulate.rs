//! `memwarden simulate` and `memwarden systemd-unit`.

use super::EXIT_OK;
use crate::analysis::policy_inputs::{cooperative_workers, for_each_recorded};
use crate::cli::{Cli, SimulateArgs, SystemdUnitArgs};
use crate::policy::{Action, ActionKind, Policy, Simulation, Simulator};
use crate::recording::{Event, EventKind, Recording};
use crate::report::pipeline::ReportJob;
use crate::units::{duration, size};
use anyhow::Context;
use clap::Parser;

pub fn simulate(args: SimulateArgs) -> anyhow::Result<u8> {
    let recording = Recording::open(&args.run_dir)?;
    recording.manifest.check_version(&args.run_dir)?;
    let policy = args.policy.load()?.map_or_else(Policy::default, |(p, _)| p);
    let bound = crate::analysis::containment::bound(&policy);
    let mut simulator = Simulator::new(
        policy,
        recording.manifest.workers,
        cooperative_workers(&recording),
    )
    .reading_every(std::time::Duration::from_nanos(
        recording.manifest.interval_ns.max(1),
    ));
    for_each_recorded(&recording, |item| simulator.push(item))?;
    let simulation = simulator.finish();
    // What the recorded run's own brake did to its trials, against the simulated policy's bound:
    // the stall a simulation's restarts would have broken.
    let end_ns = recording.events.iter().map(|e| e.t_ns).max().unwrap_or(0);
    let recorded =
        crate::analysis::containment::containment(&recording.events, end_ns, bound, false);
    if args.json {
        let mut value = json(&simulation);
        value["recorded_containment"] = serde_json::to_value(&recorded)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        if let Some(recorded) = &recorded {
            for line in recorded.words() {
                println!("Recorded: {line}.");
            }
        }
        print!("{}", text(&simulation));
    }
    if let Some(out) = &args.report {
        let report_args = ReportJob::for_run(&args.run_dir, Some(out.clone()), args.no_host);
        let events = events(&recording, &simulation.actions);
        let (path, _) =
            crate::report::pipeline::write_report_with(&report_args, Some((&simulation, events)))?;
        eprintln!(
            "memwarden: the report of the simulation: {}",
            path.display()
        );
    }
    Ok(EXIT_OK)
}

/// The simulated actions as `policy` events marked simulated, on the recording's clock.
fn events(recording: &Recording, actions: &[Action]) -> Vec<Event> {
    let start = recording.manifest.start_wall_ns;
    actions
        .iter()
        .filter(|a| a.kind != ActionKind::Answer(crate::policy::Answer::Go))
        .map(|a| Event {
            t_ns: a.t_ns,
            wall_ns: start + a.t_ns,
            worker: a.worker,
            kind: EventKind::Policy {
                action: a.name(),
                reason: a.reason.clone(),
                worker_pss_bytes: a.worker_pss_bytes,
                available_bytes: a.available_bytes,
                simulated: true,
            },
        })
        .collect()
}

fn listed(action: &Action) -> bool {
    !matches!(action.kind, ActionKind::Answer(_))
}

fn text(simulation: &Simulation) -> String {
    let counters = &simulation.counters;
    let restarts: u64 = counters.restarts.values().sum();
    let by_rule: Vec<String> = counters
        .restarts
        .iter()
        .map(|(rule, n)| format!("{n} by {rule}"))
        .collect();
    let mut out = format!(
        "Under this policy: the brake would have engaged {} time(s) and held back {} trial(s); {} escalation(s); {restarts} restart(s){}.\n",
        counters.brake_engagements,
        counters.brakes,
        counters.escalations,
        if by_rule.is_empty() { String::new() } else { format!(" ({})", by_rule.join(", ")) },
    );
    for action in simulation.actions.iter().filter(|a| listed(a)) {
        let who = action
            .worker
            .map_or(String::new(), |w| format!("worker {w} "));
        out.push_str(&format!(
            "  +{:<9} {who}{}: {}\n",
            duration(action.t_ns as f64 / 1e9),
            action.name(),
            action.reason
        ));
    }
    if let Some((recorded, after)) = simulation.min_available() {
        out.push_str(&format!(
            "Lowest available memory: {} recorded, {} under the policy.\n",
            size(recorded as f64),
            size(after as f64)
        ));
    }
    for (worker, (recorded, after)) in &simulation.peaks {
        out.push_str(&format!(
            "Worker {worker}: peak PSS {} recorded, {} under the policy.\n",
            size(*recorded as f64),
            size(*after as f64)
        ));
    }
    out.push_str("Model: a restarted worker drops back to the PSS it started with, then grows as recorded; trials happen as recorded.\n");
    out
}

fn json(simulation: &Simulation) -> serde_json::Value {
    let actions: Vec<serde_json::Value> = simulation
        .actions
        .iter()
        .filter(|a| listed(a))
        .map(|a| {
            serde_json::json!({
                "t_s": a.t_ns as f64 / 1e9,
                "worker": a.worker,
                "action": a.name(),
                "reason": a.reason,
                "worker_pss_bytes": a.worker_pss_bytes,
                "available_bytes": a.available_bytes,
            })
        })
        .collect();
    let (recorded, after) = simulation.min_available().unzip();
    serde_json::json!({
        "schema_version": 1,
        "counters": simulation.counters,
        "actions": actions,
        "min_available_bytes": { "recorded": recorded, "simulated": after },
        "end_available_bytes": {
            "recorded": simulation.points.last().map(|p| p.recorded_available_bytes),
            "simulated": simulation.points.last().map(|p| p.simulated_available_bytes),
        },
        "peak_pss_bytes": simulation.peaks.iter().map(|(w, (r, s))| serde_json::json!({
            "worker": w, "recorded": r, "simulated": s
        })).collect::<Vec<_>>(),
    })
}

pub fn systemd_unit(args: SystemdUnitArgs) -> anyhow::Result<u8> {
    // The unit must run a command that parses: catch a typo now, not at 3 a.m.
    Cli::try_parse_from(std::iter::once("memwarden".to_string()).chain(args.args.iter().cloned()))
        .map_err(|e| {
            anyhow::anyhow!(
                "the unit's command is not a memwarden command: {}",
                e.kind()
            )
        })?;
    let exe = std::env::current_exe().context("cannot find memwarden's own path")?;
    print!("{}", crate::supervisor::systemd::unit(&exe, &args.args));
    Ok(EXIT_OK)
}
