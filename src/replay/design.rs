//! The bisection's design: one factor at a time from a clean baseline. Each replay differs
//! from the baseline in exactly one parameter, so a value's growth is its own and not that of
//! whichever other values its recorded trial happened to have. Pure: the recorded run's
//! findings in; the baseline and the values to test, in the order the run's evidence ranks
//! them, out.

use super::plan::{ReplayError, TrialCase};
use crate::analysis::Kind;
use crate::analysis::MAX_CATEGORIES;
use crate::analysis::{Findings, TrialRecord};
use crate::recording::value_text;
use crate::stats::median;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The values found explain this share of the run's growth: the bisection stops (unless
/// `--exhaustive`). Not 100%: each figure carries its own noise, and a share above this leaves
/// no room for a second cause as large as the floor.
pub const EXPLAINED_ENOUGH: f64 = 0.8;

/// What to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    pub kind: Kind,
    pub baseline: TrialCase,
    /// Parameters to vary, most suspect first.
    pub factors: Vec<Factor>,
    /// The recorded run's growth per trial in `kind` (bytes), where its analysis fitted one.
    pub run_growth: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    pub name: String,
    /// Numeric with more than [`MAX_CATEGORIES`] distinct values: tested at both ends of its
    /// recorded range and its median, not per value.
    pub continuous: bool,
    /// The run's own evidence for it (the smallest adjusted p-value among its findings).
    pub p_value: Option<f64>,
    pub probes: Vec<Probe>,
}

/// One value to test, with the share of the run's trials it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub value: Value,
    pub share: f64,
    /// For a continuous parameter, which point of its recorded range: lowest, median, highest.
    pub point: Option<&'static str>,
}

impl Design {
    /// The baseline with `name` set to `value`.
    pub fn case(&self, name: &str, value: &Value) -> TrialCase {
        let mut case = self.baseline.clone();
        case.params.insert(name.to_string(), value.clone());
        case
    }
}

/// Each trial's retained growth in `kind`: its level at the end minus the previous trial's of
/// the same worker (the first trial of each worker has none).
fn growths(trials: &[TrialRecord], kind: Kind) -> Vec<(&TrialRecord, Option<f64>)> {
    let mut sorted: Vec<&TrialRecord> = trials.iter().collect();
    sorted.sort_by_key(|t| (t.worker, t.ordinal));
    let level = |t: &TrialRecord| t.tree.get(&kind).and_then(|l| l.retained);
    let mut out = Vec::with_capacity(sorted.len());
    for (i, trial) in sorted.iter().enumerate() {
        let previous = i
            .checked_sub(1)
            .map(|p| sorted[p])
            .filter(|p| p.worker == trial.worker);
        let growth = match (previous.and_then(level), level(trial)) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        };
        out.push((*trial, growth));
    }
    out
}

fn is_continuous(values: &BTreeSet<String>) -> bool {
    values.len() > MAX_CATEGORIES && values.iter().all(|v| v.parse::<f64>().is_ok())
}

pub fn design(findings: &Findings, kind: Kind) -> Result<Design, ReplayError> {
    let grown = growths(&findings.trials, kind);
    let mut values: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for trial in &findings.trials {
        for (name, value) in trial.params.iter() {
            values.entry(name).or_default().insert(value_text(value));
        }
    }
    values.retain(|_, distinct| distinct.len() >= 2);
    if values.is_empty() {
        return Err(ReplayError::NothingToBisect);
    }
    // Decided once per parameter: it parses every distinct value.
    let continuous: BTreeSet<&str> = values
        .iter()
        .filter(|(_, distinct)| is_continuous(distinct))
        .map(|(name, _)| *name)
        .collect();
    // The median growth of the trials with each categorical value.
    let mut by_value: BTreeMap<(&str, String), Vec<f64>> = BTreeMap::new();
    for (trial, growth) in &grown {
        let Some(growth) = growth else { continue };
        for (name, value) in trial.params.iter() {
            let name = name.as_str();
            if values.contains_key(name) && !continuous.contains(name) {
                by_value
                    .entry((name, value_text(value)))
                    .or_default()
                    .push(*growth);
            }
        }
    }
    let medians: BTreeMap<(&str, String), f64> = by_value
        .into_iter()
        .map(|(key, g)| (key, median(&g)))
        .collect();
    let score = |trial: &TrialRecord| -> f64 {
        trial
            .params
            .iter()
            .filter_map(|(n, v)| medians.get(&(n.as_str(), value_text(v))))
            .sum()
    };
    // The clean baseline: the recorded trial whose values go with the least growth; among
    // equals, the one that retained least itself, then the earliest.
    let (_, _, baseline) = grown
        .iter()
        .map(|(trial, growth)| (score(trial), growth.unwrap_or(f64::MAX), *trial))
        .min_by(|(sa, ga, _), (sb, gb, _)| sa.total_cmp(sb).then(ga.total_cmp(gb)))
        .ok_or(ReplayError::NothingToBisect)?;
    let baseline_case = TrialCase {
        worker: baseline.worker,
        trial: baseline.trial.to_string(),
        params: baseline
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    };
    let total = findings.trials.len() as f64;
    let mut factors: Vec<Factor> = values
        .keys()
        .map(|name| {
            let p_value = findings
                .parameters
                .iter()
                .filter(|p| p.name == *name)
                .map(|p| p.p_value)
                .min_by(f64::total_cmp);
            let recorded: Vec<&Value> = findings
                .trials
                .iter()
                .filter_map(|t| t.params.get(*name))
                .collect();
            let continuous = continuous.contains(name);
            let mut probes = if continuous {
                points(&recorded, total)
            } else {
                categories(name, &recorded, findings, total)
            };
            let at_baseline = baseline_case.params.get(*name).map(value_text);
            probes.retain(|p| Some(value_text(&p.value)) != at_baseline);
            Factor {
                name: name.to_string(),
                continuous,
                p_value,
                probes,
            }
        })
        .filter(|f| !f.probes.is_empty())
        .collect();
    factors.sort_by(|a, b| {
        a.p_value
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.p_value.unwrap_or(f64::INFINITY))
            .then_with(|| a.name.cmp(&b.name))
    });
    let rates: Vec<f64> = findings
        .workers
        .iter()
        .filter_map(|w| Some(w.kind_finding(kind)?.per_trial?.bytes))
        .collect();
    Ok(Design {
        kind,
        baseline: baseline_case,
        factors,
        run_growth: (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64),
    })
}

/// Each distinct value, those the run's analysis ties to growth first (largest effect first).
fn categories(name: &str, recorded: &[&Value], findings: &Findings, total: f64) -> Vec<Probe> {
    let mut counts: BTreeMap<String, (&Value, usize)> = BTreeMap::new();
    for value in recorded {
        counts.entry(value_text(value)).or_insert((value, 0)).1 += 1;
    }
    let effect = |text: &str| {
        findings
            .parameters
            .iter()
            .find(|p| p.name == name && p.value.as_deref() == Some(text))
            .map_or(f64::NEG_INFINITY, |p| p.effect_bytes)
    };
    let mut probes: Vec<(String, Probe)> = counts
        .into_iter()
        .map(|(text, (value, n))| {
            (
                text,
                Probe {
                    value: value.clone(),
                    share: n as f64 / total,
                    point: None,
                },
            )
        })
        .collect();
    probes.sort_by(|(a, _), (b, _)| effect(b).total_cmp(&effect(a)).then_with(|| a.cmp(b)));
    probes.into_iter().map(|(_, p)| p).collect()
}

/// Both ends of the recorded range and the recorded value at its median; each stands for the
/// recorded trials nearest to it in rank.
fn points(recorded: &[&Value], total: f64) -> Vec<Probe> {
    let mut sorted: Vec<(f64, &Value)> = recorded
        .iter()
        .filter_map(|v| Some((value_text(v).parse().ok()?, *v)))
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = sorted.len();
    let ranks = [0, (n - 1) / 2, n - 1];
    let mut shares = [0usize; 3];
    for rank in 0..n {
        let nearest = (0..3)
            .min_by_key(|&i| ranks[i].abs_diff(rank))
            .unwrap_or_default();
        shares[nearest] += 1;
    }
    let mut probes: Vec<Probe> = Vec::new();
    for ((&rank, count), point) in ranks
        .iter()
        .zip(shares)
        .zip(["lowest", "median", "highest"])
    {
        match probes.last_mut() {
            // Fewer than three distinct recorded values at these ranks: one probe each.
            Some(last) if last.value == *sorted[rank].1 => last.share += count as f64 / total,
            _ => probes.push(Probe {
                value: sorted[rank].1.clone(),
                share: count as f64 / total,
                point: Some(point),
            }),
        }
    }
    probes
}

/// The share of the run's per-trial growth that leaking values explain: each one's growth per
/// repeat beyond the baseline's, weighted by the share of the run's trials it stands for.
/// `None` where the run did not grow (nothing to explain).
pub fn explained(run_growth: Option<f64>, baseline: f64, leaking: &[(f64, f64)]) -> Option<f64> {
    let run = run_growth.filter(|g| *g > 0.0)?;
    Some(
        leaking
            .iter()
            .map(|(bytes, share)| (bytes - baseline).max(0.0) * share)
            .sum::<f64>()
            / run,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{KindFinding, ParameterFinding, Rate};
    use crate::units::MIB;
    use serde_json::json;
    use std::sync::Arc;

    /// 30 trials on one worker: lr takes 30 values, keep takes true on every third trial and
    /// leaks 8 MiB then, width alternates.
    fn run() -> Findings {
        let mut level = 300.0 * MIB;
        let mut findings = crate::replay::testing::findings_with((0..30).map(|i| {
            let keep = i % 3 == 1;
            if keep {
                level += 8.0 * MIB;
            }
            let params: crate::recording::Params = Arc::new(
                [
                    ("keep".into(), json!(keep)),
                    ("lr".into(), json!(0.001 * (1.0 + i as f64))),
                    ("width".into(), json!(if i % 2 == 0 { 64 } else { 128 })),
                ]
                .into_iter()
                .collect(),
            );
            (params, level)
        }));
        let keep = ParameterFinding {
            name: "keep".into(),
            value: Some("true".into()),
            with_bytes: 8.0 * MIB,
            without_bytes: 0.0,
            effect_bytes: 8.0 * MIB,
            effect_low_bytes: None,
            effect_high_bytes: None,
            trials_with: 10,
            trials_without: 20,
            rho: None,
            p_value: 1e-6,
            significant: true,
        };
        findings.parameters = vec![keep];
        findings.workers.truncate(1);
        findings.workers[0].kinds = vec![KindFinding {
            kind: Kind::Anon,
            per_trial: Some(Rate {
                bytes: 8.0 * MIB / 3.0,
                low_bytes: 2.0 * MIB,
                high_bytes: 3.0 * MIB,
            }),
            ..findings.workers[0].kinds[0].clone()
        }];
        findings
    }

    #[test]
    fn one_factor_at_a_time_from_the_cleanest_recorded_trial() {
        let design = design(&run(), Kind::Anon).expect("a design");
        assert_eq!(design.baseline.params["keep"], json!(false));
        // The evidence orders the factors: keep first, then the others by name.
        let names: Vec<&str> = design.factors.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["keep", "lr", "width"]);
        let keep = &design.factors[0];
        assert_eq!(
            keep.probes.len(),
            1,
            "the baseline's own value is not replayed again"
        );
        assert_eq!(keep.probes[0].value, json!(true));
        assert!((keep.probes[0].share - 10.0 / 30.0).abs() < 1e-9);
        // lr: 30 distinct values, tested at three points, not thirty.
        let lr = &design.factors[1];
        assert!(lr.continuous);
        assert!(lr.probes.len() <= 3 && !lr.probes.is_empty(), "{lr:?}");
        assert!(lr.probes.iter().any(|p| p.value == json!(0.001)));
        assert!(lr.probes.iter().any(|p| p.value == json!(0.03)));
        // A replay differs from the baseline in one parameter only.
        let case = design.case("keep", &json!(true));
        assert_eq!(case.params["width"], design.baseline.params["width"]);
        assert_eq!(case.params["lr"], design.baseline.params["lr"]);
        assert_eq!(case.params["keep"], json!(true));
        assert!((design.run_growth.expect("a rate") - 8.0 * MIB / 3.0).abs() < 1.0);
    }

    #[test]
    fn the_share_explained_weighs_each_value_by_its_trials_beyond_the_baseline() {
        let run = Some(8.0 * MIB / 3.0);
        let share = explained(run, 0.0, &[(8.0 * MIB, 1.0 / 3.0)]).expect("a share");
        assert!((share - 1.0).abs() < 1e-9);
        // Growth the baseline has too is not the value's.
        let share = explained(run, 2.0 * MIB, &[(8.0 * MIB, 1.0 / 3.0)]).expect("a share");
        assert!((share - 0.75).abs() < 1e-9);
        assert_eq!(explained(Some(0.0), 0.0, &[(MIB, 1.0)]), None);
        assert_eq!(explained(None, 0.0, &[(MIB, 1.0)]), None);
    }

    #[test]
    fn nothing_to_bisect_without_parameters_that_vary() {
        let mut findings = run();
        for trial in &mut findings.trials {
            trial.params = Arc::new([("x".into(), json!(1))].into_iter().collect());
        }
        assert_eq!(
            design(&findings, Kind::Anon).err(),
            Some(ReplayError::NothingToBisect)
        );
    }
}
