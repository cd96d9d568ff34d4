//! `memwarden check` per test. Under the pytest plugin (python/memwarden/_pytest.py) each test
//! is a trial, its node id the trial id, and `--memwarden-repeat N` runs it N times in the same
//! process, each repeat a trial with `memwarden_repeat=k`. A test is judged on its own repeats
//! only: the levels the worker read itself at each repeat's end, fitted after a warm-up
//! (analysis::repeats) against the test's budget per repeat. Growth per trial across a whole
//! suite would mix tests of every size and charge one test's first-use imports to the next.
//! Pure: trial records in, one judgement per test out.

use super::findings::TrialRecord;
use super::repeats::{self, RepeatVerdict};
use crate::analysis::kind::Kind;
use crate::analysis::measures::Rate;
use serde::{Deserialize, Serialize};

/// On each repeat's start marker: the repeat's number, from 1.
pub const REPEAT_FIELD: &str = "memwarden_repeat";
/// On each repeat's start marker, from `@pytest.mark.memwarden_budget("2MiB")`.
pub const BUDGET_FIELD: &str = "memwarden_budget";
/// What the worker reads of itself at each end (memwarden.own_memory): PSS and USS are not
/// read there, and a sampler tick between two millisecond-long tests is no end reading.
pub const KINDS: [Kind; 3] = [Kind::Anon, Kind::Shmem, Kind::File];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestOutcome {
    Within,
    Exceeds,
    /// Too few complete repeats, or growth whose interval reaches the budget.
    NotEnoughData,
    /// Every repeat was skipped: nothing ran to judge.
    Skipped,
}

/// One kind of one test, over its repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindRepeats {
    pub kind: Kind,
    pub verdict: RepeatVerdict,
    /// Growth per repeat after the warm-up (Theil–Sen, 95% interval).
    pub per_repeat: Option<Rate>,
    /// The level retained at each complete repeat's end (bytes), warm-up first.
    pub levels: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestCheck {
    pub worker: u32,
    /// The test's node id, as the plugin printed it (whitespace as `_`).
    pub test: String,
    pub outcome: TestOutcome,
    /// The most growth allowed per repeat, and whether the test's marker set it.
    pub budget_bytes: f64,
    pub budget_marked: bool,
    /// Repeats that ran to a complete end, and those that failed.
    pub repeats: usize,
    pub failed: usize,
    /// Of the complete repeats, how many were warm-up.
    pub warmup: usize,
    /// The kind that decided (the fastest over the budget, else anonymous memory).
    pub kind: Kind,
    pub per_repeat: Option<Rate>,
    pub kinds: Vec<KindRepeats>,
}

impl TestCheck {
    pub fn decided(&self) -> Option<&KindRepeats> {
        self.kinds.iter().find(|k| k.kind == self.kind)
    }
}

/// Whether the run's trials are repeats of tests (the plugin's markers).
pub fn repeated(trials: &[TrialRecord]) -> bool {
    trials.iter().any(|t| t.params.get(REPEAT_FIELD).is_some())
}

fn budget_of(test: &str, value: Option<&serde_json::Value>) -> Result<Option<f64>, String> {
    let bytes = match value {
        None => return Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(serde_json::Value::String(s)) => crate::units::parse_bytes(s)
            .map_err(|e| format!("{test}: its {BUDGET_FIELD} marker {s:?}: {e}"))?,
        Some(_) => f64::NAN,
    };
    if !bytes.is_finite() || bytes < 0.0 {
        return Err(format!(
            "{test}: its {BUDGET_FIELD} marker {value:?} is not a size of 0 or more, e.g. \"2MiB\"",
            value = value.map(|v| v.to_string()).unwrap_or_default()
        ));
    }
    Ok(Some(bytes))
}

/// Judges every test: `budget` per repeat where its marker sets none, `kinds` those judged.
/// `Err` for a budget marker that is not a size.
pub fn judge(
    trials: &[TrialRecord],
    budget: f64,
    kinds: &[Kind],
    warmup: usize,
) -> Result<Vec<TestCheck>, String> {
    // Tests in the order they first ran; each one's repeats in the order they ran.
    let mut order: Vec<(u32, &str)> = Vec::new();
    let mut groups: std::collections::HashMap<(u32, &str), Vec<&TrialRecord>> = Default::default();
    for trial in trials
        .iter()
        .filter(|t| t.params.get(REPEAT_FIELD).is_some())
    {
        let key = (trial.worker, trial.trial.as_str());
        groups.entry(key).or_insert_with(|| {
            order.push(key);
            Vec::new()
        });
        groups.get_mut(&key).expect("inserted").push(trial);
    }
    let mut out = Vec::new();
    for key in order {
        let mut runs = groups.remove(&key).unwrap_or_default();
        runs.sort_by_key(|t| (t.start_ns, t.ordinal));
        let marked = budget_of(key.1, runs.iter().find_map(|t| t.params.get(BUDGET_FIELD)))?;
        let budget_bytes = marked.unwrap_or(budget);
        let complete: Vec<&TrialRecord> = runs
            .iter()
            .copied()
            .filter(|t| t.state == "complete")
            .collect();
        let failed = runs.iter().filter(|t| t.state == "fail").count();
        let skipped = runs.iter().all(|t| t.state == "skipped");
        let judged: Vec<KindRepeats> = kinds
            .iter()
            .map(|&kind| {
                let levels: Vec<f64> = complete
                    .iter()
                    .filter_map(|t| t.tree.get(&kind)?.retained)
                    .collect();
                let fit = repeats::fit(&levels, warmup, budget_bytes);
                KindRepeats {
                    kind,
                    verdict: fit.verdict,
                    per_repeat: fit.per_repeat,
                    levels,
                }
            })
            .collect();
        let fastest_leak = judged
            .iter()
            .filter(|k| k.verdict == RepeatVerdict::Leaks)
            .max_by(|a, b| {
                let bytes = |k: &KindRepeats| k.per_repeat.map_or(f64::MIN, |r| r.bytes);
                bytes(a).total_cmp(&bytes(b))
            });
        let unsure = judged.iter().find(|k| k.verdict != RepeatVerdict::Stable);
        let (outcome, decided) = if skipped {
            (TestOutcome::Skipped, judged.first())
        } else if let Some(leak) = fastest_leak {
            (TestOutcome::Exceeds, Some(leak))
        } else if let Some(unsure) = unsure {
            (TestOutcome::NotEnoughData, Some(unsure))
        } else {
            (TestOutcome::Within, judged.first())
        };
        out.push(TestCheck {
            worker: key.0,
            test: key.1.to_string(),
            outcome,
            budget_bytes,
            budget_marked: marked.is_some(),
            repeats: complete.len(),
            failed,
            warmup: warmup.min(complete.len()),
            kind: decided.map_or(Kind::Anon, |k| k.kind),
            per_repeat: decided.and_then(|k| k.per_repeat),
            kinds: judged,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::measures::LevelTriple;

    const MIB: f64 = 1048576.0;

    fn repeat(
        test: &str,
        k: usize,
        state: &str,
        anon_mib: f64,
        budget: Option<&str>,
    ) -> TrialRecord {
        let mut few = crate::few::Few::new();
        few.insert(REPEAT_FIELD.into(), serde_json::json!(k));
        if let Some(b) = budget {
            few.insert(BUDGET_FIELD.into(), serde_json::json!(b));
        }
        let params = std::sync::Arc::new(few);
        let level = |bytes: f64| LevelTriple {
            baseline: None,
            peak: None,
            retained: Some(bytes),
        };
        let mut tree = crate::analysis::load::levels::Levels::default();
        tree.insert(Kind::Anon, level(anon_mib * MIB));
        tree.insert(Kind::Shmem, level(0.0));
        TrialRecord {
            worker: 0,
            trial: test.into(),
            ordinal: k,
            start_ns: Some(k as u64),
            end_ns: Some(k as u64 + 1),
            state: state.into(),
            params,
            tree,
            processes: Default::default(),
        }
    }

    /// Three tests interleaved as pytest runs them (each test's repeats together, the levels
    /// climbing across the suite): a leak of 8 MiB per repeat, a test within its marked 2 MiB
    /// though over the default 1 MiB, and a clean one.
    fn suite() -> Vec<TrialRecord> {
        let mut trials = Vec::new();
        let mut level = 100.0;
        let mut ordinal = 0;
        for (test, step, budget) in [
            ("t.py::leaks", 8.0, None),
            ("t.py::marked", 1.5, Some("2MiB")),
            ("t.py::clean", 0.0, None),
        ] {
            for k in 1..=5 {
                level += if k == 1 { 30.0 } else { step };
                let mut t = repeat(test, k, "complete", level, budget);
                t.ordinal = ordinal;
                t.start_ns = Some(ordinal as u64);
                ordinal += 1;
                trials.push(t);
            }
        }
        trials
    }

    #[test]
    fn each_test_is_judged_on_its_own_repeats_against_its_own_budget() {
        let checks = judge(&suite(), MIB, &[Kind::Anon, Kind::Shmem], 2).expect("judged");
        let outcomes: Vec<(&str, TestOutcome)> = checks
            .iter()
            .map(|c| (c.test.as_str(), c.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("t.py::leaks", TestOutcome::Exceeds),
                ("t.py::marked", TestOutcome::Within),
                ("t.py::clean", TestOutcome::Within),
            ]
        );
        let leak = &checks[0];
        assert_eq!((leak.kind, leak.repeats, leak.warmup), (Kind::Anon, 5, 2));
        assert!((leak.per_repeat.expect("fitted").bytes - 8.0 * MIB).abs() < 1.0);
        assert!(checks[1].budget_marked && checks[1].budget_bytes == 2.0 * MIB);
        assert!(!checks[2].budget_marked && checks[2].budget_bytes == MIB);
        // Without its marker the 1.5 MiB test is over the default budget.
        let unmarked: Vec<TrialRecord> = suite()
            .into_iter()
            .map(|mut t| {
                let k = t.params.get(REPEAT_FIELD).cloned().expect("a repeat");
                let mut few = crate::few::Few::new();
                few.insert(REPEAT_FIELD.into(), k);
                t.params = std::sync::Arc::new(few);
                t
            })
            .collect();
        let checks = judge(&unmarked, MIB, &[Kind::Anon], 2).expect("judged");
        assert_eq!(checks[1].outcome, TestOutcome::Exceeds);
    }

    #[test]
    fn too_few_repeats_failures_and_skips_are_not_passes() {
        let once: Vec<TrialRecord> = (1..=3)
            .map(|k| repeat(&format!("t.py::once{k}"), 1, "complete", 100.0, None))
            .collect();
        let checks = judge(&once, MIB, &[Kind::Anon], 2).expect("judged");
        assert!(checks
            .iter()
            .all(|c| c.outcome == TestOutcome::NotEnoughData));
        assert_eq!(checks[0].kinds[0].verdict, RepeatVerdict::TooFewRepeats);
        // Two of five repeats failed: three complete are not enough after the warm-up.
        let mut flaky: Vec<TrialRecord> = (1..=5)
            .map(|k| repeat("t.py::flaky", k, "complete", 100.0, None))
            .collect();
        flaky[1].state = "fail".into();
        flaky[3].state = "fail".into();
        let check = &judge(&flaky, MIB, &[Kind::Anon], 2).expect("judged")[0];
        assert_eq!(
            (check.outcome, check.failed, check.repeats),
            (TestOutcome::NotEnoughData, 2, 3)
        );
        let skipped: Vec<TrialRecord> = (1..=5)
            .map(|k| repeat("t.py::skip", k, "skipped", 100.0, None))
            .collect();
        let check = &judge(&skipped, MIB, &[Kind::Anon], 2).expect("judged")[0];
        assert_eq!(check.outcome, TestOutcome::Skipped);
    }

    #[test]
    fn a_budget_marker_that_is_not_a_size_is_an_error_naming_the_test() {
        let trials: Vec<TrialRecord> = (1..=5)
            .map(|k| repeat("t.py::odd", k, "complete", 100.0, Some("lots")))
            .collect();
        let error = judge(&trials, MIB, &[Kind::Anon], 2).expect_err("not a size");
        assert!(
            error.starts_with("t.py::odd: its memwarden_budget marker \"lots\""),
            "{error}"
        );
        assert!(!repeated(&[]) && repeated(&trials));
    }
}
