//! What a replay found: whether the repeated trial leaks in one process, judged on the levels
//! retained at each repeat's end after a warm-up and against a noise floor; or, with
//! `--isolate`, whether what each fresh process held climbs from one to the next. Pure: the
//! replay's findings in, an outcome and its sentence out.

use crate::analysis::repeats::{self, RepeatFit};
use crate::analysis::text::{rate, site_clause};
use crate::analysis::Kind;
use crate::analysis::{Findings, Rate, TrialRecord};
use crate::stats::median;
use crate::units::{size, MIB};
use serde::Serialize;

pub use crate::analysis::repeats::{RepeatVerdict, DEFAULT_WARMUP, MIN_FITTED};
/// A leak must grow faster than this per repeat (the lower end of its 95% interval above it)...
pub const FLOOR_BYTES: f64 = MIB;
/// ... and faster than this share of the process's size per repeat: allocators round and
/// retain in proportion to what they manage (glibc arenas, PyTorch's pools).
pub const FLOOR_SHARE: f64 = 0.0025;

/// How repeats are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judging {
    pub warmup: u32,
    pub kind: Kind,
}

/// One replay's repeats, judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatOutcome {
    pub verdict: RepeatVerdict,
    pub kind: Kind,
    /// The level of `kind` retained at the end of each repeat, in order (bytes), warm-up first.
    pub levels: Vec<f64>,
    /// How many of `levels` are warm-up (shown, not fitted).
    pub warmup: usize,
    /// Growth per repeat after the warm-up (Theil–Sen, 95% interval).
    pub per_repeat: Option<Rate>,
    /// The floor this replay's growth was judged against (bytes per repeat).
    pub floor_bytes: f64,
    /// Where the growth was allocated, when the tracer named a line (`, at file:line`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub site: String,
}

impl RepeatOutcome {
    pub fn leaks(&self) -> bool {
        self.verdict == RepeatVerdict::Leaks
    }

    /// Growth per repeat, or 0 where none was fitted.
    pub fn bytes(&self) -> f64 {
        self.per_repeat.map_or(0.0, |r| r.bytes)
    }

    /// The sentence: the verdict, always with its figure or why there is none, and the
    /// warm-up repeats as they ended.
    pub fn words(&self) -> String {
        let figure = self
            .per_repeat
            .map(|r| format!("{} of {}", rate(&r, "repeat"), self.kind.words()));
        let floor = format!("floor {}", size(self.floor_bytes));
        let head = match (self.verdict, figure) {
            (RepeatVerdict::Leaks, Some(f)) => format!("LEAKS {f}{} ({floor})", self.site),
            (RepeatVerdict::Stable, Some(f)) => format!("stable: {f}, at or below the {floor}"),
            (RepeatVerdict::Undecided, Some(f)) => format!(
                "undecided: {f}; its interval reaches the {floor}: repeat more (--repeat {})",
                (self.levels.len() * 2).max(10)
            ),
            _ => format!(
                "not enough repeats: {} after {} warm-up, at least {MIN_FITTED} needed (--repeat {})",
                self.levels.len().saturating_sub(self.warmup),
                self.warmup,
                self.warmup + MIN_FITTED.max(6)
            ),
        };
        let warmup: Vec<String> = self.levels[..self.warmup.min(self.levels.len())]
            .iter()
            .map(|&l| size(l))
            .collect();
        if warmup.is_empty() {
            head
        } else {
            format!("{head}; warm-up ended at {}", warmup.join(", "))
        }
    }
}

/// The levels of `kind` retained at the end of each of worker 0's repeats, in order.
fn repeat_levels(trials: &[TrialRecord], kind: Kind) -> Vec<f64> {
    let mut trials: Vec<&TrialRecord> = trials.iter().filter(|t| t.worker == 0).collect();
    trials.sort_by_key(|t| t.ordinal);
    trials
        .iter()
        .filter_map(|t| t.tree.get(&kind)?.retained)
        .collect()
}

/// Judges the repeats of one replay. Memory before the first repeat ended never counts: the
/// levels are those retained at each repeat's end, and the first `warmup` are not fitted.
pub fn judge(findings: &Findings, judging: Judging) -> RepeatOutcome {
    let levels = repeat_levels(&findings.trials, judging.kind);
    let warmup = (judging.warmup as usize).min(levels.len());
    let fitted = &levels[warmup..];
    let floor_bytes = if fitted.is_empty() {
        FLOOR_BYTES
    } else {
        FLOOR_BYTES.max(FLOOR_SHARE * median(fitted))
    };
    let RepeatFit {
        verdict,
        per_repeat,
        warmup,
    } = repeats::fit(&levels, warmup, floor_bytes);
    let site = match (verdict, findings.workers.first()) {
        (RepeatVerdict::Leaks, Some(worker)) => site_clause(worker),
        _ => String::new(),
    };
    RepeatOutcome {
        verdict,
        kind: judging.kind,
        levels,
        warmup,
        per_repeat,
        floor_bytes,
        site,
    }
}

/// The kind a replay judges: the one the recorded run's verdict grew in, where that is a kind
/// of memory a process holds on its own; PSS, USS and RSS stand for private anonymous memory
/// (PSS moves with who else maps the same pages, and is read too seldom in a large process).
pub fn judged_kind(source_kind: Option<Kind>) -> Kind {
    match source_kind {
        Some(kind @ (Kind::Anon | Kind::Shmem | Kind::File | Kind::Gpu | Kind::Swap)) => kind,
        _ => Kind::Anon,
    }
}

/// With `--isolate`: what each fresh process retained after its one trial. The same amount
/// every time is a per-process cost, which only growth that accumulates within one process
/// (the default replay) can tell from a leak. Returns whether it climbs, and the sentence.
pub fn isolated_words(findings: &Findings, kind: Kind) -> (bool, String) {
    let levels = repeat_levels(&findings.trials, kind);
    let (Some(first), Some(last)) = (levels.first(), levels.last()) else {
        return (false, "no completed repeats to measure".into());
    };
    let mut sorted = levels.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let climbs = last - first > MIB.max(0.1 * median);
    let tail = if climbs {
        format!(
            "; it climbs from one fresh process to the next ({} to {}): the memory outlives the process (shared memory, files, a GPU or another daemon)",
            size(*first),
            size(*last)
        )
    } else {
        ". The same level in every fresh process is what one process costs; growth that accumulates only when the trial repeats in one process (without --isolate) is a per-trial leak".into()
    };
    (
        climbs,
        format!(
            "each of {} fresh process(es) held {} of {} at the end of its trial (median; {}..{}){tail}",
            levels.len(),
            size(median),
            kind.words(),
            size(sorted[0]),
            size(sorted[sorted.len() - 1]),
        ),
    )
}

/// 1 where anything leaks, else 4 where a replay could not decide, else 0.
pub fn exit_code<'a>(outcomes: impl IntoIterator<Item = &'a RepeatOutcome>) -> u8 {
    let verdicts: Vec<RepeatVerdict> = outcomes.into_iter().map(|o| o.verdict).collect();
    if verdicts.contains(&RepeatVerdict::Leaks) {
        crate::exit::EXIT_FINDING
    } else if verdicts.iter().any(|v| *v != RepeatVerdict::Stable) {
        crate::exit::EXIT_NOT_ENOUGH_DATA
    } else {
        crate::exit::EXIT_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(levels: &[f64]) -> Findings {
        let mut findings =
            crate::replay::testing::findings_with(levels.iter().map(|&l| (Default::default(), l)));
        findings.workers.clear();
        findings
    }

    const ANON: Judging = Judging {
        warmup: 2,
        kind: Kind::Anon,
    };

    #[test]
    fn warm_up_never_counts_and_the_figure_is_per_repeat() {
        // 40 MiB of warm-up, then 8 MiB per repeat.
        let mut levels = vec![300.0 * MIB, 340.0 * MIB];
        levels.extend((0..8).map(|i| (341.0 + 8.0 * i as f64) * MIB));
        let outcome = judge(&findings(&levels), ANON);
        assert_eq!(outcome.verdict, RepeatVerdict::Leaks);
        assert!((outcome.bytes() - 8.0 * MIB).abs() < 1.0, "{outcome:?}");
        assert!(outcome.words().starts_with("LEAKS +8.00 MiB/repeat"));
        assert!(outcome
            .words()
            .ends_with("warm-up ended at 300.0 MiB, 340.0 MiB"));
        // A clean process that takes three repeats to settle: with the first two as warm-up
        // its whole interval lies under the floor; fitted, they stretch it to 5 MiB/repeat.
        let mut clean = vec![300.0 * MIB, 330.0 * MIB, 345.0 * MIB];
        clean.extend([346.0 * MIB; 7]);
        let high = |warmup| {
            let outcome = judge(&findings(&clean), Judging { warmup, ..ANON });
            assert_eq!(outcome.verdict, RepeatVerdict::Stable, "{outcome:?}");
            outcome.per_repeat.expect("a fit").high_bytes
        };
        assert!(high(2) < MIB && high(0) > 5.0 * MIB);
    }

    #[test]
    fn growth_below_the_floor_is_stable_and_says_its_figure() {
        // 0.2 MiB a repeat in a 400 MiB process: under both floors (1 MiB, 0.25% = 1 MiB).
        let levels: Vec<f64> = (0..10).map(|i| (400.0 + 0.2 * i as f64) * MIB).collect();
        let outcome = judge(&findings(&levels), ANON);
        assert_eq!(outcome.verdict, RepeatVerdict::Stable, "{outcome:?}");
        assert!(
            outcome.words().starts_with("stable: +0.20 MiB/repeat"),
            "{}",
            outcome.words()
        );
        // 0.5 MiB a repeat in a 50 MiB process: under the absolute floor.
        let small: Vec<f64> = (0..10).map(|i| (50.0 + 0.5 * i as f64) * MIB).collect();
        let outcome = judge(&findings(&small), ANON);
        assert_eq!(outcome.verdict, RepeatVerdict::Stable, "{outcome:?}");
        assert_eq!(outcome.floor_bytes, MIB);
        // The same 2 MiB a repeat is a leak at 400 MiB and below the relative floor at 4 GiB.
        let small: Vec<f64> = (0..10).map(|i| (400.0 + 2.0 * i as f64) * MIB).collect();
        assert_eq!(judge(&findings(&small), ANON).verdict, RepeatVerdict::Leaks);
        let big: Vec<f64> = (0..10).map(|i| (4096.0 + 2.0 * i as f64) * MIB).collect();
        let outcome = judge(&findings(&big), ANON);
        assert_eq!(outcome.verdict, RepeatVerdict::Stable, "{outcome:?}");
        assert!((outcome.floor_bytes - 0.0025 * 4110.0 * MIB).abs() < 0.1 * MIB);
    }

    #[test]
    fn a_figure_whose_interval_reaches_the_floor_is_undecided_and_few_repeats_say_so() {
        // Growth in steps: +4 MiB every other repeat (2 MiB a repeat on average, wide interval).
        let levels: Vec<f64> = (0..8)
            .map(|i| (400.0 + 4.0 * (i / 2) as f64) * MIB)
            .collect();
        let outcome = judge(&findings(&levels), ANON);
        assert_eq!(outcome.verdict, RepeatVerdict::Undecided, "{outcome:?}");
        assert!(outcome.words().contains("repeat more (--repeat"));
        let few = judge(&findings(&levels[..4]), ANON);
        assert_eq!(few.verdict, RepeatVerdict::TooFewRepeats);
        assert!(
            few.words()
                .starts_with("not enough repeats: 2 after 2 warm-up, at least 3 needed"),
            "{}",
            few.words()
        );
    }

    #[test]
    fn the_judged_kind_is_one_a_process_holds_alone() {
        assert_eq!(judged_kind(Some(Kind::Pss)), Kind::Anon);
        assert_eq!(judged_kind(Some(Kind::Rss)), Kind::Anon);
        assert_eq!(judged_kind(None), Kind::Anon);
        assert_eq!(judged_kind(Some(Kind::Gpu)), Kind::Gpu);
        assert_eq!(judged_kind(Some(Kind::Shmem)), Kind::Shmem);
    }
}
