//! Records to tidy polars tables. Compaction and reading share these functions, so a compacted
//! segment and a raw one always give the same columns.

use super::events::{Event, EventKind};
use super::schema::{SmapsSnapshot, Tick};
use crate::frames::prelude::*;
use std::collections::BTreeSet;

pub(crate) fn samples_frame(ticks: &[Tick]) -> PolarsResult<DataFrame> {
    let rows = ticks
        .iter()
        .flat_map(|t| t.processes.iter().map(move |p| (t.t_ns, p)));
    let n = ticks.iter().map(|t| t.processes.len()).sum();
    let mut t_ns = Vec::with_capacity(n);
    let (mut worker, mut pid) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let [mut rss, mut anon, mut file, mut shmem, mut swap] =
        std::array::from_fn(|_| Vec::<u64>::with_capacity(n));
    let [mut pss, mut uss, mut gpu] = std::array::from_fn(|_| Vec::<Option<u64>>::with_capacity(n));
    for (t, p) in rows {
        t_ns.push(t);
        worker.push(p.worker);
        pid.push(p.pid);
        rss.push(p.rss);
        pss.push(p.pss);
        uss.push(p.uss);
        anon.push(p.anon);
        file.push(p.file);
        shmem.push(p.shmem);
        swap.push(p.swap);
        gpu.push(p.gpu);
    }
    DataFrame::new(
        n,
        vec![
            Column::new("t_ns".into(), t_ns),
            Column::new("worker".into(), worker),
            Column::new("pid".into(), pid),
            Column::new("rss".into(), rss),
            Column::new("pss".into(), pss),
            Column::new("uss".into(), uss),
            Column::new("anon".into(), anon),
            Column::new("file".into(), file),
            Column::new("shmem".into(), shmem),
            Column::new("swap".into(), swap),
            Column::new("gpu".into(), gpu),
        ],
    )
}

pub(crate) fn system_frame(ticks: &[Tick]) -> PolarsResult<DataFrame> {
    let s = |f: fn(&Tick) -> u64| ticks.iter().map(f).collect::<Vec<u64>>();
    let psi = |f: fn(&Tick) -> Option<f32>| ticks.iter().map(f).collect::<Vec<_>>();
    let total = |f: fn(&Tick) -> Option<u64>| ticks.iter().map(f).collect::<Vec<_>>();
    DataFrame::new(
        ticks.len(),
        vec![
            Column::new("t_ns".into(), s(|t| t.t_ns)),
            Column::new("wall_ns".into(), s(|t| t.wall_ns)),
            Column::new("mem_total".into(), s(|t| t.system.mem_total_bytes)),
            Column::new("mem_available".into(), s(|t| t.system.mem_available_bytes)),
            Column::new("swap_total".into(), s(|t| t.system.swap_total_bytes)),
            Column::new("swap_free".into(), s(|t| t.system.swap_free_bytes)),
            Column::new("psi_some_avg10".into(), psi(|t| t.system.psi_some_avg10)),
            Column::new("psi_full_avg10".into(), psi(|t| t.system.psi_full_avg10)),
            Column::new(
                "psi_some_total_us".into(),
                total(|t| t.system.psi_some_total_us),
            ),
            Column::new(
                "psi_full_total_us".into(),
                total(|t| t.system.psi_full_total_us),
            ),
            Column::new("harness_rss".into(), s(|t| t.system.harness_rss_bytes)),
            Column::new(
                "cgroup_limit".into(),
                total(|t| t.system.cgroup_limit_bytes),
            ),
            Column::new(
                "cgroup_usage".into(),
                total(|t| t.system.cgroup_usage_bytes),
            ),
            Column::new(
                "cgroup_working_set".into(),
                total(|t| t.system.cgroup_working_set_bytes),
            ),
            Column::new("cgroup_oom".into(), total(|t| t.system.cgroup_oom)),
            Column::new(
                "cgroup_oom_kill".into(),
                total(|t| t.system.cgroup_oom_kill),
            ),
            Column::new("cgroup_failcnt".into(), total(|t| t.system.cgroup_failcnt)),
            Column::new(
                "cgroup_psi_full_avg10".into(),
                psi(|t| t.system.cgroup_psi_full_avg10),
            ),
            Column::new("shm_bytes".into(), total(|t| t.system.shm_bytes)),
            Column::new("shm_files".into(), total(|t| t.system.shm_files)),
            Column::new(
                "outside_trees".into(),
                total(|t| t.system.outside_trees_bytes),
            ),
        ],
    )
}

/// One row per GPU device per tick.
pub(crate) fn gpu_frame(ticks: &[Tick]) -> PolarsResult<DataFrame> {
    let rows: Vec<(u64, &crate::recording::GpuDeviceSample)> = ticks
        .iter()
        .flat_map(|t| t.gpus.iter().map(move |g| (t.t_ns, g)))
        .collect();
    DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "t_ns".into(),
                rows.iter().map(|r| r.0).collect::<Vec<u64>>(),
            ),
            Column::new(
                "device".into(),
                rows.iter().map(|r| r.1.device).collect::<Vec<u32>>(),
            ),
            Column::new(
                "used".into(),
                rows.iter().map(|r| r.1.used_bytes).collect::<Vec<u64>>(),
            ),
            Column::new(
                "total".into(),
                rows.iter().map(|r| r.1.total_bytes).collect::<Vec<u64>>(),
            ),
            Column::new(
                "utilization".into(),
                rows.iter()
                    .map(|r| r.1.utilization_percent)
                    .collect::<Vec<Option<u32>>>(),
            ),
        ],
    )
}

/// One row per worker with a cgroup of its own per tick (FORMAT.md `cgroups-N.parquet`).
pub(crate) fn cgroups_frame(ticks: &[Tick]) -> PolarsResult<DataFrame> {
    use crate::recording::WorkerCgroupSample as C;
    let rows: Vec<(u64, &C)> = ticks
        .iter()
        .flat_map(|t| t.cgroups.iter().map(move |c| (t.t_ns, c)))
        .collect();
    let some = |name: &str, f: fn(&C) -> Option<u64>| {
        Column::new(
            name.into(),
            rows.iter().map(|r| f(r.1)).collect::<Vec<Option<u64>>>(),
        )
    };
    DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "t_ns".into(),
                rows.iter().map(|r| r.0).collect::<Vec<u64>>(),
            ),
            Column::new(
                "worker".into(),
                rows.iter().map(|r| r.1.worker).collect::<Vec<u32>>(),
            ),
            some("limit", |c| c.limit_bytes),
            Column::new(
                "usage".into(),
                rows.iter().map(|r| r.1.usage_bytes).collect::<Vec<u64>>(),
            ),
            some("anon", |c| c.anon_bytes),
            some("file", |c| c.file_bytes),
            some("shmem", |c| c.shmem_bytes),
            some("kernel", |c| c.kernel_bytes),
            some("sock", |c| c.sock_bytes),
            some("mapped_file", |c| c.mapped_file_bytes),
            some("oom", |c| c.oom),
            some("oom_kill", |c| c.oom_kill),
            some("failcnt", |c| c.failcnt),
            some("high", |c| c.high),
            some("max", |c| c.max),
            some("psi_full_total_us", |c| c.psi_full_total_us),
        ],
    )
}

pub(crate) fn smaps_frame(snapshots: &[SmapsSnapshot]) -> PolarsResult<DataFrame> {
    let rows: Vec<_> = snapshots
        .iter()
        .flat_map(|s| s.mappings.iter().map(move |m| (s, m)))
        .collect();
    let u = |f: fn(&crate::recording::Mapping) -> u64| {
        rows.iter().map(|(_, m)| f(m)).collect::<Vec<_>>()
    };
    DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "t_ns".into(),
                rows.iter().map(|(s, _)| s.t_ns).collect::<Vec<_>>(),
            ),
            Column::new(
                "worker".into(),
                rows.iter().map(|(s, _)| s.worker).collect::<Vec<_>>(),
            ),
            Column::new(
                "pid".into(),
                rows.iter().map(|(s, _)| s.pid).collect::<Vec<_>>(),
            ),
            Column::new(
                "trial".into(),
                rows.iter()
                    .map(|(s, _)| s.trial.clone())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "boundary".into(),
                rows.iter()
                    .map(|(s, _)| match s.boundary {
                        super::Boundary::TrialStart => "trial_start",
                        super::Boundary::TrialEnd => "trial_end",
                    })
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "mapping".into(),
                rows.iter()
                    .map(|(_, m)| m.name.as_str())
                    .collect::<Vec<_>>(),
            ),
            Column::new("start".into(), u(|m| m.start)),
            Column::new(
                "regions".into(),
                rows.iter().map(|(_, m)| m.regions).collect::<Vec<_>>(),
            ),
            Column::new("size".into(), u(|m| m.size)),
            Column::new("rss".into(), u(|m| m.rss)),
            Column::new("pss".into(), u(|m| m.pss)),
            Column::new("private".into(), u(|m| m.private)),
            Column::new("anonymous".into(), u(|m| m.anonymous)),
            Column::new("swap".into(), u(|m| m.swap)),
        ],
    )
}

pub(crate) fn events_frame(events: &[Event]) -> PolarsResult<DataFrame> {
    let mut detail = Vec::with_capacity(events.len());
    let mut trial = Vec::with_capacity(events.len());
    let mut pid = Vec::with_capacity(events.len());
    let mut kind = Vec::with_capacity(events.len());
    for event in events {
        let mut value = serde_json::to_value(event).unwrap_or_default();
        let object = value.as_object_mut();
        let take = |key: &str| object.as_ref().and_then(|o| o.get(key).cloned());
        kind.push(
            take("kind")
                .and_then(|k| k.as_str().map(str::to_owned))
                .unwrap_or_default(),
        );
        trial.push(take("trial").and_then(|k| k.as_str().map(str::to_owned)));
        pid.push(take("pid").and_then(|k| k.as_i64()).map(|p| p as i32));
        if let Some(object) = value.as_object_mut() {
            for key in ["kind", "trial", "pid", "t_ns", "wall_ns", "worker"] {
                object.remove(key);
            }
        }
        detail.push(value.to_string());
    }
    DataFrame::new(
        events.len(),
        vec![
            Column::new(
                "t_ns".into(),
                events.iter().map(|e| e.t_ns).collect::<Vec<_>>(),
            ),
            Column::new(
                "wall_ns".into(),
                events.iter().map(|e| e.wall_ns).collect::<Vec<_>>(),
            ),
            Column::new(
                "worker".into(),
                events.iter().map(|e| e.worker).collect::<Vec<_>>(),
            ),
            Column::new("kind".into(), kind),
            Column::new("trial".into(), trial),
            Column::new("pid".into(), pid),
            Column::new("detail".into(), detail),
        ],
    )
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
    DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "t_ns".into(),
                rows.iter().map(|r| r.0.t_ns).collect::<Vec<_>>(),
            ),
            Column::new(
                "worker".into(),
                rows.iter().map(|r| r.0.worker).collect::<Vec<_>>(),
            ),
            Column::new(
                "pid".into(),
                rows.iter().map(|r| r.1.pid).collect::<Vec<_>>(),
            ),
            Column::new(
                "trial".into(),
                rows.iter().map(|r| r.1.trial.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "epoch".into(),
                rows.iter().map(|r| r.1.epoch).collect::<Vec<_>>(),
            ),
            Column::new(
                "memory".into(),
                rows.iter()
                    .map(|r| match r.1.memory {
                        super::SiteMemory::PythonHeap => "python_heap",
                        super::SiteMemory::Gpu => "gpu",
                    })
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "file".into(),
                rows.iter().map(|r| r.2.file.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "line".into(),
                rows.iter().map(|r| r.2.line).collect::<Vec<_>>(),
            ),
            Column::new(
                "bytes".into(),
                rows.iter().map(|r| r.2.bytes).collect::<Vec<_>>(),
            ),
            Column::new(
                "blocks".into(),
                rows.iter().map(|r| r.2.blocks).collect::<Vec<_>>(),
            ),
            Column::new(
                "via".into(),
                rows.iter().map(|r| r.2.via.as_deref()).collect::<Vec<_>>(),
            ),
            Column::new(
                "study".into(),
                rows.iter().map(|r| r.2.study).collect::<Vec<_>>(),
            ),
            Column::new(
                "cost_ms".into(),
                rows.iter().map(|r| r.1.cost_ms).collect::<Vec<_>>(),
            ),
        ],
    )
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
    let mut columns = vec![
        Column::new(
            "worker".into(),
            trials.iter().map(|t| t.worker).collect::<Vec<_>>(),
        ),
        Column::new(
            "trial".into(),
            trials.iter().map(|t| t.trial.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "start_ns".into(),
            trials.iter().map(|t| t.start_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "end_ns".into(),
            trials.iter().map(|t| t.end_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "state".into(),
            trials.iter().map(|t| t.state.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "value".into(),
            trials
                .iter()
                .map(|t| t.value.as_ref().map(plain_text))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "params".into(),
            trials
                .iter()
                .map(|t| serde_json::to_string(&t.params).unwrap_or_default())
                .collect::<Vec<_>>(),
        ),
    ];
    for name in names {
        let values: Vec<Option<String>> = trials
            .iter()
            .map(|t| t.params.get(name).map(plain_text))
            .collect();
        columns.push(Column::new(format!("param_{name}").into(), values));
    }
    DataFrame::new(trials.len(), columns)
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
