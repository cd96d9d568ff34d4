//! `memwarden simulate` and `memwarden systemd-unit`.

use super::EXIT_OK;
use crate::analysis::policy_inputs::{cooperative_workers, for_each_recorded};
use crate::cli::{Cli, SimulateArgs, SystemdUnitArgs};
use crate::policy::{Policy, Simulator};
use crate::recording::Recording;
use crate::report::pipeline::ReportJob;
use anyhow::Context;
use clap::Parser;

pub fn simulate(args: SimulateArgs) -> anyhow::Result<u8> {
    let recording = Recording::open(&args.run_dir)?;
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
        let mut value = simulation.json();
        value["recorded_containment"] = serde_json::to_value(&recorded)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        if let Some(recorded) = &recorded {
            for line in recorded.words() {
                println!("Recorded: {line}.");
            }
        }
        print!("{}", simulation.text());
    }
    if let Some(out) = &args.report {
        let report_args = ReportJob::for_run(&args.run_dir, Some(out.clone()), args.no_host);
        let events = simulation.events(recording.manifest.start_wall_ns);
        let (path, _) =
            crate::report::pipeline::write_report_with(&report_args, Some((&simulation, events)))?;
        eprintln!(
            "memwarden: the report of the simulation: {}",
            path.display()
        );
    }
    Ok(EXIT_OK)
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
