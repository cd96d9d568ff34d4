//! Per-trial memory levels of one series (a worker's whole tree, or one of its processes):
//! the baseline before the trial, the peak during it, and what it retained. Samples stream in
//! time order through a `SeriesWalker`, so a 12-hour recording never has to sit in memory.
//!
//! "Retained" is the settled level in the later half of the gap before the next trial (the
//! median of its last samples), or the level just after the trial's end when there is no gap.
//! Never the last samples before an exit: a process tearing down its memory is not a trial's
//! doing.

use crate::analysis::kind::{Kind, Values, KINDS};
use crate::analysis::measures::LevelTriple;
use crate::recording::Trial;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// The times that decide which samples count for which level of one trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrialWindow {
    pub start_ns: u64,
    /// `u64::MAX` while the trial was still running when the recording ended: a window is held
    /// per trial of the run during the walk, so it keeps no `Option` and nothing it can derive.
    end: u64,
    pub settle_to_ns: u64,
}

impl TrialWindow {
    /// `None` while the trial was still running when the recording ended.
    pub fn end_ns(&self) -> Option<u64> {
        (self.end != u64::MAX).then_some(self.end)
    }

    /// The settled samples are the second half of the gap after the end.
    pub fn settle_from_ns(&self) -> u64 {
        match self.end_ns() {
            Some(end) => end + (self.settle_to_ns - end) / 2,
            None => u64::MAX,
        }
    }
}

/// A trial's start and end (ns since the start): what its window is made from, whichever
/// form of the trial holds them.
pub trait Span {
    fn start_ns(&self) -> Option<u64>;
    fn end_ns(&self) -> Option<u64>;
}

impl Span for crate::recording::TrialEvents<'_> {
    fn start_ns(&self) -> Option<u64> {
        self.start_ns()
    }
    fn end_ns(&self) -> Option<u64> {
        self.end_ns()
    }
}

impl Span for Trial {
    fn start_ns(&self) -> Option<u64> {
        self.start_ns
    }
    fn end_ns(&self) -> Option<u64> {
        self.end_ns
    }
}

/// Windows for one worker's trials, in the order given (by start time). Trials without a start
/// get none and are left out. `exits_ns` are the times the worker's main process exited, in
/// order: a trial's settling window ends two intervals (of teardown) before the first exit after
/// it, so a restarted worker's next process, starting up, is never taken for what the trial
/// retained.
pub fn windows<T: Span>(
    trials: &[&T],
    exits_ns: &[u64],
    interval_ns: u64,
) -> Arc<[Option<TrialWindow>]> {
    let gaps: Vec<u64> = trials
        .windows(2)
        .filter_map(|pair| Some(pair[1].start_ns()?.saturating_sub(pair[0].end_ns()?)))
        .collect();
    let typical_gap = crate::stats::median(&gaps.iter().map(|g| *g as f64).collect::<Vec<_>>());
    let typical_gap = if typical_gap.is_finite() {
        typical_gap as u64
    } else {
        0
    };
    trials
        .iter()
        .enumerate()
        .map(|(i, trial)| {
            let start_ns = trial.start_ns()?;
            let Some(end_ns) = trial.end_ns() else {
                return Some(TrialWindow {
                    start_ns,
                    end: u64::MAX,
                    settle_to_ns: u64::MAX,
                });
            };
            let next_start = trials.get(i + 1).and_then(|t| t.start_ns());
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
                end: end_ns,
                settle_to_ns,
            })
        })
        .collect()
}

/// One value per kind, NaN where there is none: half the size of [`Values`], for what analysis
/// keeps per trial and series (three per series: a million trials of one process hold six).
/// Levels are sums of byte counts and medians of them, never NaN themselves.
#[derive(Debug, Clone, Copy)]
pub struct Packed([f64; KINDS.len()]);

impl Packed {
    pub fn get(&self, k: usize) -> Option<f64> {
        let v = self.0[k];
        (!v.is_nan()).then_some(v)
    }

    pub fn set(&mut self, k: usize, value: Option<f64>) {
        self.0[k] = value.unwrap_or(f64::NAN);
    }

    pub fn values(&self) -> Values {
        std::array::from_fn(|k| self.get(k))
    }
}

impl Default for Packed {
    fn default() -> Self {
        Self([f64::NAN; KINDS.len()])
    }
}

impl From<Values> for Packed {
    fn from(values: Values) -> Self {
        Self(values.map(|v| v.unwrap_or(f64::NAN)))
    }
}

impl PartialEq for Packed {
    fn eq(&self, other: &Self) -> bool {
        self.values() == other.values()
    }
}

/// The three levels of one trial, per kind (bytes). Findings' trials keep them as they are
/// (a million trials are held at once), reading and writing as a map from kind to
/// [`LevelTriple`] holding the kinds with any level.
#[derive(Debug, Clone, Default)]
pub struct Levels {
    pub baseline: Packed,
    pub peak: Packed,
    pub retained: Packed,
    /// The retained levels come from the gap's settled samples (before the next trial's
    /// start); `false`: from the first sample after the end, which may hold the next trial's
    /// memory (see `boundary`).
    pub settled: bool,
}

impl Levels {
    pub fn get(&self, kind: &Kind) -> Option<LevelTriple> {
        let k = *kind as usize;
        let triple = LevelTriple {
            baseline: self.baseline.get(k),
            peak: self.peak.get(k),
            retained: self.retained.get(k),
        };
        (triple.baseline.is_some() || triple.peak.is_some() || triple.retained.is_some())
            .then_some(triple)
    }

    pub fn insert(&mut self, kind: Kind, triple: LevelTriple) {
        let k = kind as usize;
        self.baseline.set(k, triple.baseline);
        self.peak.set(k, triple.peak);
        self.retained.set(k, triple.retained);
    }

    /// The kinds with any level, in kind order.
    pub fn iter(&self) -> impl Iterator<Item = (Kind, LevelTriple)> + '_ {
        KINDS.iter().filter_map(|k| Some((*k, self.get(k)?)))
    }
}

/// The levels; how they were settled is the loader's business, not the reader's.
impl PartialEq for Levels {
    fn eq(&self, other: &Self) -> bool {
        (self.baseline, self.peak, self.retained) == (other.baseline, other.peak, other.retained)
    }
}

impl FromIterator<(Kind, LevelTriple)> for Levels {
    fn from_iter<I: IntoIterator<Item = (Kind, LevelTriple)>>(items: I) -> Self {
        let mut levels = Self::default();
        for (kind, triple) in items {
            levels.insert(kind, triple);
        }
        levels
    }
}

impl Serialize for Levels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Levels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = crate::few::Few::<Kind, LevelTriple>::deserialize(deserializer)?;
        Ok(map.iter().map(|(k, t)| (*k, *t)).collect())
    }
}

/// Settled levels are the median of at most this many of the gap's last samples.
const SETTLE_SAMPLES: usize = 16;

/// What one window has seen so far.
#[derive(Debug)]
struct Accumulator {
    /// The window's index.
    index: usize,
    baseline: Values,
    peak: Values,
    first_after_end: Option<Values>,
    settle: VecDeque<Values>,
}

impl Accumulator {
    fn levels(self) -> Levels {
        let mut retained: Values = Default::default();
        for (k, slot) in retained.iter_mut().enumerate() {
            let settled: Vec<f64> = self.settle.iter().filter_map(|v| v[k]).collect();
            *slot = if settled.is_empty() {
                self.first_after_end.and_then(|v| v[k])
            } else {
                Some(crate::stats::median(&settled))
            };
        }
        Levels {
            baseline: self.baseline.into(),
            peak: self.peak.into(),
            retained: retained.into(),
            settled: !self.settle.is_empty(),
        }
    }
}

/// Walks one series' samples (in time order) against its worker's trial windows. Only the
/// window being walked has an accumulator: a series costs per trial it was alive for, not per
/// trial of the run (a short-lived process among a million trials holds only its own).
#[derive(Debug)]
pub struct SeriesWalker {
    /// The worker's windows, shared by its tree and every process of it.
    windows: Arc<[Option<TrialWindow>]>,
    /// Windows whose start lies before the last sample; the current one is `started - 1`.
    started: usize,
    last: Option<Values>,
    /// The last window this series saw begin; it gets samples while it is `started - 1`.
    current: Option<Accumulator>,
    /// Levels of the windows this series saw, in window order.
    done: Vec<(usize, Levels)>,
}

impl SeriesWalker {
    pub fn new(windows: Arc<[Option<TrialWindow>]>) -> Self {
        Self {
            windows,
            started: 0,
            last: None,
            current: None,
            done: Vec::new(),
        }
    }

    /// The accumulator of window `started - 1`, where this series saw it begin.
    fn walking(&mut self) -> Option<&mut Accumulator> {
        let index = self.started.checked_sub(1)?;
        self.current.as_mut().filter(|acc| acc.index == index)
    }

    pub fn push(&mut self, t_ns: u64, values: Values) {
        // With no gap (Optuna), the first sample after a trial's end already belongs to the
        // next trial, and is also the ended trial's only "after" level.
        if let Some(current) = self.started.checked_sub(1) {
            let ended = self.windows[current]
                .and_then(|w| w.end_ns())
                .is_some_and(|end| t_ns > end);
            if ended {
                if let Some(acc) = self.walking() {
                    acc.first_after_end.get_or_insert(values);
                }
            }
        }
        while self.started < self.windows.len() {
            match self.windows[self.started] {
                // Born after this trial ended: the trial is not this series' business.
                Some(w) if self.last.is_none() && w.end_ns().is_some_and(|end| end < t_ns) => {}
                Some(w) if w.start_ns < t_ns => {
                    // A process born during the trial has nothing before it: its baseline is 0.
                    let baseline = self.last.unwrap_or(values.map(|v| v.map(|_| 0.0)));
                    let begun = Accumulator {
                        index: self.started,
                        baseline,
                        peak: Default::default(),
                        first_after_end: None,
                        settle: VecDeque::new(),
                    };
                    if let Some(ended) = self.current.replace(begun) {
                        self.done.push((ended.index, ended.levels()));
                    }
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
        let Some(acc) = self.walking() else { return };
        match window.end_ns() {
            Some(end) if t_ns > end => {
                if acc.first_after_end.is_none() {
                    acc.first_after_end = Some(values);
                }
                if (window.settle_from_ns()..window.settle_to_ns).contains(&t_ns) {
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

    /// Levels of the windows that ended since last asked, by window index, in order: the
    /// caller moves them where they are kept, so none sits here for the whole walk.
    pub fn ended(&mut self) -> std::vec::Drain<'_, (usize, Levels)> {
        self.done.drain(..)
    }

    /// Levels of the windows this series saw and were not yet taken, by window index, in
    /// order (a window it never saw, not being alive yet, has none).
    pub fn finish(mut self) -> Vec<(usize, Levels)> {
        if let Some(last) = self.current.take() {
            self.done.push((last.index, last.levels()));
        }
        self.done
    }
}

#[cfg(test)]
mod tests;
