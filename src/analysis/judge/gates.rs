//! Findings against a growth budget (`memwarden check`, for CI; two runs against each other,
//! `memwarden diff`, are `compare`'s). A budget is exceeded only with confidence: the
//! lower end of the 95% interval of the ongoing growth rate is above it.

use super::findings::{Basis, Findings, KindFinding};
use super::per_test::{self, TestCheck, TestOutcome};
use super::repeats::DEFAULT_WARMUP;
use super::verdict::Verdict;
use crate::analysis::kind::Kind;
use crate::analysis::measures::Rate;
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

pub(super) fn rate_per(finding: &KindFinding, per: Per) -> Option<Rate> {
    match per {
        Per::Trial => finding.per_trial,
        Per::Hour => finding.per_hour,
    }
}

/// A per-hour rate fitted from less than this much recording is an extrapolation, not a
/// measurement: a 5-second run does not say how much memory grows in an hour.
pub const MIN_HOURLY_WINDOW_S: f64 = 300.0;

/// One kind of one worker against the budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindCheck {
    pub kind: Kind,
    pub verdict: Verdict,
    /// `None`: not enough data to judge this kind (`why` says what is missing).
    pub rate: Option<Rate>,
    pub exceeds: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// How a worker fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Within,
    Exceeds,
    /// No kind had enough data to decide.
    NotEnoughData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerCheck {
    pub worker: u32,
    pub outcome: Outcome,
    /// The kind that decided, and why it was the one.
    pub kind: Kind,
    pub chosen_because: String,
    pub verdict: Verdict,
    pub rate: Option<Rate>,
    pub kinds: Vec<KindCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Within the budget, every worker judged, and the run ended cleanly.
    pub passed: bool,
    pub outcome: Outcome,
    pub budget: GrowthBudget,
    pub workers: Vec<WorkerCheck>,
    /// Why the run cannot pass whatever its growth (it crashed or ended abruptly).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<String>,
    /// A run of repeated tests (the pytest plugin) is judged test by test, not per worker
    /// (`workers` is then empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<TestCheck>,
}

/// One kind against the budget: judged only with enough data.
/// `pss_reads`: on how many ticks the worker's PSS was read (not carried), where known.
fn judge(
    finding: &KindFinding,
    budget: GrowthBudget,
    duration_s: f64,
    pss_reads: Option<u64>,
) -> KindCheck {
    let min_points = super::verdict::Rules::default().min_points;
    let starved = matches!(finding.kind, Kind::Pss | Kind::Uss)
        .then_some(pss_reads)
        .flatten()
        .filter(|reads| (*reads as usize) < min_points);
    let missing = if let Some(reads) = starved {
        // Carried between rare reads, PSS looks flat: a fit on it would pass any leak.
        Some(format!(
            "not enough data (PSS read on {reads} tick(s), {min_points} needed; the rest carried)"
        ))
    } else if finding.verdict == Verdict::InsufficientData {
        Some(format!(
            "not enough data ({} points; {min_points} needed)",
            finding.points
        ))
    } else if budget.per == Per::Trial && finding.basis == Basis::Time {
        Some("no trial boundaries, so no growth per trial".to_string())
    } else if budget.per == Per::Hour && duration_s < MIN_HOURLY_WINDOW_S {
        Some(format!(
            "a rate per hour from {duration_s:.0} s of recording is an extrapolation (at least {MIN_HOURLY_WINDOW_S:.0} s needed); give the budget per trial"
        ))
    } else if rate_per(finding, budget.per).is_none() {
        Some("no growth rate could be fitted".to_string())
    } else {
        None
    };
    let rate = missing
        .is_none()
        .then(|| rate_per(finding, budget.per))
        .flatten();
    KindCheck {
        kind: finding.kind,
        verdict: finding.verdict,
        exceeds: rate.is_some_and(|r| r.low_bytes > budget.bytes),
        rate,
        why: missing,
    }
}

/// Judges every worker. Without `kind`, every kind with enough data is judged and any over the
/// budget fails the worker: the kind the analysis bases its verdict on first, but a leak in
/// anonymous memory is not passed because PSS, read less often, fitted flat. A worker no kind
/// could judge is "not enough data", never a pass. `Err` for what no data could fix: no
/// workers, the kind asked for not recorded, a per-trial budget on a run with no trials.
pub fn check(
    findings: &Findings,
    kind: Option<Kind>,
    budget: GrowthBudget,
    crashes: &[(u32, String)],
) -> Result<CheckReport, String> {
    if per_test::repeated(&findings.trials) {
        return check_tests(findings, kind, budget, crashes);
    }
    if findings.workers.is_empty() {
        return Err("the recording has no workers to judge".into());
    }
    if budget.per == Per::Trial && findings.run.trials == 0 {
        return Err(
            "no trials were seen, so growth per trial is unknown; give the budget per hour (e.g. 50MiB/h), or mark trials".into(),
        );
    }
    let duration_s = findings.run.duration_s;
    let mut workers = Vec::new();
    for w in &findings.workers {
        let pss_reads = findings
            .sampler_health
            .iter()
            .find(|h| h.worker == w.worker)
            .map(|h| h.pss.read_ticks);
        let kinds: Vec<KindCheck> = match kind {
            Some(k) => vec![judge(
                w.kind_finding(k)
                    .ok_or_else(|| format!("worker {}: no {} was recorded", w.worker, k.words()))?,
                budget,
                duration_s,
                pss_reads,
            )],
            None => w
                .kinds
                .iter()
                .map(|k| judge(k, budget, duration_s, pss_reads))
                .collect(),
        };
        let largest = |checks: &mut dyn Iterator<Item = &KindCheck>| {
            checks
                .max_by(|a, b| {
                    let rate = |c: &KindCheck| c.rate.map_or(f64::MIN, |r| r.bytes);
                    rate(a).total_cmp(&rate(b))
                })
                .cloned()
        };
        let headline = kinds.iter().find(|c| c.kind == w.kind && c.rate.is_some());
        // The verdict's kind when it is over the budget; else the fastest of those over.
        let over = kinds
            .iter()
            .find(|c| c.exceeds && c.kind == w.kind)
            .cloned()
            .or_else(|| largest(&mut kinds.iter().filter(|c| c.exceeds)));
        let (outcome, decided, because) = if let Some(over) = over {
            let because = if kind.is_some() {
                "the kind asked for".to_string()
            } else if over.kind == w.kind {
                "the kind the analysis bases its verdict on, over the budget".to_string()
            } else {
                format!(
                    "over the budget (the verdict's kind, {}, is {})",
                    w.kind.name(),
                    headline.map_or("without enough data".to_string(), |h| {
                        h.verdict.word().to_string()
                    })
                )
            };
            (Outcome::Exceeds, over, because)
        } else if let Some(h) = headline {
            let because = if kind.is_some() {
                "the kind asked for"
            } else {
                "the kind the analysis bases its verdict on; every other kind with data is within too"
            };
            (Outcome::Within, h.clone(), because.to_string())
        } else if let Some(other) = largest(&mut kinds.iter().filter(|c| c.rate.is_some())) {
            let because = if kind.is_some() {
                "the kind asked for".to_string()
            } else {
                format!(
                    "the fastest-growing kind with enough data (the verdict's kind, {}, has too little)",
                    w.kind.name()
                )
            };
            (Outcome::Within, other, because)
        } else {
            let first = kinds
                .iter()
                .find(|c| c.kind == w.kind)
                .or(kinds.first())
                .cloned()
                .expect("a worker finding has kinds");
            let why = first.why.clone().unwrap_or_default();
            (Outcome::NotEnoughData, first, why)
        };
        workers.push(WorkerCheck {
            worker: w.worker,
            outcome,
            kind: decided.kind,
            chosen_because: because,
            verdict: decided.verdict,
            rate: decided.rate,
            kinds,
        });
    }
    let outcome = overall(
        workers.iter().any(|w| w.outcome == Outcome::Exceeds),
        workers.iter().any(|w| w.outcome == Outcome::NotEnoughData),
    );
    Ok(report(
        findings,
        crashes,
        budget,
        outcome,
        workers,
        Vec::new(),
    ))
}

/// Any over budget fails; else any that could not be judged is not a pass.
fn overall(exceeds: bool, not_enough_data: bool) -> Outcome {
    if exceeds {
        Outcome::Exceeds
    } else if not_enough_data {
        Outcome::NotEnoughData
    } else {
        Outcome::Within
    }
}

/// The verdict with the run's faults (a crash, an abrupt end), which no growth can pass.
fn report(
    findings: &Findings,
    crashes: &[(u32, String)],
    budget: GrowthBudget,
    outcome: Outcome,
    workers: Vec<WorkerCheck>,
    tests: Vec<TestCheck>,
) -> CheckReport {
    let faults = faults(findings, crashes);
    CheckReport {
        passed: outcome == Outcome::Within && faults.is_empty(),
        outcome,
        budget,
        workers,
        faults,
        tests,
    }
}

/// A run of repeated tests: each test against its budget per repeat, every kind the worker
/// read at the ends unless `kind` narrows it. Any test over fails the run; a test that could
/// not be judged (too few repeats, an interval reaching its budget) is not a pass.
fn check_tests(
    findings: &Findings,
    kind: Option<Kind>,
    budget: GrowthBudget,
    crashes: &[(u32, String)],
) -> Result<CheckReport, String> {
    if budget.per != Per::Trial {
        return Err(
            "tests are judged per repeat: give --max-growth per trial (e.g. 1MiB/trial)".into(),
        );
    }
    let kinds = match kind {
        None => per_test::KINDS.to_vec(),
        Some(k) if per_test::KINDS.contains(&k) => vec![k],
        Some(k) => {
            return Err(format!(
                "tests are judged on what each repeat's end read (anon, shmem, file), not {}",
                k.name()
            ))
        }
    };
    let tests = per_test::judge(
        &findings.trials,
        budget.bytes,
        &kinds,
        DEFAULT_WARMUP as usize,
    )?;
    let any = |outcome| tests.iter().any(|t| t.outcome == outcome);
    let outcome = overall(any(TestOutcome::Exceeds), any(TestOutcome::NotEnoughData));
    Ok(report(
        findings,
        crashes,
        budget,
        outcome,
        Vec::new(),
        tests,
    ))
}

/// Why the run cannot pass whatever its growth.
fn faults(findings: &Findings, crashes: &[(u32, String)]) -> Vec<String> {
    let mut faults = Vec::new();
    if findings.run.status == super::findings::Ending::EndedAbruptly {
        faults.push(
            "the run ended abruptly (a crash, a kill or a power loss): a partial run is not a pass"
                .to_string(),
        );
    }
    for (worker, how) in crashes {
        faults.push(format!("worker {worker} crashed: it {how}"));
    }
    faults
}

/// Per worker, how it ended when that was not memwarden's doing: an exit with a non-zero code
/// or a signal that no policy stop and no end of the run asked for.
pub fn crashes(events: &[crate::recording::Event]) -> Vec<(u32, String)> {
    use crate::recording::{EventKind, PolicyAction};
    let mut sorted: Vec<&crate::recording::Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.t_ns);
    let mut stopping = std::collections::BTreeSet::new();
    let mut ending = false;
    let mut out = Vec::new();
    for event in sorted {
        match &event.kind {
            EventKind::Policy {
                action: PolicyAction::Stop,
                ..
            } => {
                if let Some(worker) = event.worker {
                    stopping.insert(worker);
                }
            }
            EventKind::Stop { .. } => ending = true,
            EventKind::WorkerExit { code, signal, .. } => {
                let Some(worker) = event.worker else { continue };
                let asked = stopping.remove(&worker) || ending;
                let how = match (code, signal) {
                    (_, Some(signal)) => format!("was killed by signal {signal}"),
                    (Some(code), None) if *code != 0 => format!("exited with code {code}"),
                    _ => continue,
                };
                if !asked {
                    out.push((worker, how));
                }
            }
            _ => {}
        }
    }
    out
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
