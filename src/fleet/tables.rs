//! The tables `publish` draws from a run rather than copies: `runs` (one row, from the manifest
//! and the verdict), `findings` (one row per worker) and `parameters` (one row per parameter
//! value tested). Pure: a recording's manifest, events and findings in, frames out.

use crate::analysis::{Findings, Rate, WorkerFinding};
use crate::frames::prelude::*;
use crate::live::LiveStatus;
use crate::recording::layout::LAYOUT_VERSION;
use crate::recording::Recording;
use std::collections::BTreeMap;
use std::path::Path;

pub fn runs_frame(
    recording: &Recording,
    findings: Option<&Findings>,
    run_dir: &Path,
    study: &Option<String>,
    skipped: crate::recording::ReadStats,
) -> PolarsResult<DataFrame> {
    let m = &recording.manifest;
    let o = m.orchestrator.clone().unwrap_or_default();
    let end = m.end_wall_ns.or_else(|| {
        // An abrupt end: the last thing recorded.
        recording.events.last().map(|e| e.wall_ns)
    });
    let leaking = findings.map_or(0, |f| {
        f.workers
            .iter()
            .filter(|w| w.verdict == crate::analysis::Verdict::Leak)
            .count() as u32
    });
    let text = |v: Option<String>| Column::new("".into(), [v]);
    let named = |name: &str, c: Column| c.with_name(name.into());
    df_of(vec![
        Column::new("layout_version".into(), [LAYOUT_VERSION]),
        Column::new("format_version".into(), [m.format_version]),
        Column::new("memwarden_version".into(), [m.memwarden_version.as_str()]),
        Column::new("run_dir".into(), [run_dir.display().to_string()]),
        Column::new("mode".into(), [m.mode.as_str()]),
        Column::new("status".into(), [status_word(m)]),
        named("end_reason", text(m.end_reason.clone())),
        Column::new("command".into(), [m.command.join(" ")]),
        Column::new("workers".into(), [m.workers]),
        Column::new("boot_id".into(), [m.boot_id.as_str()]),
        Column::new("kernel".into(), [m.kernel.as_str()]),
        Column::new("start".into(), [m.start_rfc3339.as_str()]),
        Column::new("start_wall_ns".into(), [m.start_wall_ns]),
        Column::new("end_wall_ns".into(), [end]),
        Column::new(
            "duration_s".into(),
            [end.map(|e| e.saturating_sub(m.start_wall_ns) as f64 / 1e9)],
        ),
        Column::new("interval_ns".into(), [m.interval_ns]),
        Column::new(
            "memory_limit_bytes".into(),
            [m.memory_cgroup.as_ref().and_then(|c| c.limit_bytes)],
        ),
        named("study", text(study.clone())),
        named("slurm_job_id", text(o.slurm_job_id)),
        named("slurm_array_job_id", text(o.slurm_array_job_id)),
        named("slurm_array_task_id", text(o.slurm_array_task_id)),
        named("kubernetes_namespace", text(o.kubernetes_namespace)),
        named("kubernetes_pod", text(o.kubernetes_pod)),
        named(
            "verdict",
            text(findings.map(|f| f.verdict.word().to_string())),
        ),
        Column::new("leaking_workers".into(), [leaking]),
        Column::new("trials".into(), [findings.map(|f| f.run.trials as u64)]),
        // What reading the run directory skipped, so a published run says so as its directory did.
        Column::new("damaged_records".into(), [skipped.garbled_records as u64]),
        Column::new("torn_tail_bytes".into(), [skipped.torn_tail_bytes as u64]),
        Column::new(
            "manifest_json".into(),
            [serde_json::to_string(m).expect("bug: a manifest always serializes")],
        ),
    ])
}

/// Per worker: restarts by reason and OOM kills, as the live view counts them.
struct Counts {
    crash_restarts: u64,
    policy_restarts: u64,
    oom_kills: u64,
}

fn counts(recording: &Recording, findings: &Findings) -> BTreeMap<u32, Counts> {
    let mut status = LiveStatus::default();
    for event in &recording.events {
        status.event(event);
    }
    let mut out = BTreeMap::new();
    for w in &findings.workers {
        let live = status.workers.get(&w.worker);
        let restarts = |reason| {
            live.and_then(|l| l.restarts_by_reason.get(reason).copied())
                .unwrap_or(0)
        };
        let oom_kills = findings.oom_kills.as_ref().map_or(0, |o| {
            o.kills
                .iter()
                .filter(|k| k.worker == Some(w.worker))
                .count() as u64
        });
        out.insert(
            w.worker,
            Counts {
                crash_restarts: restarts("crash"),
                policy_restarts: restarts("policy"),
                oom_kills,
            },
        );
    }
    out
}

pub fn findings_frame(recording: &Recording, findings: &Findings) -> PolarsResult<DataFrame> {
    let counts = counts(recording, findings);
    let ws = &findings.workers;
    let rate = |w: &WorkerFinding| w.kind_finding(w.kind).and_then(|k| k.per_trial);
    let hourly = |w: &WorkerFinding| w.kind_finding(w.kind).and_then(|k| k.per_hour);
    let of = |f: fn(&Rate) -> f64, r: Option<Rate>| r.as_ref().map(f);
    let strings =
        |f: &dyn Fn(&WorkerFinding) -> Option<String>| ws.iter().map(f).collect::<Vec<_>>();
    let floats = |f: &dyn Fn(&WorkerFinding) -> Option<f64>| ws.iter().map(f).collect::<Vec<_>>();
    let count = |f: fn(&Counts) -> u64| {
        ws.iter()
            .map(|w| counts.get(&w.worker).map_or(0, f))
            .collect::<Vec<_>>()
    };
    df_of(vec![
        Column::new(
            "worker".into(),
            ws.iter().map(|w| w.worker).collect::<Vec<_>>(),
        ),
        Column::new(
            "verdict".into(),
            ws.iter().map(|w| w.verdict.word()).collect::<Vec<_>>(),
        ),
        Column::new(
            "kind".into(),
            ws.iter().map(|w| w.kind.name()).collect::<Vec<_>>(),
        ),
        Column::new(
            "basis".into(),
            ws.iter()
                .map(|w| match w.basis {
                    crate::analysis::Basis::Trials => "trials",
                    crate::analysis::Basis::Time => "time",
                })
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "per_trial_bytes".into(),
            floats(&|w| of(|r| r.bytes, rate(w))),
        ),
        Column::new(
            "per_trial_low_bytes".into(),
            floats(&|w| of(|r| r.low_bytes, rate(w))),
        ),
        Column::new(
            "per_trial_high_bytes".into(),
            floats(&|w| of(|r| r.high_bytes, rate(w))),
        ),
        Column::new(
            "per_hour_bytes".into(),
            floats(&|w| of(|r| r.bytes, hourly(w))),
        ),
        Column::new(
            "per_hour_low_bytes".into(),
            floats(&|w| of(|r| r.low_bytes, hourly(w))),
        ),
        Column::new(
            "per_hour_high_bytes".into(),
            floats(&|w| of(|r| r.high_bytes, hourly(w))),
        ),
        Column::new(
            "confidence".into(),
            floats(&|w| w.kind_finding(w.kind).map(|k| k.confidence)),
        ),
        Column::new(
            "growth_bytes".into(),
            floats(&|w| w.kind_finding(w.kind).map(|k| k.growth_bytes)),
        ),
        Column::new(
            "first_clear_trial".into(),
            strings(&|w| {
                w.kind_finding(w.kind)
                    .and_then(|k| k.first_clear_trial.clone())
            }),
        ),
        Column::new(
            "trials".into(),
            ws.iter().map(|w| w.trials as u64).collect::<Vec<_>>(),
        ),
        Column::new("crash_restarts".into(), count(|c| c.crash_restarts)),
        Column::new("policy_restarts".into(), count(|c| c.policy_restarts)),
        Column::new("oom_kills".into(), count(|c| c.oom_kills)),
        Column::new(
            "process".into(),
            strings(&|w| w.process.as_ref().map(|p| p.command.clone())),
        ),
        Column::new(
            "mapping".into(),
            strings(&|w| w.mappings.first().map(|m| m.name.clone())),
        ),
        Column::new(
            "site".into(),
            strings(&|w| w.top_site().map(|s| format!("{}:{}", s.file, s.line))),
        ),
        Column::new(
            "site_code".into(),
            strings(&|w| w.top_site().and_then(|s| s.code.clone())),
        ),
        Column::new(
            "site_per_trial_bytes".into(),
            floats(&|w| w.top_site().map(|s| s.per_trial.bytes)),
        ),
        Column::new(
            "mechanisms".into(),
            strings(&|w| {
                let names: Vec<String> = w
                    .diagnoses
                    .iter()
                    .filter_map(|d| {
                        let value = serde_json::to_value(d).ok()?;
                        Some(value["mechanism"].as_str()?.to_string())
                    })
                    .collect();
                (!names.is_empty()).then(|| names.join(","))
            }),
        ),
    ])
}

pub fn parameters_frame(findings: &Findings) -> PolarsResult<DataFrame> {
    let ps = &findings.parameters;
    df_of(vec![
        Column::new(
            "name".into(),
            ps.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "value".into(),
            ps.iter().map(|p| p.value.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "effect_bytes".into(),
            ps.iter().map(|p| p.effect_bytes).collect::<Vec<_>>(),
        ),
        Column::new(
            "effect_low_bytes".into(),
            ps.iter().map(|p| p.effect_low_bytes).collect::<Vec<_>>(),
        ),
        Column::new(
            "effect_high_bytes".into(),
            ps.iter().map(|p| p.effect_high_bytes).collect::<Vec<_>>(),
        ),
        Column::new(
            "with_bytes".into(),
            ps.iter().map(|p| p.with_bytes).collect::<Vec<_>>(),
        ),
        Column::new(
            "without_bytes".into(),
            ps.iter().map(|p| p.without_bytes).collect::<Vec<_>>(),
        ),
        Column::new(
            "trials_with".into(),
            ps.iter().map(|p| p.trials_with as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "trials_without".into(),
            ps.iter()
                .map(|p| p.trials_without as u64)
                .collect::<Vec<_>>(),
        ),
        Column::new("rho".into(), ps.iter().map(|p| p.rho).collect::<Vec<_>>()),
        Column::new(
            "p_value".into(),
            ps.iter().map(|p| p.p_value).collect::<Vec<_>>(),
        ),
        Column::new(
            "significant".into(),
            ps.iter().map(|p| p.significant).collect::<Vec<_>>(),
        ),
    ])
}

/// The run's value in the `status` column.
fn status_word(manifest: &crate::recording::Manifest) -> &'static str {
    match manifest.status {
        crate::recording::RunStatus::Finished => "finished",
        crate::recording::RunStatus::Running => "ended abruptly",
    }
}

fn df_of(columns: Vec<Column>) -> PolarsResult<DataFrame> {
    let height = columns.first().map_or(0, |c| c.len());
    DataFrame::new(height, columns)
}
