//! How often smaps_rollup may be read. Its cost grows with resident size (the kernel walks page
//! tables, ~10 ms per GiB, holding the target's mmap lock), so a fixed rate would be either
//! useless for small workers or ruinous for big ones. Instead all rollup reads together may use
//! a fraction of one core, measured from what the reads actually cost: a token bucket filled at
//! `fraction` ns per ns of wall time, holding at most one second's worth (or one read of the
//! largest process, if that is more).
//!
//! Who gets the tokens: stalest first. Each process is guaranteed an equal share (a process
//! that has waited longer than `cost × n / fraction` is *overdue*, and the bucket saves up for
//! it); whatever a cheap process does not need goes to whoever fits. Pure: time is an argument.

#[derive(Debug, Clone)]
pub struct RollupBudget {
    fraction: f64,
    tokens_ns: f64,
    last_ns: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub last_read_ns: Option<u64>,
    /// The last measured cost of reading it (an estimate of the next).
    pub cost_ns: u64,
    /// At a trial boundary: read whatever the budget says (PSS at least once per trial).
    pub forced: bool,
}

/// A first read of an unknown process is assumed to cost this much.
pub const UNKNOWN_COST_NS: u64 = 100_000;

impl RollupBudget {
    pub fn new(fraction: f64) -> Self {
        let fraction = fraction.clamp(1e-6, 1.0);
        Self {
            fraction,
            tokens_ns: fraction * 1e9,
            last_ns: None,
        }
    }

    /// Picks which candidates to read now (indexes into `candidates`), charging their estimated
    /// costs. Call [`RollupBudget::correct`] with each measured cost afterwards.
    pub fn choose(&mut self, now_ns: u64, candidates: &[Candidate]) -> Vec<usize> {
        let largest = candidates.iter().map(|c| c.cost_ns).max().unwrap_or(0);
        let elapsed = self.last_ns.map_or(0, |last| now_ns.saturating_sub(last));
        self.last_ns = Some(now_ns);
        let cap = (self.fraction * 1e9).max(largest as f64);
        self.tokens_ns = (self.tokens_ns + elapsed as f64 * self.fraction).min(cap);

        let n = candidates.len().max(1) as f64;
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by_key(|&i| candidates[i].last_read_ns.map_or(-1, |t| t as i128));
        let mut chosen = Vec::new();
        let mut saving = false;
        for i in order {
            let c = candidates[i];
            if c.forced || (!saving && self.tokens_ns >= c.cost_ns as f64) {
                self.tokens_ns -= c.cost_ns as f64;
                chosen.push(i);
                continue;
            }
            let waited = c
                .last_read_ns
                .map_or(f64::INFINITY, |t| now_ns.saturating_sub(t) as f64);
            if waited >= c.cost_ns as f64 * n / self.fraction {
                // Overdue: nobody after it gets tokens until it has been read.
                saving = true;
            }
        }
        chosen
    }

    /// How often a process of this cost is read at least, among `processes`: its equal share
    /// (after that long it is overdue, and the bucket saves up for it).
    pub fn guaranteed_period_ns(&self, cost_ns: u64, processes: usize) -> u64 {
        (cost_ns as f64 * processes.max(1) as f64 / self.fraction) as u64
    }

    /// Replaces a charged estimate with the measured cost.
    pub fn correct(&mut self, estimate_ns: u64, actual_ns: u64) {
        self.tokens_ns += estimate_ns as f64 - actual_ns as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates `seconds` of 100 ms ticks; returns reads per process and the total cost.
    fn simulate(costs_ns: &[u64], seconds: u64, force_every_ticks: Option<u64>) -> (Vec<u64>, u64) {
        let mut budget = RollupBudget::new(0.02);
        let mut last: Vec<Option<u64>> = vec![None; costs_ns.len()];
        let mut reads = vec![0u64; costs_ns.len()];
        let mut spent = 0;
        for tick in 0..seconds * 10 {
            let now = tick * 100_000_000;
            let forced = force_every_ticks.is_some_and(|k| tick % k == 0 && tick > 0);
            let candidates: Vec<Candidate> = costs_ns
                .iter()
                .zip(&last)
                .map(|(&cost_ns, &last_read_ns)| Candidate {
                    last_read_ns,
                    cost_ns,
                    forced,
                })
                .collect();
            for i in budget.choose(now, &candidates) {
                spent += costs_ns[i];
                reads[i] += 1;
                last[i] = Some(now);
            }
        }
        (reads, spent)
    }

    #[test]
    fn small_processes_are_read_every_tick() {
        let (reads, _) = simulate(&[100_000; 4], 60, None);
        assert!(reads.iter().all(|&r| r == 600), "{reads:?}");
    }

    #[test]
    fn big_processes_stay_within_two_percent_of_a_core() {
        // Two 15 GiB workers (~150 ms a read) and two small helpers, for an hour.
        let costs = [150_000_000, 150_000_000, 200_000, 200_000];
        let (reads, spent) = simulate(&costs, 3600, None);
        let allowed = 0.02 * 3600e9 + 0.02e9;
        assert!((spent as f64) <= allowed, "spent {spent} > {allowed}");
        assert!(
            (spent as f64) >= 0.9 * 0.02 * 3600e9,
            "budget left unused: {spent}"
        );
        // The big ones share what the helpers leave (1.6 ms a tick): about every 19 s each.
        assert!(reads[0] >= 180 && reads[1] >= 180, "{reads:?}");
        // The helpers are not starved behind them.
        assert!(reads[2] >= 3000 && reads[3] >= 3000, "{reads:?}");
    }

    #[test]
    fn many_small_processes_do_not_starve_a_big_one() {
        // 32 processes of 1 ms each want 32 ms a tick, far over the 2 ms budget.
        let mut costs = vec![1_000_000; 32];
        costs.push(100_000_000);
        let (reads, spent) = simulate(&costs, 3600, None);
        assert!((spent as f64) <= 0.02 * 3600e9 + 0.1e9, "{spent}");
        // Equal shares: the big one gets at least half its fair 1/33 of the budget.
        let fair_reads = 0.02 * 3600e9 / 33.0 / 100e6;
        assert!(
            reads[32] as f64 >= 0.5 * fair_reads,
            "big read {} times, fair {fair_reads}",
            reads[32]
        );
        assert!(reads[..32].iter().all(|&r| r >= 100), "{reads:?}");
    }

    #[test]
    fn forced_reads_happen_and_the_debt_is_repaid() {
        let (reads, spent) = simulate(&[150_000_000], 600, Some(100)); // a trial every 10 s
        assert!(reads[0] >= 59, "{reads:?}");
        assert!((spent as f64) <= 0.02 * 600e9 + 2.0 * 150e6, "{spent}");
    }
}
