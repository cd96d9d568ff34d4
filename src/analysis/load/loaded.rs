//! What `load` makes of a recording: per worker its trials with their levels, the timelines of
//! trees, processes, the system and the GPUs, and what ended how. Everything after loading
//! reads these; only `load` and `walk` fill them.

use super::boundary::EndRead;
use super::coarse_series::Timeline;
use super::levels::Levels;
use super::process_levels::ProcessLevels;
use crate::analysis::kind::Values;
use crate::freshness::PssHealth;
use std::collections::BTreeMap;

/// One trial of one worker with its levels.
#[derive(Debug, Clone)]
pub struct TrialLevels<'a> {
    /// Read from its events, which the recording holds (a copy was 136 bytes per trial).
    pub trial: crate::recording::TrialEvents<'a>,
    /// Position among the worker's trials.
    pub ordinal: usize,
    pub tree: Option<Levels>,
    pub processes: ProcessLevels,
    /// Where the tree's retained level came from (`boundary`).
    pub end_read: EndRead,
}

impl TrialLevels<'_> {
    /// `pid`'s own levels in this trial.
    pub fn process(&self, pid: i32) -> Option<&Levels> {
        self.processes.get(pid, self.tree.as_ref())
    }
}

#[derive(Debug, Clone, Default)]
pub struct ProcessInfo {
    pub ppid: Option<i32>,
    pub command: String,
    /// The worker's main process (started or adopted by the harness).
    pub main: bool,
}

#[derive(Debug, Clone)]
pub struct SystemSummary {
    pub mem_total_bytes: f64,
    pub first_available_bytes: f64,
    pub last_available_bytes: f64,
    pub min_available_bytes: f64,
    pub max_psi_full_avg10: Option<f64>,
    /// Available memory and memory PSI full avg10, in the slots named by [`slot`].
    pub timeline: Timeline,
    /// The memory cgroup's `oom_kill` counter where it changed, `(t_ns, value)`, from its
    /// first reading on.
    pub oom_kill_readings: Vec<(u64, u64)>,
    /// `/dev/shm`'s allocated bytes where they changed, `(t_ns, bytes)`.
    pub shm_readings: Vec<(u64, u64)>,
    /// Memory outside every tree (see `SystemSample::outside_trees_bytes`), at most one
    /// reading a second; `within_cgroup` when measured against a cgroup's working set.
    pub outside_readings: Vec<(u64, u64)>,
    pub outside_within_cgroup: bool,
}

pub struct Loaded<'a> {
    /// Per worker, in trial order.
    pub trials: BTreeMap<u32, Vec<TrialLevels<'a>>>,
    /// Per worker, the tree's sums over time.
    pub timelines: BTreeMap<u32, Timeline>,
    /// Per process of each tree, over time.
    pub process_timelines: BTreeMap<(u32, i32), Timeline>,
    pub processes: BTreeMap<(u32, i32), ProcessInfo>,
    /// Per worker, when it was started again (ns since the start), in order.
    pub restarts: BTreeMap<u32, Vec<u64>>,
    /// The processes that ended as the OOM killer's victims would: main processes by SIGKILL
    /// and every process seen vanishing from a tree.
    pub ended: Vec<Ended>,
    /// The tree's memory at its last sample before each of those ends, by `(worker, t_ns)`.
    pub before_end: BTreeMap<(u32, u64), Values>,
    pub system: Option<SystemSummary>,
    /// Per GPU device: used (slot 0) and total (slot 1) memory over time.
    pub devices: BTreeMap<u32, Timeline>,
    pub process_samples: u64,
    /// Per worker, on how many ticks its tree's PSS was read and fresh.
    pub pss_health: BTreeMap<u32, PssHealth>,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
}

/// A trial that starts where the previous one ended (within a reading interval) starts from
/// what that one retained, read at its end: the last sample before the start, its baseline so
/// far, may still hold the previous trial's transient memory (its peak).
pub fn chain_baselines(trials: &mut [TrialLevels], interval_ns: u64) {
    for k in 1..trials.len() {
        let (before, after) = trials.split_at_mut(k);
        let (previous, next) = (&before[k - 1], &mut after[0]);
        let read_at_end = matches!(previous.end_read, EndRead::Worker | EndRead::Harness { .. });
        let adjacent = match (previous.trial.end_ns(), next.trial.start_ns()) {
            (Some(end), Some(start)) => start <= end.saturating_add(interval_ns),
            _ => false,
        };
        let (Some(retained), Some(levels)) = (
            previous.tree.as_ref().map(|l| l.retained),
            next.tree.as_mut(),
        ) else {
            continue;
        };
        if !(read_at_end && adjacent) {
            continue;
        }
        for (k, value) in retained.values().into_iter().enumerate() {
            if value.is_some() {
                levels.baseline.set(k, value);
            }
        }
    }
}

/// A worker's process that ended: its main process by SIGKILL, or any process of its tree
/// seen vanishing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ended {
    pub worker: u32,
    pub pid: i32,
    pub t_ns: u64,
    pub main: bool,
}

/// One condensed mapping in one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingRow {
    pub t_ns: u64,
    pub name: String,
    pub start: u64,
    pub size: u64,
    pub rss: u64,
    pub swap: u64,
}
