//! The search framework's own growth (Optuna's storage and sampler), from the tracer's sites
//! flagged `study`: each such line is small (a trial's record, a cache entry) and below the bar
//! for a line of its own, so they are summed per process and report and fitted as one.

use super::site_series::{Series, SiteKey};
use crate::analysis::measures::Rate;
use crate::stats::theil_sen;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Growth of the search framework's own state, summed over its lines: each is small (a trial's
/// record, its parameters, the sampler's cache) and below the bar for a line of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyGrowth {
    /// Summed over the traced processes.
    pub per_trial: Rate,
    /// One-sided confidence that the summed bytes grow.
    pub confidence: f64,
    /// Reports the fit used (the most of any process).
    pub reports: usize,
    /// The lines that grew most, as `file:line`, fastest first (at most three).
    pub lines: Vec<String>,
    /// The worker's own measured growth per trial, in its growing kind: the bound on this.
    /// Tracing counts what traced trials allocated and kept, but not the older, untraced
    /// memory they freed (a bounded cache evicting entries), so it can read above the whole.
    #[serde(default)]
    pub measured_bytes: Option<f64>,
}

/// The study's summed growth is told from this confidence on (one-sided, as the verdicts').
const STUDY_CONFIDENCE: f64 = 0.95;
/// The fewest reports of one process the study's fit is made from.
const STUDY_MIN_REPORTS: usize = 5;

/// The study-side sites' retained bytes summed per process and report, fitted per traced
/// trial; `None` unless they grow with confidence. `measured_bytes`: the worker's own rate.
pub(super) fn study_growth(
    series: &BTreeMap<(i32, SiteKey), Series>,
    indexed: &BTreeMap<i32, usize>,
    measured_bytes: Option<f64>,
) -> Option<StudyGrowth> {
    let mut total: Option<(Rate, f64, usize)> = None;
    let mut lines: Vec<(f64, String)> = Vec::new();
    for (pid, &reports) in indexed {
        let mut summed = vec![0.0; reports];
        let mut any = false;
        for ((_, (file, line)), s) in series.range((*pid, (String::new(), 0))..) {
            if s.pid != *pid {
                break;
            }
            if !s.last.is_some_and(|site| site.study) {
                continue;
            }
            any = true;
            // A site keeps its last level through the reports after it was last listed.
            let last = s.retained.last().copied().unwrap_or(0.0);
            for (i, slot) in summed.iter_mut().enumerate() {
                *slot += s.retained.get(i).copied().unwrap_or(last);
            }
            let x: Vec<f64> = (0..s.retained.len()).map(|i| i as f64).collect();
            if let Some(trend) = theil_sen(&x, &s.retained) {
                lines.push((trend.slope, format!("{file}:{line}")));
            }
        }
        if !any || reports < STUDY_MIN_REPORTS {
            continue;
        }
        let x: Vec<f64> = (0..reports).map(|i| i as f64).collect();
        let Some(trend) = theil_sen(&x, &summed) else {
            continue;
        };
        if trend.slope <= 0.0 || trend.growth_confidence < STUDY_CONFIDENCE {
            continue;
        }
        let rate = Rate::from(&trend);
        let (sum, confidence, most) = total.get_or_insert((
            Rate {
                bytes: 0.0,
                low_bytes: 0.0,
                high_bytes: 0.0,
            },
            0.0,
            0,
        ));
        *sum += rate;
        *confidence = confidence.max(trend.growth_confidence);
        *most = (*most).max(reports);
    }
    let (per_trial, confidence, reports) = total?;
    lines.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut named: Vec<String> = Vec::new();
    for (_, line) in lines {
        if named.len() < 3 && !named.contains(&line) {
            named.push(line);
        }
    }
    Some(StudyGrowth {
        per_trial,
        confidence,
        reports,
        lines: named,
        measured_bytes,
    })
}
