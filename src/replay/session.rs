//! A replay's session beside the harness, as a soak's is: each case recorded through the
//! harness into a directory of its own and judged from its report, and a bisection that tries
//! one parameter value at a time from a clean baseline. The command turns flags into
//! `Settings` and prints what comes back.

use super::design::{design, explained, EXPLAINED_ENOUGH};
use super::verdict::{judge, judged_kind, Judging, RepeatOutcome};
use super::{environment, substitute, TrialCase};
use crate::analysis::{Findings, Kind, Verdict};
use crate::harness::{record, HarnessConfig, Workload};
use crate::policy::Policy;
use crate::recording::value_text;
use crate::report::pipeline::ReportJob;
use crate::supervisor::StopRequest;
use crate::units::MIB;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How each case is replayed: `memwarden replay`'s flags, read once.
pub struct Settings {
    /// The recording's settings; each case gets its own run directory and environment.
    pub harness: HarnessConfig,
    /// The worker command, with `{name}` placeholders for the trial's parameters.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub repeat: u32,
    pub warmup: u32,
    /// Each repeat in a fresh process (else all in one).
    pub isolate: bool,
    pub trace_python: bool,
    /// Test every value, also once the values found explain the run's growth.
    pub exhaustive: bool,
}

/// The name a bisection's baseline goes by in its `Tested` (its value is the trial's id).
const BASELINE: &str = "baseline";

/// One tested value of a bisection.
#[derive(Serialize)]
pub struct Tested {
    name: String,
    value: serde_json::Value,
    /// For a continuous parameter: lowest, median or highest recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    point: Option<&'static str>,
    /// The share of the recorded run's trials this value stands for.
    share: f64,
    pub outcome: RepeatOutcome,
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
pub struct Bisection {
    pub kind: Kind,
    pub repeat: u32,
    pub warmup: u32,
    /// The recorded trial the bisection started from.
    #[serde(skip)]
    pub from: TrialCase,
    pub baseline: Tested,
    pub tested: Vec<Tested>,
    /// Parameters not tested because the values found already explain the run's growth.
    pub untested: Vec<String>,
    pub leaking: Vec<String>,
    pub run_growth_per_trial_bytes: Option<f64>,
    /// The share of that growth the leaking values explain.
    pub explained: Option<f64>,
    pub wall_s: f64,
}

/// Replays the run's least-growing trial, then each parameter's other values one at a time
/// (`design`), until the values found explain the run's growth (all, with `exhaustive`) or a
/// stop is asked; each replay into its own directory below `out`.
pub fn bisect(
    settings: &Settings,
    source: &Findings,
    out: &Path,
    stop: &Arc<StopRequest>,
) -> anyhow::Result<Bisection> {
    let began = Instant::now();
    let leaking_kind = source
        .workers
        .iter()
        .find(|w| w.verdict == Verdict::Leak)
        .or(source.workers.first())
        .map(|w| w.kind);
    let plan = design(source, judged_kind(leaking_kind))?;
    let judging = Judging {
        warmup: settings.warmup,
        kind: plan.kind,
    };
    let values: usize = plan.factors.iter().map(|f| f.probes.len()).sum();
    eprintln!(
        "memwarden: bisecting from trial {} of worker {} ({}): {} parameter(s), {values} value(s) to try one at a time, {} repeat(s) each ({} warm-up) in one process, into {}",
        plan.baseline.trial,
        plan.baseline.worker,
        params_text(&plan.baseline),
        plan.factors.len(),
        settings.repeat,
        settings.warmup,
        out.display()
    );
    let run = |index: usize, name: &str, value: serde_json::Value, point, share, case| {
        let dir = out.join(format!(
            "{index:02}-{}",
            file_name(&format!("{name}={}", value_text(&value)))
        ));
        let started = Instant::now();
        let findings = run_case(settings, &dir, &case, stop)?;
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
        if stop.requested() || (enough && !settings.exhaustive) {
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
    Ok(Bisection {
        kind: plan.kind,
        repeat: settings.repeat,
        warmup: settings.warmup,
        from: plan.baseline.clone(),
        baseline,
        tested,
        untested,
        leaking,
        run_growth_per_trial_bytes: plan.run_growth,
        explained: share,
        wall_s: began.elapsed().as_secs_f64(),
    })
}

impl Bisection {
    /// The sentences (`stopped`: the bisection was stopped before its end).
    pub fn text(&self, stopped: bool) -> String {
        let baseline = &self.from;
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

pub fn params_text(case: &TrialCase) -> String {
    case.params
        .iter()
        .map(|(n, v)| format!("{n}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records one replay into `dir`, then analyses it and writes its report.
pub fn run_case(
    settings: &Settings,
    dir: &Path,
    case: &TrialCase,
    stop: &Arc<StopRequest>,
) -> anyhow::Result<Findings> {
    let mut config = settings.harness.clone();
    config.trace_python = settings.trace_python;
    config.replay_optuna = true;
    config.run_dir = dir.to_path_buf();
    config.mode = "replay".into();
    let repeat = settings.repeat;
    config.env = environment(case, if settings.isolate { 1 } else { repeat });
    config.env.extend(settings.env.iter().cloned());
    if settings.isolate {
        // Fresh processes one after another: the engine starts the worker again each time it
        // finishes, `repeat` times in all.
        let mut policy = Policy::default();
        policy.restart.when_finished = true;
        policy.restart.max_starts = Some(repeat);
        config.policy = Some(policy);
    }
    let workload = Workload::Spawn {
        argv: substitute(&settings.command, &case.params),
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
