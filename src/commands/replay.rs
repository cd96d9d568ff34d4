//! `memwarden replay`: a recorded trial run again, repeated in one process (or each repeat in a
//! fresh one), or a bisection that changes one parameter at a time from a clean baseline
//! (`--bisect`). Each replay is a recording of its own, analysed and reported like any other;
//! an Optuna worker is replayed through Optuna itself (python/memwarden/_replay.py), with the
//! command the run used.

use super::{default_run_dir, EXIT_FINDING, EXIT_OK};
use crate::analysis::{self, Findings, Kind, Options, Verdict};
use crate::cli::ReplayArgs;
use crate::exit::EXIT_NOT_ENOUGH_DATA;
use crate::harness::{record, Workload};
use crate::policy::Policy;
use crate::recording::Recording;
use crate::replay::design::{design, explained, EXPLAINED_ENOUGH};
use crate::replay::verdict::{
    isolated_words, judge, judged_kind, Judging, RepeatOutcome, RepeatVerdict,
};
use crate::replay::{environment, find_trial, substitute, value_text, TrialCase};
use crate::report::pipeline::ReportJob;
use crate::supervisor::{stop_on_signals, StopRequest};
use crate::units::MIB;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub fn replay(args: ReplayArgs) -> anyhow::Result<u8> {
    let recording = Recording::open(&args.run_dir)?;
    recording.manifest.check_version(&args.run_dir)?;
    let out = args.record.out.clone().unwrap_or_else(default_run_dir);
    let stop = stop_on_signals()?;
    let source = analysis::analyze(&recording, &Options::default())?;
    if args.bisect {
        return bisect(&args, &source, &out, &stop);
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
    let findings = run_case(&args, &out, &case, &stop)?;
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

/// The name a bisection's baseline goes by in its `Tested` (its value is the trial's id).
const BASELINE: &str = "baseline";

/// One tested value of a bisection.
#[derive(Serialize)]
struct Tested {
    name: String,
    value: serde_json::Value,
    /// For a continuous parameter: lowest, median or highest recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    point: Option<&'static str>,
    /// The share of the recorded run's trials this value stands for.
    share: f64,
    outcome: RepeatOutcome,
    dir: PathBuf,
    wall_s: f64,
}

impl Tested {
    fn label(&self) -> String {
        if self.name == BASELINE {
            format!("baseline (trial {})", value_text(&self.value))
        } else {
            format!("{}={}", self.name, value_text(&self.value))
        }
    }

    fn line(&self) -> String {
        let point = self
            .point
            .map_or(String::new(), |p| format!(" ({p} recorded)"));
        format!(
            "  {}{point}: {}  [{}]",
            self.label(),
            self.outcome.words(),
            self.dir.display()
        )
    }
}

/// A bisection's outcome, as `--json` prints it.
#[derive(Serialize)]
struct Bisection {
    kind: Kind,
    repeat: u32,
    warmup: u32,
    baseline: Tested,
    tested: Vec<Tested>,
    /// Parameters not tested because the values found already explain the run's growth.
    untested: Vec<String>,
    leaking: Vec<String>,
    run_growth_per_trial_bytes: Option<f64>,
    /// The share of that growth the leaking values explain.
    explained: Option<f64>,
    wall_s: f64,
}

fn bisect(
    args: &ReplayArgs,
    source: &Findings,
    out: &Path,
    stop: &Arc<StopRequest>,
) -> anyhow::Result<u8> {
    let began = Instant::now();
    let leaking_kind = source
        .workers
        .iter()
        .find(|w| w.verdict == Verdict::Leak)
        .or(source.workers.first())
        .map(|w| w.kind);
    let plan = design(source, judged_kind(leaking_kind))?;
    let judging = Judging {
        warmup: args.warmup,
        kind: plan.kind,
    };
    let values: usize = plan.factors.iter().map(|f| f.probes.len()).sum();
    eprintln!(
        "memwarden: bisecting from trial {} of worker {} ({}): {} parameter(s), {values} value(s) to try one at a time, {} repeat(s) each ({} warm-up) in one process, into {}",
        plan.baseline.trial,
        plan.baseline.worker,
        params_text(&plan.baseline),
        plan.factors.len(),
        args.repeat,
        args.warmup,
        out.display()
    );
    let run = |index: usize, name: &str, value: serde_json::Value, point, share, case| {
        let dir = out.join(format!(
            "{index:02}-{}",
            file_name(&format!("{name}={}", value_text(&value)))
        ));
        let started = Instant::now();
        let findings = run_case(args, &dir, &case, stop)?;
        let tested = Tested {
            name: name.to_string(),
            value,
            point,
            share,
            outcome: judge(&findings, judging),
            dir,
            wall_s: started.elapsed().as_secs_f64(),
        };
        eprintln!(
            "memwarden: {}: {} ({:.1} s)",
            tested.label(),
            tested.outcome.words(),
            tested.wall_s
        );
        anyhow::Ok(tested)
    };
    let baseline = run(
        0,
        BASELINE,
        serde_json::Value::String(plan.baseline.trial.clone()),
        None,
        1.0,
        plan.baseline.clone(),
    )?;
    let base_bytes = if baseline.outcome.leaks() {
        baseline.outcome.bytes()
    } else {
        0.0
    };
    let mut tested: Vec<Tested> = Vec::new();
    let mut untested = Vec::new();
    let mut share = explained(plan.run_growth, base_bytes, &[]);
    for factor in &plan.factors {
        let enough = share.is_some_and(|s| s >= EXPLAINED_ENOUGH);
        if stop.requested() || (enough && !args.exhaustive) {
            untested.push(factor.name.clone());
            continue;
        }
        for probe in &factor.probes {
            let case = plan.case(&factor.name, &probe.value);
            tested.push(run(
                tested.len() + 1,
                &factor.name,
                probe.value.clone(),
                probe.point,
                probe.share,
                case,
            )?);
        }
        let found: Vec<(f64, f64)> = tested
            .iter()
            .filter(|t| t.outcome.leaks())
            .map(|t| (t.outcome.bytes(), t.share))
            .collect();
        share = explained(plan.run_growth, base_bytes, &found);
    }
    let leaking: Vec<String> = tested
        .iter()
        .filter(|t| t.outcome.leaks())
        .map(Tested::label)
        .collect();
    let code =
        exit_code(std::iter::once(&baseline.outcome).chain(tested.iter().map(|t| &t.outcome)));
    let bisection = Bisection {
        kind: plan.kind,
        repeat: args.repeat,
        warmup: args.warmup,
        baseline,
        tested,
        untested,
        leaking,
        run_growth_per_trial_bytes: plan.run_growth,
        explained: share,
        wall_s: began.elapsed().as_secs_f64(),
    };
    print_or_json(
        args.json,
        &bisection.text(&plan.baseline, stop.requested()),
        || &bisection,
    )?;
    Ok(code)
}

impl Bisection {
    /// The sentences: `baseline` is the recorded trial the bisection started from.
    fn text(&self, baseline: &TrialCase, stopped: bool) -> String {
        let mut lines = vec![format!(
            "Baseline: trial {} of worker {} ({}), the recorded trial whose values go with the least growth: {}  [{}]",
            baseline.trial,
            baseline.worker,
            params_text(baseline),
            self.baseline.outcome.words(),
            self.baseline.dir.display()
        )];
        if self.baseline.outcome.leaks() {
            lines.push(
                "  The baseline leaks too: each value's figure below includes its growth, and only the growth beyond it is the value's.".into(),
            );
        }
        lines.push(format!(
            "One parameter changed at a time, {} repeat(s) each ({} warm-up):",
            self.repeat, self.warmup
        ));
        lines.extend(self.tested.iter().map(Tested::line));
        if !self.untested.is_empty() {
            let why = if stopped {
                "the bisection was stopped"
            } else {
                "the values found explain the run's growth; --exhaustive tests them"
            };
            lines.push(format!("Not tested: {} ({why}).", self.untested.join(", ")));
        }
        let kind = self.kind.words();
        let run = match self.run_growth_per_trial_bytes {
            Some(g) => format!("the run's {:+.2} MiB/trial of {kind}", g / MIB),
            None => format!("no per-trial growth of {kind} in the run"),
        };
        let explained = match self.explained {
            Some(s) => format!("explaining {:.0}% of {run}", 100.0 * s),
            None => format!("({run}: nothing to explain)"),
        };
        let verdict = if self.leaking.is_empty() {
            format!("No value leaks on its own, {explained}.")
        } else {
            format!("Leaking: {}, {explained}.", self.leaking.join(", "))
        };
        lines.push(format!(
            "{verdict} {} replay(s) in {:.0} s.",
            self.tested.len() + 1,
            self.wall_s
        ));
        lines.join("\n")
    }
}

/// 1 where anything leaks, else 4 where a replay could not decide, else 0.
fn exit_code<'a>(outcomes: impl IntoIterator<Item = &'a RepeatOutcome>) -> u8 {
    let verdicts: Vec<RepeatVerdict> = outcomes.into_iter().map(|o| o.verdict).collect();
    if verdicts.contains(&RepeatVerdict::Leaks) {
        EXIT_FINDING
    } else if verdicts.iter().any(|v| *v != RepeatVerdict::Stable) {
        EXIT_NOT_ENOUGH_DATA
    } else {
        EXIT_OK
    }
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

fn params_text(case: &TrialCase) -> String {
    case.params
        .iter()
        .map(|(n, v)| format!("{n}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records one replay into `dir`, then analyses it and writes its report.
fn run_case(
    args: &ReplayArgs,
    dir: &Path,
    case: &TrialCase,
    stop: &Arc<StopRequest>,
) -> anyhow::Result<Findings> {
    let mut config = args.record.harness_config(args.grace);
    config.trace_python = !args.no_trace_python;
    config.replay_optuna = true;
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
