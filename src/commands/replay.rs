//! `memwarden replay`: a recorded trial run again, repeated in one process (or each repeat in a
//! fresh one), or a bisection that changes one parameter at a time from a clean baseline
//! (`--bisect`). Each replay is a recording of its own, analysed and reported like any other;
//! an Optuna worker is replayed through Optuna itself (python/memwarden/_replay.py), with the
//! command the run used.

use super::{default_run_dir, EXIT_FINDING, EXIT_OK};
use crate::analysis::{self, Options};
use crate::cli::ReplayArgs;
use crate::recording::Recording;
use crate::replay::find_trial;
use crate::replay::session::{bisect, params_text, run_case, Settings};
use crate::replay::verdict::{exit_code, isolated_words, judge, judged_kind, Judging};
use crate::supervisor::stop_on_signals;
use serde::Serialize;
use std::time::Instant;

pub fn replay(args: ReplayArgs) -> anyhow::Result<u8> {
    let recording = Recording::open(&args.run_dir)?;
    let out = args.record.out.clone().unwrap_or_else(default_run_dir);
    let stop = stop_on_signals()?;
    let source = analysis::analyze(&recording, &Options::default())?;
    let settings = Settings {
        harness: args.record.harness_config(args.grace),
        command: args.command.clone(),
        env: args.env.clone(),
        repeat: args.repeat,
        warmup: args.warmup,
        isolate: args.isolate,
        trace_python: !args.no_trace_python,
        exhaustive: args.exhaustive,
    };
    if args.bisect {
        let bisection = bisect(&settings, &source, &out, &stop)?;
        let outcomes = std::iter::once(&bisection.baseline.outcome)
            .chain(bisection.tested.iter().map(|t| &t.outcome));
        let code = exit_code(outcomes);
        print_or_json(args.json, &bisection.text(stop.requested()), || &bisection)?;
        return Ok(code);
    }
    let trial = args.trial.as_deref().unwrap_or_default();
    let case = find_trial(&recording.trials(), trial, args.worker)?;
    let kind = judged_kind(
        source
            .workers
            .iter()
            .find(|w| w.worker == case.worker)
            .map(|w| w.kind),
    );
    let params = params_text(&case);
    let how = if args.isolate {
        "each in a fresh process"
    } else {
        "in one process"
    };
    eprintln!(
        "memwarden: replaying trial {} of worker {} ({params}) {} time(s) {how}, into {}",
        case.trial,
        case.worker,
        args.repeat,
        out.display()
    );
    let began = Instant::now();
    let findings = run_case(&settings, &out, &case, &stop)?;
    let report = out.join("report").join("report.md");
    if args.isolate {
        let (climbs, words) = isolated_words(&findings, kind);
        print_or_json(
            args.json,
            &format!("Trial {} ({params}): {words}", case.trial),
            || {
                serde_json::json!({ "trial": case.trial, "worker": case.worker, "isolate": true,
                "climbs": climbs, "words": words, "dir": out, "wall_s": began.elapsed().as_secs_f64() })
            },
        )?;
        return Ok(if climbs { EXIT_FINDING } else { EXIT_OK });
    }
    let outcome = judge(
        &findings,
        Judging {
            warmup: args.warmup,
            kind,
        },
    );
    let text = format!(
        "Trial {} ({params}), {} repeat(s): {}\nThe report: {}",
        case.trial,
        args.repeat,
        outcome.words(),
        report.display()
    );
    print_or_json(args.json, &text, || {
        serde_json::json!({ "trial": case.trial, "worker": case.worker, "params": case.params,
            "outcome": outcome, "dir": out, "wall_s": began.elapsed().as_secs_f64() })
    })?;
    Ok(exit_code([&outcome]))
}

fn print_or_json<T: Serialize>(
    json: bool,
    text: &str,
    document: impl FnOnce() -> T,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&document())?);
    } else {
        println!("{text}");
    }
    Ok(())
}
