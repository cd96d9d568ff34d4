//! `memwarden replay`: a recorded trial run again in isolation, repeated, or each distinct
//! parameter value in turn (`--bisect`). Each replay is a recording of its own, analysed and
//! reported like any other.

use super::record::harness_config;
use super::{default_run_dir, EXIT_FINDING, EXIT_OK};
use crate::analysis::Findings;
use crate::cli::ReplayArgs;
use crate::harness::{record, Workload};
use crate::policy::Policy;
use crate::recording::Recording;
use crate::replay::verdict::verdict_words;
use crate::replay::{bisect_cases, environment, find_trial, substitute, value_text, TrialCase};
use crate::report::pipeline::ReportJob;
use crate::supervisor::{stop_on_signals, StopRequest};
use std::path::Path;
use std::sync::Arc;

pub fn replay(args: ReplayArgs) -> anyhow::Result<u8> {
    let recording = Recording::open(&args.run_dir)?;
    recording.manifest.check_version(&args.run_dir)?;
    let trials = recording.trials();
    let out = args.record.out.clone().unwrap_or_else(default_run_dir);
    let stop = stop_on_signals()?;
    let how = if args.isolate {
        "each in a fresh process"
    } else {
        "in one process"
    };
    if args.bisect {
        let cases = bisect_cases(&trials)?;
        eprintln!(
            "memwarden: bisecting: {} parameter value(s), {} repeat(s) each, {how}, into {}",
            cases.len(),
            args.repeat,
            out.display()
        );
        let mut leaking = Vec::new();
        let mut lines = Vec::new();
        for (index, (name, value, case)) in cases.iter().enumerate() {
            if stop.requested() {
                break;
            }
            let dir = out.join(format!(
                "{index:02}-{}",
                file_name(&format!("{name}={value}"))
            ));
            let findings = run_case(&args, &dir, case, &stop)?;
            let (leaks, words) = verdict_words(&findings, args.isolate);
            if leaks {
                leaking.push(format!("{name}={value}"));
            }
            lines.push(format!("  {name}={value}: {words}  [{}]", dir.display()));
        }
        println!(
            "Each distinct parameter value, replayed {} time(s) {how}:",
            args.repeat
        );
        lines.iter().for_each(|l| println!("{l}"));
        return Ok(if leaking.is_empty() {
            println!("No value leaks on its own.");
            EXIT_OK
        } else {
            println!("Leaking: {}.", leaking.join(", "));
            EXIT_FINDING
        });
    }
    let trial = args.trial.as_deref().unwrap_or_default();
    let case = find_trial(&trials, trial, args.worker)?;
    let params: Vec<String> = case
        .params
        .iter()
        .map(|(n, v)| format!("{n}={}", value_text(v)))
        .collect();
    eprintln!(
        "memwarden: replaying trial {} of worker {} ({}) {} time(s) {how}, into {}",
        case.trial,
        case.worker,
        params.join(", "),
        args.repeat,
        out.display()
    );
    let findings = run_case(&args, &out, &case, &stop)?;
    let (leaks, words) = verdict_words(&findings, args.isolate);
    println!("Trial {} ({}): {words}", case.trial, params.join(", "));
    println!(
        "The report: {}",
        out.join("report").join("report.md").display()
    );
    Ok(if leaks { EXIT_FINDING } else { EXIT_OK })
}

/// Records one replay into `dir`, then analyses it and writes its report.
fn run_case(
    args: &ReplayArgs,
    dir: &Path,
    case: &TrialCase,
    stop: &Arc<StopRequest>,
) -> anyhow::Result<Findings> {
    let mut config = harness_config(&args.record, args.grace);
    config.trace_python = !args.no_trace_python;
    config.run_dir = dir.to_path_buf();
    config.mode = "replay".into();
    config.env = environment(case, if args.isolate { 1 } else { args.repeat });
    config.env.extend(args.env.iter().cloned());
    if args.isolate {
        // Fresh processes one after another: the engine starts the worker again each time it
        // finishes, `repeat` times in all.
        let mut policy = Policy::default();
        policy.restart.when_finished = true;
        policy.restart.max_starts = Some(args.repeat);
        config.policy = Some(policy);
    }
    let workload = Workload::Spawn {
        argv: substitute(&args.command, &case.params),
        workers: 1,
    };
    record(config, workload, stop.clone())?;
    let (_, findings) =
        crate::report::pipeline::write_report_with(&ReportJob::for_run(dir, None, false), None)?;
    Ok(findings)
}

/// A directory name from any text: letters, digits, `=`, `.`, `-` kept, the rest `_`.
fn file_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "=.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect()
}
