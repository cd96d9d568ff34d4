//! What reading a process costs the process itself. smaps_rollup and smaps walk the target's
//! page tables under its mmap lock, about 10 ms per GiB resident here, and every mmap, munmap
//! or brk the target makes meanwhile waits: a worker that maps and unmaps large temporaries
//! (NumPy arrays above malloc's mmap threshold) stalls for the whole read. The CPU budget
//! (`rollup_budget`) bounds memwarden's own cost, not this.
//!
//! So a process whose read would hold its map longer than `max_stall_ns` (`--max-stall`, 5 ms)
//! is read only where it hurts least: in the gap after one of its worker's trials ends, never as
//! a trial starts or during one (a worker that reports no trials has no gaps, and is read
//! wherever its allowance lets it). And every such process gets a token bucket of hold time,
//! filled at `fraction` (`--max-hold`, 0.5%) of its wall time: a read (PSS, and the mappings
//! with it at a trial end) happens only when the bucket holds what it is expected to cost.
//! Cheaper processes are left to the CPU budget: each of their reads stalls the target less than
//! the threshold, and all of them together use at most `--rollup-cpu` of a core. Pure: time is
//! an argument.

/// What reads may cost each target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldLimits {
    /// A read expected to hold a process's memory map longer than this is placed in trial gaps.
    pub max_stall_ns: u64,
    /// The share of a process's wall time that memwarden's reads may hold its memory map.
    pub fraction: f64,
}

impl Default for HoldLimits {
    fn default() -> Self {
        Self {
            max_stall_ns: 5_000_000,
            fraction: 0.005,
        }
    }
}

impl HoldLimits {
    /// Whether a read of this expected hold is placed in trial gaps, within an allowance.
    pub fn is_costly(&self, hold_ns: u64) -> bool {
        hold_ns >= self.max_stall_ns
    }

    /// How often reads of this cost can happen at most, on average.
    pub fn period_ns(&self, hold_ns: u64) -> u64 {
        (hold_ns as f64 / self.fraction) as u64
    }
}

/// Before a process's first read, its cost is guessed from its resident size: 10 ms per GiB,
/// as measured on this machine's slowest runs (a 4 GiB worker's rollup took 38-47 ms).
pub fn estimated_hold_ns(rss_bytes: u64) -> u64 {
    (rss_bytes as f64 * 10e6 / (1u64 << 30) as f64) as u64
}

/// One process's allowance of hold time.
#[derive(Debug, Clone, Default)]
pub struct HoldBudget {
    tokens_ns: f64,
    last_ns: Option<u64>,
}

impl HoldBudget {
    /// Whether a read expected to hold the map for `hold_ns` fits now, refilled at `fraction`
    /// of the time since the last call and holding at most that read or 10 s worth. A new
    /// bucket starts full, so a process's first trial end is read.
    pub fn fits(&mut self, now_ns: u64, hold_ns: u64, fraction: f64) -> bool {
        let cap = (hold_ns as f64).max(fraction * 10e9);
        self.tokens_ns = match self.last_ns {
            None => cap,
            Some(last) => (self.tokens_ns + now_ns.saturating_sub(last) as f64 * fraction).min(cap),
        };
        self.last_ns = Some(now_ns);
        self.tokens_ns >= hold_ns as f64
    }

    /// Charges what a read held (measured).
    pub fn charge(&mut self, held_ns: u64) {
        self.tokens_ns -= held_ns as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn reads_of_a_big_process_stay_within_its_share_of_the_time() {
        // A 4 GiB worker (40 ms a read, 80 ms with the mappings) with a trial end every 1.2 s,
        // for an hour.
        let limits = HoldLimits::default();
        let mut budget = HoldBudget::default();
        let (mut reads, mut held) = (0u64, 0u64);
        let mut t = 0;
        while t < 3600 * 1000 * MS {
            if budget.fits(t, 80 * MS, limits.fraction) {
                budget.charge(80 * MS);
                reads += 1;
                held += 80 * MS;
            }
            t += 1200 * MS;
        }
        let share = held as f64 / 3600e9;
        assert!(share <= limits.fraction * 1.01, "held {share}");
        assert!(
            share >= limits.fraction * 0.8,
            "allowance left unused: {share}"
        );
        // 16 s between reads on average: about every 14th trial end.
        assert!((200..=240).contains(&reads), "{reads}");
    }

    #[test]
    fn the_first_read_comes_at_once_and_then_the_bucket_refills() {
        let limits = HoldLimits::default();
        let mut budget = HoldBudget::default();
        let mut fits = |t| budget.fits(t, 40 * MS, limits.fraction);
        assert!(fits(0), "a new process is read at its first trial end");
        budget.charge(40 * MS);
        let mut fits = |t| budget.fits(t, 40 * MS, limits.fraction);
        assert!(!fits(1000 * MS), "5 ms refilled in a second");
        assert!(fits(9000 * MS), "45 ms refilled in nine seconds");
        assert_eq!(limits.period_ns(40 * MS), 8000 * MS);
        assert!(limits.is_costly(5 * MS) && !limits.is_costly(4 * MS));
        assert_eq!(estimated_hold_ns(4 << 30), 40 * MS);
    }
}
