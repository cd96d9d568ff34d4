//! What a run looks like right now, for live progress (soak): shared with the command, written
//! by the harness loop a few times a second at most.

use crate::policy::Counters;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Trial-end levels kept per worker for its trend.
const TREND_POINTS: usize = 32;

#[derive(Debug, Clone, Default)]
pub struct LiveWorker {
    /// The tree's PSS at the last tick (0 while it is down).
    pub pss_bytes: u64,
    /// Some process of the tree counted by RSS at the last tick: its PSS was stale or unread.
    pub pss_stale: bool,
    pub trials: u64,
    pub starts: u64,
    /// (trials done, PSS) at the last trial ends, for a trend per trial.
    pub trial_ends: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Default)]
pub struct LiveStatus {
    pub elapsed_ns: u64,
    pub workers: BTreeMap<u32, LiveWorker>,
    pub brake_on: bool,
    pub counters: Counters,
}

pub type SharedStatus = Arc<Mutex<LiveStatus>>;

impl LiveWorker {
    pub fn trial_ended(&mut self) {
        self.trials += 1;
        self.trial_ends.push((self.trials, self.pss_bytes));
        if self.trial_ends.len() > TREND_POINTS {
            self.trial_ends.remove(0);
        }
    }

    /// Retained growth per trial over the last trial ends (Theil–Sen), in bytes.
    pub fn trend_per_trial(&self) -> Option<f64> {
        let (x, y): (Vec<f64>, Vec<f64>) = self
            .trial_ends
            .iter()
            .map(|&(t, pss)| (t as f64, pss as f64))
            .unzip();
        crate::analysis::stats::theil_sen(&x, &y).map(|trend| trend.slope)
    }
}
