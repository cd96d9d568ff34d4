//! Two runs against each other (`memwarden diff`, before and after a fix): the fastest ongoing
//! growth of each, in one kind and unit, and whether it changed beyond both intervals.

use super::findings::Basis;
use super::findings::Findings;
use super::gates::{rate_per, Per};
use super::verdict::Verdict;
use crate::analysis::kind::Kind;
use crate::analysis::measures::Rate;
use crate::stats::normal_cdf;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// The worker with the fastest ongoing growth.
    pub worker: u32,
    pub verdict: Verdict,
    pub rate: Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Less,
    More,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub kind: Kind,
    pub per: Per,
    pub before: Side,
    pub after: Side,
    pub change_bytes: f64,
    /// Relative to `before` (−1 is a leak fully fixed); `None` when before did not grow.
    pub change_fraction: Option<f64>,
    /// Two-sided confidence that the rates differ (normal approximation, each interval's
    /// half-width taken as 1.96 standard errors).
    pub confidence: f64,
    pub change: Change,
}

fn worst(findings: &Findings, kind: Kind, per: Per) -> Option<Side> {
    findings
        .workers
        .iter()
        .filter_map(|w| {
            let k = w.kind_finding(kind)?;
            Some(Side {
                worker: w.worker,
                verdict: k.verdict,
                rate: rate_per(k, per)?,
            })
        })
        .max_by(|a, b| a.rate.bytes.total_cmp(&b.rate.bytes))
}

/// The kind `diff` compares unless told: the kind a leaking worker's verdict rests on, in the
/// run before or else the run after; else the first worker's headline kind.
pub fn leak_kind(before: &Findings, after: &Findings) -> Kind {
    [before, after]
        .iter()
        .flat_map(|f| f.workers.iter())
        .find(|w| w.verdict == Verdict::Leak)
        .or(before.workers.first())
        .map_or(Kind::Pss, |w| w.kind)
}

pub fn diff(before: &Findings, after: &Findings, kind: Kind) -> Result<Comparison, String> {
    let per_trial = |f: &Findings| {
        f.workers.iter().all(|w| {
            w.kind_finding(kind)
                .is_some_and(|k| k.basis == Basis::Trials)
        })
    };
    let per = if per_trial(before) && per_trial(after) {
        Per::Trial
    } else {
        Per::Hour
    };
    let side = |f: &Findings, name: &str| {
        worst(f, kind, per).ok_or_else(|| {
            format!(
                "{name} run ({}): no {} growth rate could be fitted",
                f.run.dir,
                kind.words()
            )
        })
    };
    let (a, b) = (side(before, "the first")?, side(after, "the second")?);
    let standard_error = |r: &Rate| ((r.high_bytes - r.low_bytes) / (2.0 * 1.96)).max(0.0);
    let spread = (standard_error(&a.rate).powi(2) + standard_error(&b.rate).powi(2)).sqrt();
    let change_bytes = b.rate.bytes - a.rate.bytes;
    let confidence = if spread > 0.0 {
        2.0 * normal_cdf((change_bytes / spread).abs()) - 1.0
    } else if change_bytes != 0.0 {
        1.0
    } else {
        0.0
    };
    let change = if confidence < 0.95 {
        Change::Unchanged
    } else if change_bytes < 0.0 {
        Change::Less
    } else {
        Change::More
    };
    Ok(Comparison {
        kind,
        per,
        change_fraction: (a.rate.bytes > 0.0).then(|| change_bytes / a.rate.bytes),
        before: a,
        after: b,
        change_bytes,
        confidence,
        change,
    })
}
