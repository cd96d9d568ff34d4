//! Per-trial memory levels of one series (a worker's whole tree, or one of its processes):
//! the baseline before the trial, the peak during it, and what it retained. Samples stream in
//! time order through a `SeriesWalker`, so a 12-hour recording never has to sit in memory.
//!
//! "Retained" is the settled level in the later half of the gap before the next trial (the
//! median of its last samples), or the level just after the trial's end when there is no gap.
//! Never the last samples before an exit: a process tearing down its memory is not a trial's
//! doing.

use super::kind::{Values, KINDS};
use crate::recording::Trial;
use std::collections::VecDeque;

/// The times that decide which samples count for which level of one trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrialWindow {
    pub start_ns: u64,
    /// `None` while the trial was still running when the recording ended.
    pub end_ns: Option<u64>,
    pub settle_from_ns: u64,
    pub settle_to_ns: u64,
}

/// Windows for one worker's trials, in the order given (by start time). Trials without a start
/// get none and are left out. `exits_ns` are the times the worker's main process exited, in
/// order: a trial's settling window ends two intervals (of teardown) before the first exit after
/// it, so a restarted worker's next process, starting up, is never taken for what the trial
/// retained.
pub fn windows(trials: &[&Trial], exits_ns: &[u64], interval_ns: u64) -> Vec<Option<TrialWindow>> {
    let gaps: Vec<u64> = trials
        .windows(2)
        .filter_map(|pair| Some(pair[1].start_ns?.saturating_sub(pair[0].end_ns?)))
        .collect();
    let typical_gap = super::stats::median(&gaps.iter().map(|g| *g as f64).collect::<Vec<_>>());
    let typical_gap = if typical_gap.is_finite() {
        typical_gap as u64
    } else {
        0
    };
    trials
        .iter()
        .enumerate()
        .map(|(i, trial)| {
            let start_ns = trial.start_ns?;
            let Some(end_ns) = trial.end_ns else {
                return Some(TrialWindow {
                    start_ns,
                    end_ns: None,
                    settle_from_ns: u64::MAX,
                    settle_to_ns: u64::MAX,
                });
            };
            let next_start = trials.get(i + 1).and_then(|t| t.start_ns);
            let stop_ns = exits_ns
                .iter()
                .find(|&&exit| exit >= end_ns)
                .map_or(u64::MAX, |exit| exit.saturating_sub(2 * interval_ns));
            let settle_to_ns = match next_start {
                Some(next) => next,
                None => end_ns + typical_gap.max(3 * interval_ns),
            }
            .min(stop_ns)
            .max(end_ns);
            Some(TrialWindow {
                start_ns,
                end_ns: Some(end_ns),
                settle_from_ns: end_ns + (settle_to_ns - end_ns) / 2,
                settle_to_ns,
            })
        })
        .collect()
}

/// The three levels of one trial, per kind (bytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Levels {
    pub baseline: Values,
    pub peak: Values,
    pub retained: Values,
    /// The retained levels come from the gap's settled samples (before the next trial's
    /// start); `false`: from the first sample after the end, which may hold the next trial's
    /// memory (see `boundary`).
    pub settled: bool,
}

/// Settled levels are the median of at most this many of the gap's last samples.
const SETTLE_SAMPLES: usize = 16;

#[derive(Debug, Default)]
struct Accumulator {
    seen: bool,
    baseline: Values,
    peak: Values,
    first_after_end: Option<Values>,
    settle: VecDeque<Values>,
}

/// Walks one series' samples (in time order) against its worker's trial windows.
#[derive(Debug)]
pub struct SeriesWalker {
    windows: Vec<Option<TrialWindow>>,
    /// Windows whose start lies before the last sample; the current one is `started - 1`.
    started: usize,
    last: Option<Values>,
    accumulators: Vec<Accumulator>,
}

impl SeriesWalker {
    pub fn new(windows: Vec<Option<TrialWindow>>) -> Self {
        let accumulators = windows.iter().map(|_| Accumulator::default()).collect();
        Self {
            windows,
            started: 0,
            last: None,
            accumulators,
        }
    }

    pub fn push(&mut self, t_ns: u64, values: Values) {
        // With no gap (Optuna), the first sample after a trial's end already belongs to the
        // next trial, and is also the ended trial's only "after" level.
        if let Some(current) = self.started.checked_sub(1) {
            let ended = self.windows[current]
                .and_then(|w| w.end_ns)
                .is_some_and(|end| t_ns > end);
            if ended {
                self.accumulators[current]
                    .first_after_end
                    .get_or_insert(values);
            }
        }
        while self.started < self.windows.len() {
            match self.windows[self.started] {
                // Born after this trial ended: the trial is not this series' business.
                Some(w) if self.last.is_none() && w.end_ns.is_some_and(|end| end < t_ns) => {}
                Some(w) if w.start_ns < t_ns => {
                    let acc = &mut self.accumulators[self.started];
                    // A process born during the trial has nothing before it: its baseline is 0.
                    acc.baseline = self.last.unwrap_or(values.map(|v| v.map(|_| 0.0)));
                    acc.seen = true;
                }
                Some(_) => break,
                None => {}
            }
            self.started += 1;
        }
        self.last = Some(values);
        let Some(current) = self.started.checked_sub(1) else {
            return;
        };
        let Some(window) = self.windows[current] else {
            return;
        };
        let acc = &mut self.accumulators[current];
        match window.end_ns {
            Some(end) if t_ns > end => {
                if acc.first_after_end.is_none() {
                    acc.first_after_end = Some(values);
                }
                if (window.settle_from_ns..window.settle_to_ns).contains(&t_ns) {
                    if acc.settle.len() == SETTLE_SAMPLES {
                        acc.settle.pop_front();
                    }
                    acc.settle.push_back(values);
                }
            }
            _ => {
                for (peak, value) in acc.peak.iter_mut().zip(values) {
                    *peak = match (*peak, value) {
                        (Some(p), Some(v)) => Some(p.max(v)),
                        (p, v) => p.or(v),
                    };
                }
            }
        }
    }

    /// Levels per window; `None` for windows this series never saw (it was not alive yet).
    pub fn finish(self) -> Vec<Option<Levels>> {
        self.accumulators
            .into_iter()
            .map(|acc| {
                acc.seen.then(|| {
                    let mut retained: Values = Default::default();
                    for (k, slot) in retained.iter_mut().enumerate().take(KINDS.len()) {
                        let settled: Vec<f64> = acc.settle.iter().filter_map(|v| v[k]).collect();
                        *slot = if settled.is_empty() {
                            acc.first_after_end.and_then(|v| v[k])
                        } else {
                            Some(super::stats::median(&settled))
                        };
                    }
                    Levels {
                        baseline: acc.baseline,
                        peak: acc.peak,
                        retained,
                        settled: !acc.settle.is_empty(),
                    }
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(start: u64, end: Option<u64>) -> Trial {
        Trial {
            worker: 0,
            trial: start.to_string(),
            start_ns: Some(start),
            end_ns: end,
            state: "complete".into(),
            value: None,
            params: Default::default(),
            end_memory: None,
        }
    }

    fn v(x: f64) -> Values {
        let mut values: Values = Default::default();
        values[0] = Some(x);
        values
    }

    #[test]
    fn a_restart_ends_the_settling_window_before_the_next_process_starts() {
        // Trial 0 ends at 200; its process exits at 260 and a new one starts trial 1 at 300.
        let trials = [trial(100, Some(200)), trial(300, Some(400))];
        let refs: Vec<&Trial> = trials.iter().collect();
        let windows = windows(&refs, &[260, 500], 10);
        assert_eq!(
            windows[0].map(|w| (w.settle_from_ns, w.settle_to_ns)),
            Some((220, 240)),
            "settled before the exit's teardown, not in the next process's start-up"
        );
        assert_eq!(windows[1].map(|w| w.settle_to_ns), Some(480));
    }

    #[test]
    fn baseline_peak_and_settled_retained() {
        // Trial 0: 100..200, gap to 300; trial 1: 300..400 and then the process exits at 500.
        let trials = [trial(100, Some(200)), trial(300, Some(400))];
        let refs: Vec<&Trial> = trials.iter().collect();
        let windows = windows(&refs, &[500], 10);
        assert_eq!(
            windows[0].map(|w| (w.settle_from_ns, w.settle_to_ns)),
            Some((250, 300))
        );
        assert_eq!(windows[1].map(|w| w.settle_to_ns), Some(480));
        let mut walker = SeriesWalker::new(windows);
        for t in (0..500).step_by(10) {
            let level = match t {
                0..=100 => 10.0,
                101..=200 => 90.0, // a spike during trial 0
                201..=240 => 30.0, // being freed
                241..=300 => 20.0, // settled: 10 retained
                301..=400 => 95.0, // trial 1
                401..=470 => 30.0, // settled: 20 retained
                _ => 0.0,          // teardown, ignored
            };
            walker.push(t, v(level));
        }
        let levels = walker.finish();
        let first = levels[0].as_ref().expect("levels");
        assert_eq!(
            (first.baseline[0], first.peak[0], first.retained[0]),
            (Some(10.0), Some(90.0), Some(20.0))
        );
        let second = levels[1].as_ref().expect("levels");
        assert_eq!(
            (second.baseline[0], second.peak[0], second.retained[0]),
            (Some(20.0), Some(95.0), Some(30.0))
        );
    }

    #[test]
    fn no_gap_uses_the_level_after_the_end_and_running_trials_retain_nothing() {
        // Optuna-style: each trial starts where the last ended.
        let trials = [trial(0, Some(100)), trial(100, Some(200)), trial(200, None)];
        let refs: Vec<&Trial> = trials.iter().collect();
        let mut walker = SeriesWalker::new(windows(&refs, &[1020], 10));
        for t in (5..300).step_by(10) {
            walker.push(t, v(t as f64));
        }
        let levels = walker.finish();
        assert_eq!(levels[0].as_ref().and_then(|l| l.retained[0]), Some(105.0));
        assert_eq!(levels[2].as_ref().map(|l| l.retained[0]), Some(None));
        assert_eq!(levels[2].as_ref().and_then(|l| l.peak[0]), Some(295.0));
    }

    #[test]
    fn a_process_born_mid_run_sees_only_later_trials() {
        let trials = [trial(100, Some(200)), trial(300, Some(400))];
        let refs: Vec<&Trial> = trials.iter().collect();
        let mut walker = SeriesWalker::new(windows(&refs, &[1020], 10));
        for t in (310..500).step_by(10) {
            walker.push(t, v(5.0));
        }
        let levels = walker.finish();
        assert!(levels[0].is_none());
        assert_eq!(levels[1].as_ref().and_then(|l| l.baseline[0]), Some(0.0));
    }
}
