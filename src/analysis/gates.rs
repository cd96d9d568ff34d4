//! Findings against a growth budget (`memwarden check`, for CI), and two runs against each other
//! (`memwarden diff`, before and after a fix). A budget is exceeded only with confidence: the
//! lower end of the 95% interval of the ongoing growth rate is above it.

use super::findings::{Basis, Findings, KindFinding, Rate};
use super::kind::Kind;
use super::stats::normal_cdf;
use super::verdict::Verdict;
use crate::units::parse_bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Trial,
    Hour,
}

impl Per {
    pub fn unit(self) -> &'static str {
        match self {
            Per::Trial => "trial",
            Per::Hour => "h",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GrowthBudget {
    pub bytes: f64,
    pub per: Per,
}

impl std::fmt::Display for GrowthBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", crate::units::size(self.bytes), self.per.unit())
    }
}

impl std::str::FromStr for GrowthBudget {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (size, per) = text.split_once('/').ok_or_else(|| {
            format!("{text:?}: write a size per trial or per hour, e.g. 1MiB/trial or 50MiB/h")
        })?;
        let per = match per.trim() {
            "trial" => Per::Trial,
            "h" | "hour" | "hr" => Per::Hour,
            other => return Err(format!("{other:?}: the budget is per `trial` or per `h`")),
        };
        let bytes = parse_bytes(size)?;
        if !bytes.is_finite() || bytes < 0.0 {
            return Err(format!("{text:?}: the budget must be a size of 0 or more"));
        }
        Ok(Self { bytes, per })
    }
}

fn rate_per(finding: &KindFinding, per: Per) -> Option<Rate> {
    match per {
        Per::Trial => finding.per_trial,
        Per::Hour => finding.per_hour,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerCheck {
    pub worker: u32,
    pub verdict: Verdict,
    pub rate: Rate,
    pub exceeds: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub passed: bool,
    pub kind: Kind,
    pub budget: GrowthBudget,
    pub workers: Vec<WorkerCheck>,
}

/// `Err` when a worker cannot be judged (too little data, the kind not measured, a per-trial
/// budget on a run with no trials): a check that cannot see must not pass.
pub fn check(findings: &Findings, kind: Kind, budget: GrowthBudget) -> Result<CheckReport, String> {
    if findings.workers.is_empty() {
        return Err("the recording has no workers to judge".into());
    }
    let mut workers = Vec::new();
    for w in &findings.workers {
        let finding = w
            .kind_finding(kind)
            .ok_or_else(|| format!("worker {}: no {} was recorded", w.worker, kind.words()))?;
        if finding.verdict == Verdict::InsufficientData {
            return Err(format!(
                "worker {}: too little data to judge ({} points; {} needed)",
                w.worker,
                finding.points,
                super::verdict::Rules::default().min_points
            ));
        }
        if budget.per == Per::Trial && finding.basis == Basis::Time {
            return Err(format!(
                "worker {}: no trials were seen, so growth per trial is unknown; give the budget per hour (e.g. 50MiB/h)",
                w.worker
            ));
        }
        let rate = rate_per(finding, budget.per)
            .ok_or_else(|| format!("worker {}: no growth rate could be fitted", w.worker))?;
        workers.push(WorkerCheck {
            worker: w.worker,
            verdict: finding.verdict,
            rate,
            exceeds: rate.low_bytes > budget.bytes,
        });
    }
    Ok(CheckReport {
        passed: workers.iter().all(|w| !w.exceeds),
        kind,
        budget,
        workers,
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_units() {
        let b: GrowthBudget = "1MiB/trial".parse().expect("budget");
        assert_eq!((b.bytes, b.per), (1048576.0, Per::Trial));
        let b: GrowthBudget = "50 MiB/h".parse().expect("budget");
        assert_eq!((b.bytes, b.per), (50.0 * 1048576.0, Per::Hour));
        assert_eq!(parse_bytes("100MB"), Ok(1e8));
        assert!("1MiB".parse::<GrowthBudget>().is_err());
        assert!("1 parsec/trial".parse::<GrowthBudget>().is_err());
        assert!("1MiB/week".parse::<GrowthBudget>().is_err());
        assert!("-1MiB/trial".parse::<GrowthBudget>().is_err());
    }
}
