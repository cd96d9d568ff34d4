//! Records to tidy polars tables. Compaction and reading share these functions, so a compacted
//! segment and a raw one always give the same columns.

use super::columns::*;
use super::events::{Event, EventKind};
use super::schema::{Boundary, Mapping, SmapsSnapshot, Tick};
use crate::frames::prelude::*;
use std::collections::BTreeSet;

/// One row per item of each tick (a process, a GPU, a worker's cgroup), with the tick's time.
fn per_tick<'t, X>(ticks: &'t [Tick], items: impl Fn(&'t Tick) -> &'t [X]) -> Vec<(u64, &'t X)> {
    ticks
        .iter()
        .flat_map(|t| items(t).iter().map(move |x| (t.t_ns, x)))
        .collect()
}

pub(crate) fn samples_frame(ticks: &[Tick]) -> PolarsResult<DataFrame> {
    let rows = per_tick(ticks, |t| &t.processes);
    Table::of(&rows)
        .col(T_NS, |r| r.0)
        .col(WORKER, |r| r.1.worker)
        .col(PID, |r| r.1.pid)
        .col(RSS, |r| r.1.rss)
        .col(PSS, |r| r.1.pss)
        .col(USS, |r| r.1.uss)
        .col(ANON, |r| r.1.anon)
        .col(FILE, |r| r.1.file)
        .col(SHMEM, |r| r.1.shmem)
        .col(SWAP, |r| r.1.swap)
        .col(GPU, |r| r.1.gpu)
        .frame()
}

pub(crate) fn system_frame(ticks: &[Tick]) -> PolarsResult<DataFrame> {
    Table::of(ticks)
        .col(T_NS, |t| t.t_ns)
        .col(WALL_NS, |t| t.wall_ns)
        .col(MEM_TOTAL_BYTES, |t| t.system.mem_total_bytes)
        .col(MEM_AVAILABLE_BYTES, |t| t.system.mem_available_bytes)
        .col(SWAP_TOTAL_BYTES, |t| t.system.swap_total_bytes)
        .col(SWAP_FREE_BYTES, |t| t.system.swap_free_bytes)
        .col(PSI_SOME_AVG10, |t| t.system.psi_some_avg10)
        .col(PSI_FULL_AVG10, |t| t.system.psi_full_avg10)
        .col(PSI_SOME_TOTAL_US, |t| t.system.psi_some_total_us)
        .col(PSI_FULL_TOTAL_US, |t| t.system.psi_full_total_us)
        .col(HARNESS_RSS_BYTES, |t| t.system.harness_rss_bytes)
        .col(CGROUP_LIMIT_BYTES, |t| t.system.cgroup_limit_bytes)
        .col(CGROUP_USAGE_BYTES, |t| t.system.cgroup_usage_bytes)
        .col(CGROUP_WORKING_SET_BYTES, |t| {
            t.system.cgroup_working_set_bytes
        })
        .col(CGROUP_OOM, |t| t.system.cgroup_oom)
        .col(CGROUP_OOM_KILL, |t| t.system.cgroup_oom_kill)
        .col(CGROUP_FAILCNT, |t| t.system.cgroup_failcnt)
        .col(CGROUP_PSI_FULL_AVG10, |t| t.system.cgroup_psi_full_avg10)
        .col(SHM_BYTES, |t| t.system.shm_bytes)
        .col(SHM_FILES, |t| t.system.shm_files)
        .col(OUTSIDE_TREES_BYTES, |t| t.system.outside_trees_bytes)
        .frame()
}

/// One row per GPU device per tick.
pub(crate) fn gpu_frame(ticks: &[Tick]) -> PolarsResult<DataFrame> {
    let rows = per_tick(ticks, |t| &t.gpus);
    Table::of(&rows)
        .col(T_NS, |r| r.0)
        .col(DEVICE, |r| r.1.device)
        .col(USED_BYTES, |r| r.1.used_bytes)
        .col(TOTAL_BYTES, |r| r.1.total_bytes)
        .col(UTILIZATION_PERCENT, |r| r.1.utilization_percent)
        .frame()
}

/// One row per worker with a cgroup of its own per tick (FORMAT.md `cgroups-N.parquet`).
pub(crate) fn cgroups_frame(ticks: &[Tick]) -> PolarsResult<DataFrame> {
    let rows = per_tick(ticks, |t| &t.cgroups);
    Table::of(&rows)
        .col(T_NS, |r| r.0)
        .col(WORKER, |r| r.1.worker)
        .col(LIMIT_BYTES, |r| r.1.limit_bytes)
        .col(USAGE_BYTES, |r| r.1.usage_bytes)
        .col(ANON_BYTES, |r| r.1.anon_bytes)
        .col(FILE_BYTES, |r| r.1.file_bytes)
        .col(SHMEM_BYTES, |r| r.1.shmem_bytes)
        .col(KERNEL_BYTES, |r| r.1.kernel_bytes)
        .col(SOCK_BYTES, |r| r.1.sock_bytes)
        .col(MAPPED_FILE_BYTES, |r| r.1.mapped_file_bytes)
        .col(OOM, |r| r.1.oom)
        .col(OOM_KILL, |r| r.1.oom_kill)
        .col(FAILCNT, |r| r.1.failcnt)
        .col(HIGH, |r| r.1.high)
        .col(MAX, |r| r.1.max)
        .col(PSI_FULL_TOTAL_US, |r| r.1.psi_full_total_us)
        .frame()
}

pub(crate) fn smaps_frame(snapshots: &[SmapsSnapshot]) -> PolarsResult<DataFrame> {
    let rows: Vec<(&SmapsSnapshot, &Mapping)> = snapshots
        .iter()
        .flat_map(|s| s.mappings.iter().map(move |m| (s, m)))
        .collect();
    Table::of(&rows)
        .col(T_NS, |(s, _)| s.t_ns)
        .col(WORKER, |(s, _)| s.worker)
        .col(PID, |(s, _)| s.pid)
        .col(TRIAL, |(s, _)| s.trial.clone())
        .col(BOUNDARY, |(s, _)| match s.boundary {
            Boundary::TrialStart => "trial_start",
            Boundary::TrialEnd => "trial_end",
        })
        .col(MAPPING, |(_, m)| m.name.as_str())
        .col(START, |(_, m)| m.start)
        .col(REGIONS, |(_, m)| m.regions)
        .col(SIZE, |(_, m)| m.size)
        .col(RSS, |(_, m)| m.rss)
        .col(PSS, |(_, m)| m.pss)
        .col(PRIVATE, |(_, m)| m.private)
        .col(ANONYMOUS, |(_, m)| m.anonymous)
        .col(SWAP, |(_, m)| m.swap)
        .frame()
}

/// One event as the events table holds it: the fields every event has in columns of their
/// own, the rest as JSON in `detail`.
struct EventRow {
    kind: String,
    trial: Option<String>,
    pid: Option<i32>,
    detail: String,
}

impl EventRow {
    fn of(event: &Event) -> Self {
        let mut value = serde_json::to_value(event).unwrap_or_default();
        let take = |key: &str| value.as_object().and_then(|o| o.get(key).cloned());
        let (kind, trial, pid) = (take(KIND), take(TRIAL), take(PID));
        if let Some(object) = value.as_object_mut() {
            for key in [KIND, TRIAL, PID, T_NS, WALL_NS, WORKER] {
                object.remove(key);
            }
        }
        EventRow {
            kind: kind
                .and_then(|k| k.as_str().map(str::to_owned))
                .unwrap_or_default(),
            trial: trial.and_then(|k| k.as_str().map(str::to_owned)),
            pid: pid.and_then(|k| k.as_i64()).map(|p| p as i32),
            detail: value.to_string(),
        }
    }
}

pub(crate) fn events_frame(events: &[Event]) -> PolarsResult<DataFrame> {
    let rows: Vec<(&Event, EventRow)> = events.iter().map(|e| (e, EventRow::of(e))).collect();
    Table::of(&rows)
        .col(T_NS, |(e, _)| e.t_ns)
        .col(WALL_NS, |(e, _)| e.wall_ns)
        .col(WORKER, |(e, _)| e.worker)
        .col(KIND, |(_, r)| r.kind.as_str())
        .col(TRIAL, |(_, r)| r.trial.as_deref())
        .col(PID, |(_, r)| r.pid)
        .col(DETAIL, |(_, r)| r.detail.as_str())
        .frame()
}

/// One row per allocation site of each Python tracer report (`--trace-python`).
pub(crate) fn sites_frame(events: &[Event]) -> PolarsResult<DataFrame> {
    let rows: Vec<(&Event, &super::PythonSites, &super::PythonSite)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PythonSites(report) => Some((e, report.as_ref())),
            _ => None,
        })
        .flat_map(|(e, report)| report.sites.iter().map(move |site| (e, report, site)))
        .collect();
    Table::of(&rows)
        .col(T_NS, |r| r.0.t_ns)
        .col(WORKER, |r| r.0.worker)
        .col(PID, |r| r.1.pid)
        .col(TRIAL, |r| r.1.trial.as_str())
        .col(EPOCH, |r| r.1.epoch)
        .col(MEMORY, |r| match r.1.memory {
            super::SiteMemory::PythonHeap => "python_heap",
            super::SiteMemory::Gpu => "gpu",
            super::SiteMemory::Native => "native",
        })
        .col(FILE, |r| r.2.file.as_str())
        .col(LINE, |r| r.2.line)
        .col(BYTES, |r| r.2.bytes)
        .col(BLOCKS, |r| r.2.blocks)
        .col(VIA, |r| r.2.via.as_deref())
        .col(STUDY, |r| r.2.study)
        .col(COST_MS, |r| r.1.cost_ms)
        .frame()
}

/// One trial of one worker, assembled from its start and end events.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub worker: u32,
    pub trial: super::events::Short,
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    /// `complete`, `pruned`, `failed`, ... or `running` when the recording ended first.
    pub state: super::events::Short,
    pub value: Option<serde_json::Value>,
    pub params: super::events::Params,
    /// Memory read at the end line (see `EventKind::TrialEnd`).
    pub end_memory: Option<crate::recording::EndMemory>,
}

/// Every pid recorded for a worker (its main processes and every process seen in its tree),
/// to match pids found elsewhere (kernel OOM kills) to workers.
pub fn worker_pids(events: &[Event]) -> std::collections::BTreeMap<i32, u32> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::WorkerStart { pid, .. } | EventKind::ProcessSeen { pid, .. } => {
                Some((pid, e.worker?))
            }
            _ => None,
        })
        .collect()
}

/// Pairs trial starts and ends per worker (see `pair_trials`), each trial owning its fields.
pub fn trials_from_events(events: &[Event]) -> Vec<Trial> {
    super::trial_events::pair_trials(events)
        .iter()
        .map(|t| Trial {
            worker: t.worker,
            trial: t.trial().clone(),
            start_ns: t.start_ns(),
            end_ns: t.end_ns(),
            state: t.state().into(),
            value: t.value().cloned(),
            params: t.params().cloned().unwrap_or_default(),
            end_memory: t.end_memory(),
        })
        .collect()
}

/// Parameters that get a `param_<name>` column of their own, at most: those most trials have
/// (then by name). Every parameter stays in the `params` column's JSON.
pub const PARAM_COLUMNS: usize = 256;

pub(crate) fn trials_frame(trials: &[Trial]) -> PolarsResult<DataFrame> {
    let mut counts: std::collections::BTreeMap<&super::events::Short, usize> = Default::default();
    for name in trials.iter().flat_map(|t| t.params.keys()) {
        *counts.entry(name).or_default() += 1;
    }
    let mut ranked: Vec<(&super::events::Short, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let names: BTreeSet<&super::events::Short> = ranked
        .into_iter()
        .take(PARAM_COLUMNS)
        .map(|(name, _)| name)
        .collect();
    let table = Table::of(trials)
        .col(WORKER, |t| t.worker)
        .col(TRIAL, |t| t.trial.as_str())
        .col(START_NS, |t| t.start_ns)
        .col(END_NS, |t| t.end_ns)
        .col(STATE, |t| t.state.as_str())
        .col(VALUE, |t| t.value.as_ref().map(plain_text))
        .col(PARAMS, |t| {
            serde_json::to_string(&t.params).unwrap_or_default()
        });
    names
        .into_iter()
        .fold(table, |table, name| {
            table.col(&format!("param_{name}"), |t| {
                t.params.get(name).map(plain_text)
            })
        })
        .frame()
}

/// A JSON value as a person writes it: strings without quotes.
fn plain_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod format_tests;
