//! From a recording to per-trial levels and timelines, one sample segment at a time. polars
//! does the table work per segment (column projection, per-tick sums over each worker's tree);
//! `fill` carries the budgeted PSS/USS reads forward while they are fresh; the walkers and
//! timelines take the reduced rows.

use super::coarse_series::{slot, Timeline};
use super::fill::{SparseFill, PSS_READ};
use super::kind::{Values, KINDS};
use super::levels::{windows, Levels, SeriesWalker};
use super::location::MappingRow;
use super::oom::Ended;
use crate::freshness::PssHealth;
use crate::recording::{redact_command_line, EventKind, Recording, RecordingError, Trial};
use polars::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// Timelines keep at most this many buckets per worker.
const TIMELINE_BUCKETS: usize = 600;
/// Fewer per process: a run may see thousands of short-lived processes.
const PROCESS_TIMELINE_BUCKETS: usize = 150;

/// Columns of the samples table that analysis reads.
pub(super) const SAMPLE_COLUMNS: [&str; 11] = [
    "t_ns", "worker", "pid", "pss", "uss", "anon", "file", "shmem", "swap", "gpu", "rss",
];

/// Columns of the system table that analysis reads (the cgroup's are absent in recordings made
/// before memwarden recorded them, and outside a memory cgroup).
pub(super) const SYSTEM_COLUMNS: [&str; 9] = [
    "t_ns",
    "mem_total",
    "mem_available",
    "psi_full_avg10",
    "cgroup_limit",
    "cgroup_working_set",
    "cgroup_oom_kill",
    "shm_bytes",
    "outside_trees",
];

/// One trial of one worker with its levels.
#[derive(Debug, Clone)]
pub struct TrialLevels {
    pub trial: Trial,
    /// Position among the worker's trials.
    pub ordinal: usize,
    pub tree: Option<Levels>,
    pub processes: BTreeMap<i32, Levels>,
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

pub struct Loaded {
    /// Per worker, in trial order.
    pub trials: BTreeMap<u32, Vec<TrialLevels>>,
    /// Per worker, the tree's sums over time.
    pub timelines: BTreeMap<u32, Timeline>,
    /// Per process of each tree, over time.
    pub process_timelines: BTreeMap<(u32, i32), Timeline>,
    pub processes: BTreeMap<(u32, i32), ProcessInfo>,
    /// Per worker, when it was started again (ns since the start), in order.
    pub restarts: BTreeMap<u32, Vec<u64>>,
    /// The processes that ended as the OOM killer's victims would: main processes by SIGKILL
    /// and every process seen vanishing from a tree.
    pub ended: Vec<super::oom::Ended>,
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

pub fn load(recording: &Recording) -> Result<Loaded, RecordingError> {
    let interval_ns = recording.manifest.interval_ns.max(1);
    let mut by_worker: BTreeMap<u32, Vec<Trial>> = BTreeMap::new();
    for trial in recording.trials() {
        by_worker.entry(trial.worker).or_default().push(trial);
    }
    for trials in by_worker.values_mut() {
        trials.sort_by_key(|t| t.start_ns.or(t.end_ns));
    }
    let mut processes: BTreeMap<(u32, i32), ProcessInfo> = BTreeMap::new();
    let mut exits_ns: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut restarts: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut ended: Vec<Ended> = Vec::new();
    for event in &recording.events {
        let Some(worker) = event.worker else { continue };
        match &event.kind {
            EventKind::WorkerStart { pid, attempt, .. } => {
                processes.entry((worker, *pid)).or_default().main = true;
                if *attempt > 0 {
                    restarts.entry(worker).or_default().push(event.t_ns);
                }
            }
            EventKind::ProcessSeen {
                pid, ppid, command, ..
            } => {
                let info = processes.entry((worker, *pid)).or_default();
                info.ppid = Some(*ppid);
                // Command lines read from /proc may carry secrets; findings never show them.
                info.command = redact_command_line(command);
            }
            // The program it became is the one findings name (a wrapper execs the worker).
            EventKind::Exec { pid, command, .. } => {
                processes.entry((worker, *pid)).or_default().command = redact_command_line(command);
            }
            EventKind::WorkerExit { pid, signal, .. } => {
                exits_ns.entry(worker).or_default().push(event.t_ns);
                if *signal == Some(9) {
                    ended.push(Ended {
                        worker,
                        pid: *pid,
                        t_ns: event.t_ns,
                        main: true,
                    });
                }
            }
            EventKind::ProcessGone { pid } => ended.push(Ended {
                worker,
                pid: *pid,
                t_ns: event.t_ns,
                main: false,
            }),
            _ => {}
        }
    }
    let command = recording.manifest.command.join(" ");
    for info in processes.values_mut() {
        if info.main && info.command.is_empty() {
            info.command = command.clone();
        }
    }
    let worker_windows: BTreeMap<u32, _> = by_worker
        .iter()
        .map(|(worker, trials)| {
            let refs: Vec<&Trial> = trials.iter().collect();
            let exits = exits_ns.get(worker).map_or(&[][..], Vec::as_slice);
            (*worker, windows(&refs, exits, interval_ns))
        })
        .collect();
    let new_walker =
        |worker: u32| SeriesWalker::new(worker_windows.get(&worker).cloned().unwrap_or_default());
    // A main process's SIGKILL exit is also a process gone: one end each.
    let mains: std::collections::HashSet<(u32, i32)> = ended
        .iter()
        .filter(|e| e.main)
        .map(|e| (e.worker, e.pid))
        .collect();
    ended.retain(|e| e.main || !mains.contains(&(e.worker, e.pid)));
    ended.sort_by_key(|e| (e.worker, e.t_ns));
    let mut end_times: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for e in &ended {
        end_times.entry(e.worker).or_default().push(e.t_ns);
    }
    let mut before_end: BTreeMap<(u32, u64), Values> = BTreeMap::new();

    // Hash maps: one lookup per row of millions.
    let mut trees: HashMap<u32, (SeriesWalker, Timeline)> = HashMap::new();
    let mut series: HashMap<(u32, i32), (SeriesWalker, Timeline)> = HashMap::new();
    let mut fill = SparseFill::new(recording);
    let mut pss_health: BTreeMap<u32, PssHealth> = BTreeMap::new();
    let mut process_samples = 0u64;
    let (mut first_ns, mut last_ns) = (None, None);
    let table = |source| RecordingError::Table {
        path: recording.dir.clone(),
        cause: source,
    };
    let mut system: Option<SystemSummary> = None;
    let mut devices: BTreeMap<u32, Timeline> = BTreeMap::new();
    for index in recording.sample_segments()? {
        push_devices(&mut devices, &recording.gpu_segment(index)?, interval_ns).map_err(table)?;
        let (segment, system_segment) =
            recording.segment_frames(index, Some(&SAMPLE_COLUMNS), Some(&SYSTEM_COLUMNS))?;
        push_system(&mut system, &system_segment, interval_ns).map_err(table)?;
        if segment.height() == 0 {
            continue;
        }
        process_samples += segment.height() as u64;
        let filled = fill.apply(segment).map_err(table)?;
        let rows = Rows::new(&filled).map_err(table)?;
        for i in 0..rows.len() {
            let (t, worker, pid, values) = rows.get(i);
            first_ns = first_ns.or(Some(t));
            last_ns = Some(t);
            let (walker, timeline) = series.entry((worker, pid)).or_insert_with(|| {
                (
                    new_walker(worker),
                    Timeline::new(interval_ns, PROCESS_TIMELINE_BUCKETS),
                )
            });
            walker.push(t, values);
            timeline.push(t, &values);
        }
        let tree = tree_sums(filled).map_err(table)?;
        let rows = Rows::new(&tree).map_err(table)?;
        let all_read = tree
            .column(PSS_READ)
            .and_then(|c| c.cast(&DataType::Boolean))
            .map_err(table)?;
        let all_read = all_read.bool().map_err(table)?;
        for i in 0..rows.len() {
            let (t, worker, _, values) = rows.get(i);
            pss_health.entry(worker).or_default().count(
                all_read.get(i).unwrap_or(false),
                values[super::kind::Kind::Pss as usize].is_some(),
            );
            let (walker, timeline) = trees.entry(worker).or_insert_with(|| {
                (
                    new_walker(worker),
                    Timeline::new(interval_ns, TIMELINE_BUCKETS),
                )
            });
            walker.push(t, values);
            timeline.push(t, &values);
            // This sample is the last one before the first end after it, so far.
            if let Some(times) = end_times.get(&worker) {
                if let Some(&end) = times.get(times.partition_point(|&e| e <= t)) {
                    before_end.insert((worker, end), values);
                }
            }
        }
    }
    let mut tree_walkers: BTreeMap<u32, SeriesWalker> = BTreeMap::new();
    let mut timelines: BTreeMap<u32, Timeline> = BTreeMap::new();
    for (worker, (walker, timeline)) in trees {
        tree_walkers.insert(worker, walker);
        timelines.insert(worker, timeline);
    }
    let mut process_walkers: BTreeMap<(u32, i32), SeriesWalker> = BTreeMap::new();
    let mut process_timelines: BTreeMap<(u32, i32), Timeline> = BTreeMap::new();
    for (key, (walker, timeline)) in series {
        process_walkers.insert(key, walker);
        process_timelines.insert(key, timeline);
    }

    let mut trials: BTreeMap<u32, Vec<TrialLevels>> = BTreeMap::new();
    for (worker, worker_trials) in by_worker {
        let tree = tree_walkers
            .remove(&worker)
            .map(SeriesWalker::finish)
            .unwrap_or_default();
        let mut per_process: Vec<(i32, Vec<Option<Levels>>)> = Vec::new();
        let pids: Vec<(u32, i32)> = process_walkers
            .range((worker, i32::MIN)..=(worker, i32::MAX))
            .map(|(key, _)| *key)
            .collect();
        for key in pids {
            if let Some(walker) = process_walkers.remove(&key) {
                per_process.push((key.1, walker.finish()));
            }
        }
        let levels = worker_trials
            .into_iter()
            .enumerate()
            .map(|(ordinal, trial)| TrialLevels {
                trial,
                ordinal,
                tree: tree.get(ordinal).cloned().flatten(),
                processes: per_process
                    .iter()
                    .filter_map(|(pid, l)| Some((*pid, l.get(ordinal)?.clone()?)))
                    .collect(),
            })
            .collect();
        trials.insert(worker, levels);
    }
    Ok(Loaded {
        trials,
        timelines,
        process_timelines,
        processes,
        restarts,
        ended,
        before_end,
        system,
        devices,
        process_samples,
        pss_health,
        first_ns,
        last_ns,
    })
}

/// Per worker and tick, the sum over its tree. A sparse kind's sum is kept only when every
/// process of the tree has a value, and is left empty otherwise.
fn tree_sums(filled: DataFrame) -> PolarsResult<DataFrame> {
    let mut aggregates = vec![col("pid").first(), col(PSS_READ).min()];
    for kind in KINDS {
        aggregates.push(col(kind.column()).sum());
        aggregates.push(
            col(kind.column())
                .null_count()
                .alias(format!("{}_missing", kind.column())),
        );
    }
    let mut tree = filled
        .lazy()
        .group_by_stable([col("worker"), col("t_ns")])
        .agg(aggregates)
        .collect()?;
    for kind in KINDS {
        let name = kind.column();
        let missing = tree
            .column(&format!("{name}_missing"))?
            .cast(&DataType::UInt64)?;
        let sums = tree.column(name)?.cast(&DataType::UInt64)?;
        let kept: Vec<Option<u64>> = sums
            .u64()?
            .iter()
            .zip(missing.u64()?.iter())
            .map(|(sum, missing)| if missing == Some(0) { sum } else { None })
            .collect();
        tree.replace(name, Column::new(name.into(), kept))?;
    }
    Ok(tree)
}

/// A column as plain values, copied out of polars once: per-row `ChunkedArray::get` costs a
/// chunk lookup each time.
/// Total and available memory per row as the workers had them: within the memory cgroup's
/// limit where one was recorded (`recording::within_limit`), else the host's.
pub(super) fn effective_memory(df: &DataFrame) -> PolarsResult<Vec<Option<(u64, u64)>>> {
    let (total, available) = (
        u64_values(df, "mem_total")?,
        u64_values(df, "mem_available")?,
    );
    let optional = |name| optional_u64_values(df, name);
    let (limit, working_set) = (optional("cgroup_limit")?, optional("cgroup_working_set")?);
    Ok((0..df.height())
        .map(|i| {
            let (total, available) = (total[i]?, available[i]?);
            Some(crate::recording::within_limit(
                total,
                available,
                limit[i],
                working_set[i],
            ))
        })
        .collect())
}

/// A column that recordings made before it was added lack: all `None` there.
pub(super) fn optional_u64_values(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<u64>>> {
    match df.column(name) {
        Ok(_) => u64_values(df, name),
        Err(_) => Ok(vec![None; df.height()]),
    }
}

pub(super) fn u64_values(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<u64>>> {
    Ok(df
        .column(name)?
        .cast(&DataType::UInt64)?
        .u64()?
        .iter()
        .collect())
}

/// The columns that rows are read from, copied out of polars once per segment: per-row
/// `ChunkedArray::get` costs a chunk lookup each time.
struct Rows {
    t_ns: Vec<u64>,
    worker: Vec<u32>,
    pid: Vec<i32>,
    kinds: Vec<Vec<Option<u64>>>,
}

impl Rows {
    fn new(df: &DataFrame) -> PolarsResult<Self> {
        let get = |name: &str, dtype: DataType| -> PolarsResult<Series> {
            df.column(name)?.as_materialized_series().cast(&dtype)
        };
        Ok(Self {
            t_ns: get("t_ns", DataType::UInt64)?
                .u64()?
                .iter()
                .map(|v| v.unwrap_or(0))
                .collect(),
            worker: get("worker", DataType::UInt32)?
                .u32()?
                .iter()
                .map(|v| v.unwrap_or(0))
                .collect(),
            pid: get("pid", DataType::Int32)?
                .i32()?
                .iter()
                .map(|v| v.unwrap_or(0))
                .collect(),
            kinds: KINDS
                .iter()
                .map(|k| Ok(get(k.column(), DataType::UInt64)?.u64()?.iter().collect()))
                .collect::<PolarsResult<_>>()?,
        })
    }

    fn len(&self) -> usize {
        self.t_ns.len()
    }

    fn get(&self, i: usize) -> (u64, u32, i32, Values) {
        let mut values: Values = Default::default();
        for (slot, column) in values.iter_mut().zip(&self.kinds) {
            *slot = column[i].map(|v| v as f64);
        }
        (self.t_ns[i], self.worker[i], self.pid[i], values)
    }
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
    let t = u64_values(df, "t_ns")?;
    let memory = effective_memory(df)?;
    let psi = df.column("psi_full_avg10")?.cast(&DataType::Float64)?;
    let psi = psi.f64()?;
    let optional = |name| optional_u64_values(df, name);
    let oom_kill = optional("cgroup_oom_kill")?;
    let (shm, outside, limit) = (
        optional("shm_bytes")?,
        optional("outside_trees")?,
        optional("cgroup_limit")?,
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
    let (t, device, used, total) = (u("t_ns")?, u("device")?, u("used")?, u("total")?);
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

/// The condensed mappings of each of `processes` (worker, pid) at its trial-start snapshots
/// (trial-end ones when it has fewer than two starts, as with Optuna's trials). The smaps
/// segments are read once for all of them, filtered by polars.
pub fn mapping_rows(
    recording: &Recording,
    processes: &[(u32, i32)],
) -> Result<BTreeMap<(u32, i32), Vec<MappingRow>>, RecordingError> {
    // Per process: rows at trial starts, rows at trial ends.
    let mut by_boundary: BTreeMap<(u32, i32), [Vec<MappingRow>; 2]> = BTreeMap::new();
    let Some(wanted) = processes
        .iter()
        .map(|(worker, pid)| col("worker").eq(lit(*worker)).and(col("pid").eq(lit(*pid))))
        .reduce(|a, b| a.or(b))
    else {
        return Ok(BTreeMap::new());
    };
    let table = |source| RecordingError::Table {
        path: recording.dir.clone(),
        cause: source,
    };
    for index in recording.smaps_segments()? {
        let df = recording
            .smaps_segment(index)?
            .lazy()
            .filter(wanted.clone())
            .select([
                col("worker"),
                col("pid"),
                col("t_ns"),
                col("boundary"),
                col("mapping"),
                col("start"),
                col("size"),
                col("rss"),
                col("swap"),
            ])
            .collect()
            .map_err(table)?;
        let u = |name: &str| -> PolarsResult<UInt64Chunked> {
            Ok(df.column(name)?.cast(&DataType::UInt64)?.u64()?.clone())
        };
        let s = |name: &str| -> PolarsResult<StringChunked> {
            Ok(df.column(name)?.cast(&DataType::String)?.str()?.clone())
        };
        let (t, start, size, rss, swap) = (
            u("t_ns").map_err(table)?,
            u("start").map_err(table)?,
            u("size").map_err(table)?,
            u("rss").map_err(table)?,
            u("swap").map_err(table)?,
        );
        let (boundary, mapping) = (s("boundary").map_err(table)?, s("mapping").map_err(table)?);
        let worker = df
            .column("worker")
            .and_then(|c| c.cast(&DataType::UInt32))
            .map_err(table)?;
        let pid = df
            .column("pid")
            .and_then(|c| c.cast(&DataType::Int32))
            .map_err(table)?;
        let (worker, pid) = (worker.u32().map_err(table)?, pid.i32().map_err(table)?);
        for i in 0..df.height() {
            let key = (worker.get(i).unwrap_or(0), pid.get(i).unwrap_or(0));
            let slot = usize::from(boundary.get(i) != Some("trial_start"));
            by_boundary.entry(key).or_default()[slot].push(MappingRow {
                t_ns: t.get(i).unwrap_or(0),
                name: mapping.get(i).unwrap_or("").to_string(),
                start: start.get(i).unwrap_or(0),
                size: size.get(i).unwrap_or(0),
                rss: rss.get(i).unwrap_or(0),
                swap: swap.get(i).unwrap_or(0),
            });
        }
    }
    let snapshots = |rows: &[MappingRow]| {
        rows.iter()
            .map(|r| r.t_ns)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    Ok(by_boundary
        .into_iter()
        .map(|(key, [starts, ends])| {
            (
                key,
                if snapshots(&starts) >= 2 {
                    starts
                } else {
                    ends
                },
            )
        })
        .collect())
}
