//! Which trial parameters go with retained growth. Each trial's growth is its retained level
//! minus the previous trial's (so a leak shows up in the trial that caused it). Parameters with
//! few distinct values are tested value by value (Mann–Whitney U, this value against the rest,
//! with the Hodges–Lehmann shift as the effect);
//! numeric parameters with many values by rank correlation (Spearman). p-values are
//! Bonferroni-adjusted over every test made.

use crate::analysis::measures::ParameterFinding;
use crate::stats::{hodges_lehmann, mann_whitney, median, spearman};
use std::collections::BTreeSet;

/// More distinct values than this, all numeric: treated as a continuous parameter.
pub const MAX_CATEGORIES: usize = 12;
const MIN_GROUP: usize = 3;
const SIGNIFICANCE: f64 = 0.01;
const MIN_EFFECT_BYTES: f64 = crate::units::MIB;

/// One completed trial: its parameters and the growth it retained (bytes).
pub struct TrialGrowth<'a> {
    pub params: &'a crate::recording::ParamMap,
    pub growth: f64,
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Fields memwarden's own helpers put on trial markers (the pytest plugin's repeat number and
/// per-test budget): about the measurement, not parameters of the work.
pub const OWN_PREFIX: &str = "memwarden_";

pub fn parameter_effects(trials: &[TrialGrowth]) -> Vec<ParameterFinding> {
    let names: BTreeSet<&crate::recording::Short> = trials
        .iter()
        .flat_map(|t| t.params.keys())
        .filter(|name| !name.starts_with(OWN_PREFIX))
        .collect();
    let mut candidates: Vec<ParameterFinding> = Vec::new();
    for name in names {
        // Each trial keeps the index of its value's text, not the text: a million trials held a
        // string each here (issue 35).
        let mut index: std::collections::HashMap<String, u32> = Default::default();
        let with_value: Vec<(u32, f64)> = trials
            .iter()
            .filter_map(|t| {
                let value = text(t.params.get(name)?);
                let next = index.len() as u32;
                Some((*index.entry(value).or_insert(next), t.growth))
            })
            .collect();
        let mut texts = vec![String::new(); index.len()];
        for (value, i) in index {
            texts[i as usize] = value;
        }
        // In text order, as the findings have always listed them.
        let distinct: BTreeSet<(&str, u32)> = texts
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_str(), i as u32))
            .collect();
        if distinct.len() < 2 {
            continue;
        }
        let numeric: Option<Vec<f64>> = if distinct.len() > MAX_CATEGORIES {
            let parsed: Option<Vec<f64>> = texts.iter().map(|v| v.parse().ok()).collect();
            parsed.map(|parsed| {
                with_value
                    .iter()
                    .map(|(v, _)| parsed[*v as usize])
                    .collect()
            })
        } else {
            None
        };
        match numeric {
            Some(values) => {
                let growth: Vec<f64> = with_value.iter().map(|(_, g)| *g).collect();
                let Some((rho, p)) = spearman(&values, &growth) else {
                    continue;
                };
                let mid = median(&values);
                let (high, low): (Vec<_>, Vec<_>) =
                    values.iter().zip(&growth).partition(|(v, _)| **v > mid);
                let high: Vec<f64> = high.into_iter().map(|(_, g)| *g).collect();
                let low: Vec<f64> = low.into_iter().map(|(_, g)| *g).collect();
                candidates.push(ParameterFinding {
                    name: name.to_string(),
                    value: None,
                    with_bytes: median(&high),
                    without_bytes: median(&low),
                    effect_bytes: median(&high) - median(&low),
                    effect_low_bytes: None,
                    effect_high_bytes: None,
                    trials_with: high.len(),
                    trials_without: low.len(),
                    rho: Some(rho),
                    p_value: p,
                    significant: false,
                });
            }
            _ => {
                for (value, i) in &distinct {
                    let (mut with, mut without) = (Vec::new(), Vec::new());
                    for (v, growth) in &with_value {
                        if v == i { &mut with } else { &mut without }.push(*growth);
                    }
                    if with.len() < MIN_GROUP || without.len() < MIN_GROUP {
                        continue;
                    }
                    let (Some(p), Some((effect, low, high))) = (
                        mann_whitney(&with, &without),
                        hodges_lehmann(&with, &without),
                    ) else {
                        continue;
                    };
                    candidates.push(ParameterFinding {
                        name: name.to_string(),
                        value: Some(value.to_string()),
                        with_bytes: median(&with),
                        without_bytes: median(&without),
                        effect_bytes: effect,
                        effect_low_bytes: Some(low),
                        effect_high_bytes: Some(high),
                        trials_with: with.len(),
                        trials_without: without.len(),
                        rho: None,
                        p_value: p,
                        significant: false,
                    });
                }
            }
        }
    }
    let tests = candidates.len() as f64;
    for c in &mut candidates {
        c.p_value = (c.p_value * tests).min(1.0);
        c.significant = c.p_value < SIGNIFICANCE && c.effect_bytes.abs() >= MIN_EFFECT_BYTES;
    }
    candidates.sort_by(|a, b| {
        (b.significant, b.effect_bytes.abs())
            .partial_cmp(&(a.significant, a.effect_bytes.abs()))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    // A value that leaks makes the other values look like they "don't": keep the positive side.
    candidates.retain(|c| c.significant && c.effect_bytes > 0.0);
    candidates.truncate(5);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_leaking_value() {
        let sizes = ["16", "32", "64"];
        let params: Vec<crate::recording::ParamMap> = (0..30)
            .map(|i| {
                [
                    (
                        "batch_size".into(),
                        serde_json::json!(sizes[i % 3].parse::<u32>().unwrap_or(0)),
                    ),
                    (
                        "optimizer".into(),
                        serde_json::json!(["adam", "sgd"][i % 2]),
                    ),
                ]
                .into_iter()
                .collect()
            })
            .collect();
        let trials: Vec<TrialGrowth> = params
            .iter()
            .enumerate()
            .map(|(i, p)| TrialGrowth {
                params: p,
                growth: if i % 3 == 2 { 16.0 } else { 0.0 } * 1048576.0
                    + (i as f64 * 7.3).sin() * 4.0 * 1048576.0,
            })
            .collect();
        let found = parameter_effects(&trials);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].name.as_str(), found[0].value.as_deref()),
            ("batch_size", Some("64"))
        );
        assert!((found[0].effect_bytes / 1048576.0 - 16.0).abs() < 4.0);
    }

    #[test]
    fn continuous_parameters_use_rank_correlation() {
        let params: Vec<crate::recording::ParamMap> = (0..40)
            .map(|i| {
                [("hidden".into(), serde_json::json!(64 + i * 8))]
                    .into_iter()
                    .collect()
            })
            .collect();
        let trials: Vec<TrialGrowth> = params
            .iter()
            .enumerate()
            .map(|(i, p)| TrialGrowth {
                params: p,
                growth: i as f64 * 0.5 * 1048576.0,
            })
            .collect();
        let found = parameter_effects(&trials);
        assert_eq!(found.len(), 1);
        assert!(found[0].rho.is_some_and(|r| r > 0.9) && found[0].value.is_none());
    }
}
