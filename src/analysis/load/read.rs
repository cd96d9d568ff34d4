//! From a recording to per-trial levels and timelines, one sample segment at a time. polars
//! does the table work per segment (column projection, per-tick sums over each worker's tree);
//! `fill` carries the budgeted PSS/USS reads forward while they are fresh; `walk` folds the
//! reduced rows into walkers and timelines, on a thread of its own.

use super::fill::SparseFill;
use super::levels::{windows, Levels};
use super::loaded::{chain_baselines, Ended, Loaded, MappingRow, ProcessInfo, TrialLevels};
use super::walk::{Prepared, Rows, Walk};
use crate::analysis::kind::Kind;
use crate::frames::prelude::*;
use crate::recording::columns as col;
use crate::recording::{EventKind, Recording, RecordingError, TrialEvents};
use std::collections::BTreeMap;

/// Columns of the samples table that analysis reads.
pub(super) const SAMPLE_COLUMNS: [&str; 11] = [
    col::T_NS,
    col::WORKER,
    col::PID,
    col::PSS,
    col::USS,
    col::ANON,
    col::FILE,
    col::SHMEM,
    col::SWAP,
    col::GPU,
    col::RSS,
];

/// Columns of the system table that analysis reads (the cgroup's are absent in recordings made
/// before memwarden recorded them, and outside a memory cgroup).
pub(super) const SYSTEM_COLUMNS: [&str; 9] = [
    col::T_NS,
    col::MEM_TOTAL_BYTES,
    col::MEM_AVAILABLE_BYTES,
    col::PSI_FULL_AVG10,
    col::CGROUP_LIMIT_BYTES,
    col::CGROUP_WORKING_SET_BYTES,
    col::CGROUP_OOM_KILL,
    col::SHM_BYTES,
    col::OUTSIDE_TREES_BYTES,
];

pub fn load(recording: &Recording) -> Result<Loaded<'_>, RecordingError> {
    let interval_ns = recording.manifest.interval_ns.max(1);
    let store = trial_store(crate::recording::pair_trials(&recording.events));
    let Lifecycle {
        processes,
        exits_ns,
        restarts,
        ended,
    } = lifecycle(recording);
    let worker_windows: BTreeMap<u32, _> = store
        .iter()
        .map(|(worker, trials)| {
            let refs: Vec<&TrialEvents> = trials.iter().map(|t| &t.trial).collect();
            let exits = exits_ns.get(worker).map_or(&[][..], Vec::as_slice);
            (*worker, windows(&refs, exits, interval_ns))
        })
        .collect();
    // Each trial's levels are moved here as its window ends in the walk: a level is kept once.
    let recorded = store
        .values()
        .flatten()
        .any(|t| t.trial.end_memory().is_some());
    let mut end_times: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for e in &ended {
        end_times.entry(e.worker).or_default().push(e.t_ns);
    }
    let mut fill = SparseFill::new(recording);
    let table = |source| RecordingError::Table {
        path: recording.dir.clone(),
        cause: source,
    };
    // Decoding and filling a segment (here) overlaps with walking the one before (on the
    // walker's thread): the two halves cost about the same, and the machine has two cores.
    let walk = Walk::new(interval_ns, worker_windows, end_times, store);
    let walk = std::thread::scope(|scope| -> Result<Walk, RecordingError> {
        let (segments, received) = std::sync::mpsc::sync_channel::<Prepared>(1);
        let walker = scope.spawn(move || -> PolarsResult<Walk> {
            let mut walk = walk;
            for prepared in received {
                walk.segment(prepared)?;
            }
            Ok(walk)
        });
        for index in recording.sample_segments()? {
            let prepared = prepare(recording, index, &mut fill)?;
            if segments.send(prepared).is_err() {
                break; // the walker stopped at an error, which its join returns
            }
        }
        drop(segments);
        walker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .map_err(table)
    })?;
    let super::walk::Walked {
        levels: mut trials,
        before_end,
        system,
        devices,
        process_samples,
        pss_health,
        first_ns,
        last_ns,
        timelines,
        process_timelines,
    } = walk.finish();
    settle_ends(&mut trials, recorded, interval_ns);
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

/// Each worker's trials in order (of start, or of end where a trial has no start), without
/// their levels yet.
/// What the events tell of each worker's processes: who they are, when the worker exited and
/// was started again, and which processes ended as the OOM killer's victims would.
struct Lifecycle {
    processes: BTreeMap<(u32, i32), ProcessInfo>,
    exits_ns: BTreeMap<u32, Vec<u64>>,
    restarts: BTreeMap<u32, Vec<u64>>,
    /// By worker and time, one end per process.
    ended: Vec<Ended>,
}

fn lifecycle(recording: &Recording) -> Lifecycle {
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
                info.command = crate::redact::command_line(command);
            }
            // The program it became is the one findings name (a wrapper execs the worker).
            EventKind::Exec { pid, command, .. } => {
                processes.entry((worker, *pid)).or_default().command =
                    crate::redact::command_line(command);
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
    // A main process's SIGKILL exit is also a process gone: one end each.
    let mains: std::collections::HashSet<(u32, i32)> = ended
        .iter()
        .filter(|e| e.main)
        .map(|e| (e.worker, e.pid))
        .collect();
    ended.retain(|e| e.main || !mains.contains(&(e.worker, e.pid)));
    ended.sort_by_key(|e| (e.worker, e.t_ns));
    Lifecycle {
        processes,
        exits_ns,
        restarts,
        ended,
    }
}

/// Each trial's retained level as its end was read (`boundary::settle`), and each trial's
/// baseline from the one before where they touch.
fn settle_ends(trials: &mut BTreeMap<u32, Vec<TrialLevels>>, recorded: bool, interval_ns: u64) {
    for levels in trials.values_mut() {
        for t in levels.iter_mut() {
            let ended = t.trial.end_ns().is_some();
            let end_memory = t.trial.end_memory();
            let end_memory = end_memory.as_ref();
            t.end_read = match t.tree.as_mut() {
                Some(levels) => super::boundary::settle(levels, end_memory, ended, recorded),
                // No sample fell in the trial, but the end was read: that level stands.
                None if ended => {
                    let mut levels = Levels::default();
                    let read = super::boundary::settle(&mut levels, end_memory, ended, recorded);
                    if matches!(
                        read,
                        super::boundary::EndRead::Worker | super::boundary::EndRead::Harness { .. }
                    ) {
                        t.tree = Some(levels);
                        read
                    } else {
                        super::boundary::EndRead::Unknown
                    }
                }
                None => super::boundary::EndRead::Running,
            };
        }
        chain_baselines(levels, interval_ns);
    }
}

fn trial_store(mut trials: Vec<TrialEvents>) -> BTreeMap<u32, Vec<TrialLevels>> {
    trials.sort_by_key(|t| (t.worker, t.start_ns().or(t.end_ns())));
    trials
        .chunk_by(|a, b| a.worker == b.worker)
        .map(|worker| {
            let levels = worker
                .iter()
                .enumerate()
                .map(|(ordinal, &trial)| TrialLevels {
                    trial,
                    ordinal,
                    tree: None,
                    processes: Default::default(),
                    end_read: super::boundary::EndRead::Running,
                })
                .collect();
            (worker[0].worker, levels)
        })
        .collect()
}

/// One segment read and filled: the walker's input.
fn prepare(
    recording: &Recording,
    index: u32,
    fill: &mut SparseFill,
) -> Result<Prepared, RecordingError> {
    let table = |source| RecordingError::Table {
        path: recording.dir.clone(),
        cause: source,
    };
    let devices = recording.gpu_segment(index)?;
    let (segment, system) =
        recording.segment_frames(index, Some(&SAMPLE_COLUMNS), Some(&SYSTEM_COLUMNS))?;
    if segment.height() == 0 {
        return Ok(Prepared {
            devices,
            system,
            processes: None,
        });
    }
    let filled = fill.fill(&segment).map_err(table)?;
    let column = |name: &str, dtype: DataType| -> PolarsResult<Series> {
        Ok(segment
            .column(name)?
            .cast(&dtype)?
            .as_materialized_series()
            .rechunk())
    };
    let rows = (|| -> PolarsResult<Rows> {
        Ok(Rows {
            t_ns: column(col::T_NS, DataType::UInt64)?.u64()?.clone(),
            worker: column(col::WORKER, DataType::UInt32)?.u32()?.clone(),
            pid: column(col::PID, DataType::Int32)?.i32()?.clone(),
            measured: [Kind::Anon, Kind::File, Kind::Shmem, Kind::Swap, Kind::Rss]
                .into_iter()
                .map(|kind| {
                    Ok((
                        kind,
                        column(kind.column(), DataType::UInt64)?.u64()?.clone(),
                    ))
                })
                .collect::<PolarsResult<_>>()?,
            filled,
        })
    })()
    .map_err(table)?;
    Ok(Prepared {
        devices,
        system,
        processes: Some(rows),
    })
}

/// The condensed mappings of each of `processes` (worker, pid) at its trial-start snapshots
/// (trial-end ones when it has fewer than two starts, as with Optuna's trials). The smaps
/// segments are read once for all of them.
pub fn mapping_rows(
    recording: &Recording,
    processes: &[(u32, i32)],
) -> Result<BTreeMap<(u32, i32), Vec<MappingRow>>, RecordingError> {
    // Per process: rows at trial starts, rows at trial ends.
    let mut by_boundary: BTreeMap<(u32, i32), [Vec<MappingRow>; 2]> = BTreeMap::new();
    // Recordings made before one snapshot per tick hold several copies stamped with one tick
    // (several boundaries in it), each read a little later by the snapshot thread: one copy per
    // tick counts (the first trial's), and within it each mapping once. Counted once per copy, a
    // mapping's growth read +3139 MiB of anonymous regions in a 360 MiB process.
    type Tick = ((u32, i32), usize, Option<u64>);
    let mut copy_of: std::collections::HashMap<Tick, Option<String>> = Default::default();
    let mut seen: std::collections::HashSet<(Tick, Option<u64>, String)> = Default::default();
    let wanted: std::collections::HashSet<(u32, i32)> = processes.iter().copied().collect();
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let table = |source| RecordingError::Table {
        path: recording.dir.clone(),
        cause: source,
    };
    for index in recording.smaps_segments()? {
        let df = recording.smaps_segment(index)?;
        let u = |name: &str| -> PolarsResult<UInt64Chunked> {
            Ok(df.column(name)?.cast(&DataType::UInt64)?.u64()?.clone())
        };
        let s = |name: &str| -> PolarsResult<StringChunked> {
            Ok(df.column(name)?.cast(&DataType::String)?.str()?.clone())
        };
        let (t, start, size, rss, swap) = (
            u(col::T_NS).map_err(table)?,
            u(col::START).map_err(table)?,
            u(col::SIZE).map_err(table)?,
            u(col::RSS).map_err(table)?,
            u(col::SWAP).map_err(table)?,
        );
        let (boundary, mapping) = (
            s(col::BOUNDARY).map_err(table)?,
            s(col::MAPPING).map_err(table)?,
        );
        let trial = s(col::TRIAL).map_err(table)?;
        let worker = df
            .column(col::WORKER)
            .and_then(|c| c.cast(&DataType::UInt32))
            .map_err(table)?;
        let pid = df
            .column(col::PID)
            .and_then(|c| c.cast(&DataType::Int32))
            .map_err(table)?;
        let (worker, pid) = (worker.u32().map_err(table)?, pid.i32().map_err(table)?);
        for i in 0..df.height() {
            let key = (worker.get(i).unwrap_or(0), pid.get(i).unwrap_or(0));
            if !wanted.contains(&key) {
                continue;
            }
            let slot = usize::from(boundary.get(i) != Some("trial_start"));
            let tick = (key, slot, t.get(i));
            let copy = trial.get(i).map(str::to_string);
            if *copy_of.entry(tick).or_insert_with(|| copy.clone()) != copy
                || !seen.insert((tick, start.get(i), mapping.get(i).unwrap_or("").to_string()))
            {
                continue;
            }
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
