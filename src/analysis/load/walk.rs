//! The second half of loading a recording: each segment's rows, already filled and summed per
//! tree by `load`, folded into per-trial walkers and coarse timelines, with the system's and the
//! GPUs' samples. It runs on a thread of its own while `load` decodes and fills the next
//! segment, so the two halves overlap.

use super::coarse_series::{slot, Timeline};
use super::columns::{effective_memory, option_values, optional_u64_values, u64_values};
use super::fill::Filled;
use super::levels::{Levels, SeriesWalker, TrialWindow};
use super::loaded::{SystemSummary, TrialLevels};
use crate::analysis::kind::{Kind, Values, KINDS};
use crate::frames::prelude::*;
use crate::freshness::PssHealth;
use crate::recording::columns as col;
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Timelines keep at most this many buckets per worker.
const TIMELINE_BUCKETS: usize = 600;
/// Fewer per process: a run may see thousands of short-lived processes.
const PROCESS_TIMELINE_BUCKETS: usize = 150;

/// One segment as the walker takes it.
pub(super) struct Prepared {
    pub devices: DataFrame,
    pub system: DataFrame,
    /// `None` for a segment without process samples.
    pub processes: Option<Rows>,
}

/// One segment's process rows. Times, workers, pids and the kinds every tick measures stay in
/// polars' own buffers (one chunk each; no copy); PSS, USS and GPU memory are as `fill`
/// carried them.
pub(super) struct Rows {
    pub t_ns: UInt64Chunked,
    pub worker: UInt32Chunked,
    pub pid: Int32Chunked,
    /// The kinds read on every tick (anon, file, shmem, swap, RSS).
    pub measured: Vec<(Kind, UInt64Chunked)>,
    pub filled: Filled,
}

/// One kind's column as the walk reads it.
enum KindView<'a> {
    Plain(&'a [u64]),
    Gaps(Cow<'a, [Option<u64>]>),
}

impl KindView<'_> {
    fn get(&self, i: usize) -> Option<u64> {
        match self {
            KindView::Plain(values) => values.get(i).copied(),
            KindView::Gaps(values) => values.get(i).copied().flatten(),
        }
    }
}

/// A column as a slice where polars holds it in one chunk without gaps, else a copy.
fn plain<T: PolarsNumericType>(column: &ChunkedArray<T>) -> Cow<'_, [T::Native]> {
    match column.cont_slice() {
        Ok(values) => Cow::Borrowed(values),
        Err(_) => Cow::Owned(
            option_values(column)
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect(),
        ),
    }
}

/// A worker's tree on one tick, summed as its rows come.
struct TreeTick {
    worker: u32,
    t_ns: u64,
    sums: [u64; KINDS.len()],
    /// Some process of the tree had no value: the kind's sum is left empty.
    missing: [bool; KINDS.len()],
    /// Every process's PSS was read on this tick.
    all_read: bool,
}

pub(super) struct Walk<'a> {
    interval_ns: u64,
    windows: BTreeMap<u32, Arc<[Option<TrialWindow>]>>,
    /// Per worker, the times its processes ended as the OOM killer's victims would, in order.
    end_times: BTreeMap<u32, Vec<u64>>,
    // Hash maps with a fast hash for small integer keys: one lookup per row of millions.
    trees: FxHashMap<u32, (SeriesWalker, Timeline)>,
    series: FxHashMap<(u32, i32), (SeriesWalker, Timeline)>,
    /// The trees of the tick being summed, in the order their first rows came.
    tick: Vec<TreeTick>,
    /// The tree's memory at its last sample before each end, by `(worker, end t_ns)`.
    before_end: BTreeMap<(u32, u64), Values>,
    system: Option<SystemSummary>,
    devices: BTreeMap<u32, Timeline>,
    process_samples: u64,
    pss_health: BTreeMap<u32, PssHealth>,
    first_ns: Option<u64>,
    last_ns: Option<u64>,
    /// Per worker, its trials, given their levels as their windows end.
    levels: BTreeMap<u32, Vec<TrialLevels<'a>>>,
}

/// What a walk leaves: each trial with its levels, and the bounded series over time.
pub(super) struct Walked<'a> {
    pub levels: BTreeMap<u32, Vec<TrialLevels<'a>>>,
    pub timelines: BTreeMap<u32, Timeline>,
    pub process_timelines: BTreeMap<(u32, i32), Timeline>,
    pub before_end: BTreeMap<(u32, u64), Values>,
    pub system: Option<SystemSummary>,
    pub devices: BTreeMap<u32, Timeline>,
    pub process_samples: u64,
    pub pss_health: BTreeMap<u32, PssHealth>,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
}

/// Moves a series' ended windows' levels to their trials: the tree's (`pid` `None`) or a
/// process's.
fn place(
    store: &mut BTreeMap<u32, Vec<TrialLevels>>,
    worker: u32,
    pid: Option<i32>,
    ended: impl ExactSizeIterator<Item = (usize, Levels)>,
) {
    // Called for every sample row: most end no window, and need no lookup.
    if ended.len() == 0 {
        return;
    }
    let Some(trials) = store.get_mut(&worker) else {
        return;
    };
    for (index, levels) in ended {
        let Some(trial) = trials.get_mut(index) else {
            continue;
        };
        match pid {
            None => {
                trial.processes.tree_changes(trial.tree.as_ref(), &levels);
                trial.tree = Some(levels);
            }
            Some(pid) => trial.processes.place(pid, levels, trial.tree.as_ref()),
        }
    }
}

impl<'a> Walk<'a> {
    pub fn new(
        interval_ns: u64,
        windows: BTreeMap<u32, Arc<[Option<TrialWindow>]>>,
        end_times: BTreeMap<u32, Vec<u64>>,
        levels: BTreeMap<u32, Vec<TrialLevels<'a>>>,
    ) -> Self {
        Self {
            levels,
            interval_ns,
            windows,
            end_times,
            trees: FxHashMap::default(),
            series: FxHashMap::default(),
            tick: Vec::new(),
            before_end: BTreeMap::new(),
            system: None,
            devices: BTreeMap::new(),
            process_samples: 0,
            pss_health: BTreeMap::new(),
            first_ns: None,
            last_ns: None,
        }
    }

    pub fn segment(&mut self, prepared: Prepared) -> PolarsResult<()> {
        push_devices(&mut self.devices, &prepared.devices, self.interval_ns)?;
        push_system(&mut self.system, &prepared.system, self.interval_ns)?;
        let Some(rows) = prepared.processes else {
            return Ok(());
        };
        let (t_ns, worker, pid) = (plain(&rows.t_ns), plain(&rows.worker), plain(&rows.pid));
        let views: Vec<KindView> = KINDS
            .iter()
            .map(|&kind| match kind {
                Kind::Pss => KindView::Gaps(Cow::Borrowed(&rows.filled.sparse[0])),
                Kind::Uss => KindView::Gaps(Cow::Borrowed(&rows.filled.sparse[1])),
                Kind::Gpu => KindView::Gaps(Cow::Borrowed(&rows.filled.sparse[2])),
                kind => match rows.measured.iter().find(|(k, _)| *k == kind) {
                    Some((_, column)) => match column.cont_slice() {
                        Ok(values) => KindView::Plain(values),
                        Err(_) => KindView::Gaps(Cow::Owned(option_values(column))),
                    },
                    None => KindView::Gaps(Cow::Owned(Vec::new())),
                },
            })
            .collect();
        self.process_samples += t_ns.len() as u64;
        for i in 0..t_ns.len() {
            let (t, worker, pid) = (t_ns[i], worker[i], pid[i]);
            let mut raw = [None; KINDS.len()];
            for (slot, view) in raw.iter_mut().zip(&views) {
                *slot = view.get(i);
            }
            let values: Values = raw.map(|v| v.map(|v| v as f64));
            self.first_ns = self.first_ns.or(Some(t));
            self.last_ns = Some(t);
            let (walker, timeline) = self.series.entry((worker, pid)).or_insert_with(|| {
                series_for(
                    &self.windows,
                    worker,
                    self.interval_ns,
                    PROCESS_TIMELINE_BUCKETS,
                )
            });
            walker.push(t, values);
            place(&mut self.levels, worker, Some(pid), walker.ended());
            timeline.push(t, &values);
            let read = rows.filled.pss_read.get(i).copied().unwrap_or(false);
            self.add_to_tree(t, worker, &raw, read);
        }
        // A tick's rows are written together, so its trees end with the segment.
        self.flush_trees();
        Ok(())
    }

    /// Ends the walk: every series' last window's levels go to their trials.
    pub fn finish(self) -> Walked<'a> {
        let mut levels = self.levels;
        let mut timelines = BTreeMap::new();
        for (worker, (walker, timeline)) in self.trees {
            place(&mut levels, worker, None, walker.finish().into_iter());
            timelines.insert(worker, timeline);
        }
        let mut process_timelines = BTreeMap::new();
        for ((worker, pid), (walker, timeline)) in self.series {
            place(&mut levels, worker, Some(pid), walker.finish().into_iter());
            process_timelines.insert((worker, pid), timeline);
        }
        Walked {
            levels,
            timelines,
            process_timelines,
            before_end: self.before_end,
            system: self.system,
            devices: self.devices,
            process_samples: self.process_samples,
            pss_health: self.pss_health,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
        }
    }

    /// Adds one process's row to its tree's sums; a new tick first finishes the last one's.
    fn add_to_tree(
        &mut self,
        t_ns: u64,
        worker: u32,
        raw: &[Option<u64>; KINDS.len()],
        read: bool,
    ) {
        if self.tick.first().is_some_and(|tree| tree.t_ns != t_ns) {
            self.flush_trees();
        }
        // A worker's rows come together: its tree is nearly always the last one begun.
        let index = match self.tick.iter().rposition(|tree| tree.worker == worker) {
            Some(index) => index,
            None => {
                self.tick.push(TreeTick {
                    worker,
                    t_ns,
                    sums: [0; KINDS.len()],
                    missing: [false; KINDS.len()],
                    all_read: true,
                });
                self.tick.len() - 1
            }
        };
        let tree = &mut self.tick[index];
        for (k, value) in raw.iter().enumerate() {
            match value {
                Some(value) => tree.sums[k] += value,
                None => tree.missing[k] = true,
            }
        }
        tree.all_read &= read;
    }

    /// Each tree's sums of the tick into its walker, timeline and health.
    fn flush_trees(&mut self) {
        let mut tick = std::mem::take(&mut self.tick);
        for tree in tick.drain(..) {
            let (t, worker) = (tree.t_ns, tree.worker);
            let mut values: Values = Default::default();
            for (k, slot) in values.iter_mut().enumerate() {
                *slot = (!tree.missing[k]).then_some(tree.sums[k] as f64);
            }
            self.pss_health
                .entry(worker)
                .or_default()
                .count(tree.all_read, values[Kind::Pss as usize].is_some());
            let (walker, timeline) = self.trees.entry(worker).or_insert_with(|| {
                series_for(&self.windows, worker, self.interval_ns, TIMELINE_BUCKETS)
            });
            walker.push(t, values);
            place(&mut self.levels, worker, None, walker.ended());
            timeline.push(t, &values);
            // This sample is the last one before the first end after it, so far.
            if let Some(times) = self.end_times.get(&worker) {
                if let Some(&end) = times.get(times.partition_point(|&e| e <= t)) {
                    self.before_end.insert((worker, end), values);
                }
            }
        }
        // Kept for the next tick: its capacity saves an allocation per tick.
        self.tick = tick;
    }
}

/// A new walker over the worker's trial windows, with its timeline.
fn series_for(
    windows: &BTreeMap<u32, Arc<[Option<TrialWindow>]>>,
    worker: u32,
    interval_ns: u64,
    buckets: usize,
) -> (SeriesWalker, Timeline) {
    let walker = SeriesWalker::new(
        windows
            .get(&worker)
            .cloned()
            .unwrap_or_else(|| Arc::new([])),
    );
    (walker, Timeline::new(interval_ns, buckets))
}

/// Folds one segment's system samples into the summary.
fn push_system(
    summary: &mut Option<SystemSummary>,
    df: &DataFrame,
    interval_ns: u64,
) -> PolarsResult<()> {
    if df.height() == 0 {
        return Ok(());
    }
    let t = u64_values(df, col::T_NS)?;
    let memory = effective_memory(df)?;
    let psi = df.column(col::PSI_FULL_AVG10)?.cast(&DataType::Float64)?;
    let psi = psi.f64()?;
    let optional = |name| optional_u64_values(df, name);
    let oom_kill = optional(col::CGROUP_OOM_KILL)?;
    let (shm, outside, limit) = (
        optional(col::SHM_BYTES)?,
        optional(col::OUTSIDE_TREES_BYTES)?,
        optional(col::CGROUP_LIMIT_BYTES)?,
    );
    for i in 0..df.height() {
        let (Some(t), Some((total, available))) = (t[i], memory[i]) else {
            continue;
        };
        let (total, available) = (total as f64, available as f64);
        let psi = psi.get(i);
        let s = summary.get_or_insert_with(|| SystemSummary {
            mem_total_bytes: total,
            first_available_bytes: available,
            last_available_bytes: available,
            min_available_bytes: available,
            max_psi_full_avg10: None,
            timeline: Timeline::new(interval_ns, TIMELINE_BUCKETS),
            oom_kill_readings: Vec::new(),
            shm_readings: Vec::new(),
            outside_readings: Vec::new(),
            outside_within_cgroup: false,
        });
        if let Some(bytes) = shm[i] {
            if s.shm_readings.last().is_none_or(|&(_, b)| b != bytes) {
                s.shm_readings.push((t, bytes));
            }
        }
        if let Some(bytes) = outside[i] {
            if s.outside_readings
                .last()
                .is_none_or(|&(last, _)| t >= last + 1_000_000_000)
            {
                s.outside_readings.push((t, bytes));
                s.outside_within_cgroup |= limit[i].is_some();
            }
        }
        if let Some(count) = oom_kill[i] {
            if s.oom_kill_readings.last().is_none_or(|&(_, c)| c != count) {
                s.oom_kill_readings.push((t, count));
            }
        }
        s.mem_total_bytes = total;
        s.last_available_bytes = available;
        s.min_available_bytes = s.min_available_bytes.min(available);
        s.max_psi_full_avg10 = match (s.max_psi_full_avg10, psi) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let mut values: Values = Default::default();
        values[slot::AVAILABLE] = Some(available);
        values[slot::PSI_FULL] = psi;
        s.timeline.push(t, &values);
    }
    Ok(())
}

/// Folds one segment's GPU device samples into per-device timelines.
fn push_devices(
    devices: &mut BTreeMap<u32, Timeline>,
    df: &DataFrame,
    interval_ns: u64,
) -> PolarsResult<()> {
    if df.height() == 0 {
        return Ok(());
    }
    let u = |name: &str| u64_values(df, name);
    let (t, device, used, total) = (
        u(col::T_NS)?,
        u(col::DEVICE)?,
        u(col::USED_BYTES)?,
        u(col::TOTAL_BYTES)?,
    );
    for i in 0..df.height() {
        let (Some(t), Some(device)) = (t[i], device[i]) else {
            continue;
        };
        let mut values: Values = Default::default();
        values[slot::DEVICE_USED] = used[i].map(|v| v as f64);
        values[slot::DEVICE_TOTAL] = total[i].map(|v| v as f64);
        devices
            .entry(device as u32)
            .or_insert_with(|| Timeline::new(interval_ns, TIMELINE_BUCKETS))
            .push(t, &values);
    }
    Ok(())
}
