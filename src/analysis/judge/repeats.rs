//! One unit of work done again and again in one process (a replayed trial, a test the pytest
//! plugin repeats): the levels it retained at each repeat's end, fitted after a warm-up and
//! judged against a floor. Pure: levels in, a verdict with its figure out. `memwarden replay`
//! and `memwarden check`'s per-test gate both judge this way.

use crate::analysis::measures::Rate;
use crate::stats::theil_sen;
use serde::{Deserialize, Serialize};

/// Repeats that are shown but not fitted. A fresh Python process grows over its first repeats
/// whatever the work: imports finish, lazy state is built on first use (PyTorch's thread
/// pools and kernels, an optimizer's state, Optuna's sampler caches) and the allocator takes
/// its pools. Measured on the tests' PyTorch + Optuna study (README, "Trial replay"): the
/// first repeat ends tens of MiB above the start, the second a few hundred KiB above the
/// first, the third on.
pub const DEFAULT_WARMUP: u32 = 2;
/// Fewer fitted repeats than this: no interval worth a verdict.
pub const MIN_FITTED: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepeatVerdict {
    /// The interval's lower end is above the floor.
    Leaks,
    /// The per-repeat figure is at or below the floor.
    Stable,
    /// The figure is above the floor but its interval reaches below it: more repeats decide.
    Undecided,
    /// Fewer than [`MIN_FITTED`] repeats after the warm-up.
    TooFewRepeats,
}

/// Repeats judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepeatFit {
    pub verdict: RepeatVerdict,
    /// Growth per repeat after the warm-up (Theil–Sen, 95% interval).
    pub per_repeat: Option<Rate>,
    /// How many of the levels were warm-up (shown, not fitted).
    pub warmup: usize,
}

/// Judges `levels` (bytes retained at each repeat's end, in order): the first `warmup` are
/// not fitted; memory before the first repeat ended never counts.
pub fn fit(levels: &[f64], warmup: usize, floor_bytes: f64) -> RepeatFit {
    let warmup = warmup.min(levels.len());
    let fitted = &levels[warmup..];
    let x: Vec<f64> = (0..fitted.len()).map(|i| i as f64).collect();
    let per_repeat = (fitted.len() >= MIN_FITTED)
        .then(|| theil_sen(&x, fitted))
        .flatten()
        .map(|t| Rate::from(&t));
    let verdict = match per_repeat {
        None => RepeatVerdict::TooFewRepeats,
        Some(r) if r.low_bytes > floor_bytes => RepeatVerdict::Leaks,
        Some(r) if r.bytes <= floor_bytes => RepeatVerdict::Stable,
        Some(_) => RepeatVerdict::Undecided,
    };
    RepeatFit {
        verdict,
        per_repeat,
        warmup,
    }
}

/// The `--repeat` (or `--memwarden-repeat`) that leaves enough repeats after the warm-up.
pub fn enough_repeats(warmup: usize) -> usize {
    warmup + MIN_FITTED
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1048576.0;

    #[test]
    fn warm_up_is_not_fitted_and_the_floor_decides() {
        // A 60 MiB first repeat (imports) then 2 MiB per repeat.
        let levels = [100.0, 160.0, 162.0, 164.0, 166.0, 168.0].map(|m| m * MIB);
        let f = fit(&levels, 2, MIB);
        assert_eq!(f.verdict, RepeatVerdict::Leaks);
        assert!((f.per_repeat.expect("fitted").bytes - 2.0 * MIB).abs() < 1.0);
        assert_eq!(f.warmup, 2);
        // The same growth under a 4 MiB floor is within it.
        assert_eq!(fit(&levels, 2, 4.0 * MIB).verdict, RepeatVerdict::Stable);
        // Without the warm-up the import's jump would be fitted into the figure.
        let unwarmed = fit(&levels, 0, MIB).per_repeat.expect("fitted");
        assert!(unwarmed.high_bytes > 2.0 * MIB, "{unwarmed:?}");
    }

    #[test]
    fn too_few_and_undecided_are_not_stable() {
        let levels = [1.0, 2.0, 3.0, 4.0].map(|m| m * MIB);
        assert_eq!(fit(&levels, 2, MIB).verdict, RepeatVerdict::TooFewRepeats);
        assert_eq!(enough_repeats(2), 5);
        // Above the floor, but one repeat fell back: its interval reaches below.
        let noisy = [0.0, 0.0, 10.0, 10.5, 13.0, 11.0, 14.0].map(|m| m * MIB);
        let f = fit(&noisy, 2, 0.5 * MIB);
        assert_eq!(f.verdict, RepeatVerdict::Undecided, "{f:?}");
    }
}
