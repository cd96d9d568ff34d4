//! How long a budgeted reading still stands for its process. PSS and USS come from smaps_rollup
//! only as the CPU budget allows (and GPU memory from a driver that may stall), so between reads
//! the last value is carried forward. A value that has not been refreshed for much longer than
//! the process's own read cadence no longer describes it: its reads are failing (as they did
//! after an exec, issue 12) or it starved. It must then give way to a number measured now (RSS,
//! anonymous memory) instead of standing in for the process without bound.
//!
//! One rule for the sampler (policy and live view) and for analysis (the recording keeps no read
//! costs, so the rule is stated on what both can see, the reads themselves): a value read at
//! `last` is fresh at `now` while
//!
//! `now − last ≤ max(20 intervals, 2 s, 4 × the longest gap between two reads of this process)`.
//!
//! The budget guarantees every process a read each `cost × n / fraction` (sampler/rollup_budget.rs), and
//! that period grows with the process, smoothly: four of the longest gaps seen is "a few budget
//! periods" without knowing the costs. The sampler, which knows them, also allows four of the
//! period it expects (`expected_gap_ns`): a big process adopted by `attach` has no gap seen yet
//! before its second read. Pure: time is an argument.

use std::time::Duration;

/// Gaps are multiplied by this before a carried value is called stale.
const PERIODS: u64 = 4;
/// Never stale sooner than this many sampling intervals ...
const FLOOR_INTERVALS: u64 = 20;
/// ... or this long.
const FLOOR: Duration = Duration::from_secs(2);

/// The reads of one value of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCadence {
    last_read_ns: Option<u64>,
    longest_gap_ns: u64,
}

impl ReadCadence {
    /// A read happened at `t_ns`.
    pub fn read(&mut self, t_ns: u64) {
        if let Some(last) = self.last_read_ns {
            self.longest_gap_ns = self.longest_gap_ns.max(t_ns.saturating_sub(last));
        }
        self.last_read_ns = Some(t_ns);
    }

    pub fn last_read_ns(&self) -> Option<u64> {
        self.last_read_ns
    }

    /// How long a read stays fresh; `expected_gap_ns` is the read period the caller expects
    /// (0 where it cannot know).
    pub fn limit_ns(&self, interval_ns: u64, expected_gap_ns: u64) -> u64 {
        let floor = (FLOOR_INTERVALS * interval_ns).max(FLOOR.as_nanos() as u64);
        floor.max(PERIODS.saturating_mul(self.longest_gap_ns.max(expected_gap_ns)))
    }

    /// Whether the last read still stands at `now_ns`; never, before the first read.
    pub fn is_fresh(&self, now_ns: u64, interval_ns: u64, expected_gap_ns: u64) -> bool {
        self.is_fresh_within(now_ns, self.limit_ns(interval_ns, expected_gap_ns))
    }

    /// The same, for a limit the caller already computed with [`ReadCadence::limit_ns`].
    pub fn is_fresh_within(&self, now_ns: u64, limit_ns: u64) -> bool {
        self.last_read_ns
            .is_some_and(|last| now_ns.saturating_sub(last) <= limit_ns)
    }
}

/// How well one worker's PSS was known over a run: on how many ticks it was read (every process
/// of its tree read on that tick), and on how many it was fresh (read, or carried within the
/// limit above, for every process). The rest of the ticks had some process stand in by RSS or
/// not at all: a gap here is what issue 12's exec bug looked like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PssHealth {
    pub ticks: u64,
    pub read_ticks: u64,
    pub fresh_ticks: u64,
}

impl PssHealth {
    pub fn count(&mut self, read: bool, fresh: bool) {
        self.ticks += 1;
        self.read_ticks += u64::from(read);
        self.fresh_ticks += u64::from(fresh);
    }

    /// Ticks without a fresh PSS.
    pub fn stale_ticks(&self) -> u64 {
        self.ticks - self.fresh_ticks
    }

    /// `fresh PSS on 171 of 173 ticks (98.8%; read on 160), stale on 2`
    pub fn describe(&self) -> String {
        let share = if self.ticks == 0 {
            0.0
        } else {
            100.0 * self.fresh_ticks as f64 / self.ticks as f64
        };
        format!(
            "fresh PSS on {} of {} ticks ({share:.1}%; read on {}), stale on {}",
            self.fresh_ticks,
            self.ticks,
            self.read_ticks,
            self.stale_ticks()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn nothing_read_is_never_fresh() {
        assert!(!ReadCadence::default().is_fresh(0, 100 * MS, 0));
    }

    #[test]
    fn a_read_every_tick_goes_stale_after_the_floor() {
        let mut cadence = ReadCadence::default();
        for tick in 0..10 {
            cadence.read(tick * 100 * MS);
        }
        // Last read at 900 ms; the floor is 20 intervals = 2 s.
        assert!(cadence.is_fresh(2_900 * MS, 100 * MS, 0));
        assert!(!cadence.is_fresh(2_901 * MS, 100 * MS, 0));
        // A 1 s interval floors at 20 s.
        assert_eq!(cadence.limit_ns(1_000 * MS, 0), 20_000 * MS);
    }

    #[test]
    fn a_slow_cadence_stays_fresh_for_four_of_its_longest_gaps() {
        // A big process read every 19 s, once after only 1 s (a forced read at a boundary).
        let mut cadence = ReadCadence::default();
        for t in [0, 19_000, 20_000, 39_000] {
            cadence.read(t * MS);
        }
        assert_eq!(cadence.limit_ns(100 * MS, 0), 76_000 * MS);
        assert!(cadence.is_fresh(39_000 * MS + 76_000 * MS, 100 * MS, 0));
        assert!(!cadence.is_fresh(39_000 * MS + 76_001 * MS, 100 * MS, 0));
    }

    #[test]
    fn an_expected_period_covers_the_wait_for_a_second_read() {
        // One read of a big process just adopted; the budget will read it again in 30 s.
        let mut cadence = ReadCadence::default();
        cadence.read(0);
        assert!(!cadence.is_fresh(5_000 * MS, 100 * MS, 0));
        assert!(cadence.is_fresh(5_000 * MS, 100 * MS, 30_000 * MS));
        assert!(!cadence.is_fresh(120_001 * MS, 100 * MS, 30_000 * MS));
    }
}
