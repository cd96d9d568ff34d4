//! The tables `publish` draws from a run rather than copies: `runs` (one row, from the manifest
//! and the verdict), `findings` (one row per worker) and `parameters` (one row per parameter
//! value tested). Pure: a recording's manifest, events and findings in, frames out.

use crate::analysis::{Findings, Rate, WorkerFinding};
use crate::frames::prelude::*;
use crate::live::LiveStatus;
use crate::recording::columns::Table;
use crate::recording::layout::{columns as column, LAYOUT_VERSION};
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
    let run = [()];
    Table::of(&run)
        .col("layout_version", |_| LAYOUT_VERSION)
        .col("format_version", |_| m.format_version)
        .col("memwarden_version", |_| m.memwarden_version.as_str())
        .col("run_dir", |_| run_dir.display().to_string())
        .col("mode", |_| m.mode.as_str())
        .col("status", |_| status_word(m))
        .col("end_reason", |_| m.end_reason.clone())
        .col("command", |_| m.command.join(" "))
        .col("workers", |_| m.workers)
        .col("boot_id", |_| m.boot_id.as_str())
        .col("kernel", |_| m.kernel.as_str())
        .col(column::START, |_| m.start_rfc3339.as_str())
        .col(column::START_WALL_NS, |_| m.start_wall_ns)
        .col("end_wall_ns", |_| end)
        .col("duration_s", |_| {
            end.map(|e| e.saturating_sub(m.start_wall_ns) as f64 / 1e9)
        })
        .col("interval_ns", |_| m.interval_ns)
        .col("memory_limit_bytes", |_| {
            m.memory_cgroup.as_ref().and_then(|c| c.limit_bytes)
        })
        .col(column::STUDY, |_| study.clone())
        .col("slurm_job_id", |_| o.slurm_job_id.clone())
        .col("slurm_array_job_id", |_| o.slurm_array_job_id.clone())
        .col("slurm_array_task_id", |_| o.slurm_array_task_id.clone())
        .col("kubernetes_namespace", |_| o.kubernetes_namespace.clone())
        .col("kubernetes_pod", |_| o.kubernetes_pod.clone())
        .col(column::VERDICT, |_| {
            findings.map(|f| f.verdict.word().to_string())
        })
        .col("leaking_workers", |_| leaking)
        .col("trials", |_| findings.map(|f| f.run.trials as u64))
        // What reading the run directory skipped, so a published run says so as its directory did.
        .col(column::DAMAGED_RECORDS, |_| skipped.garbled_records as u64)
        .col(column::TORN_TAIL_BYTES, |_| skipped.torn_tail_bytes as u64)
        .col(column::MANIFEST_JSON, |_| {
            serde_json::to_string(m).expect("bug: a manifest always serializes")
        })
        .frame()
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
    let rate = |w: &WorkerFinding| w.kind_finding(w.kind).and_then(|k| k.per_trial);
    let hourly = |w: &WorkerFinding| w.kind_finding(w.kind).and_then(|k| k.per_hour);
    let of = |f: fn(&Rate) -> f64, r: Option<Rate>| r.as_ref().map(f);
    let count = |w: &WorkerFinding, f: fn(&Counts) -> u64| counts.get(&w.worker).map_or(0, f);
    Table::of(&findings.workers)
        .col(column::WORKER, |w| w.worker)
        .col(column::VERDICT, |w| w.verdict.word())
        .col(column::KIND, |w| w.kind.name())
        .col("basis", |w| match w.basis {
            crate::analysis::Basis::Trials => "trials",
            crate::analysis::Basis::Time => "time",
        })
        .col(column::PER_TRIAL_BYTES, |w| of(|r| r.bytes, rate(w)))
        .col(column::PER_TRIAL_LOW_BYTES, |w| {
            of(|r| r.low_bytes, rate(w))
        })
        .col(column::PER_TRIAL_HIGH_BYTES, |w| {
            of(|r| r.high_bytes, rate(w))
        })
        .col(column::PER_HOUR_BYTES, |w| of(|r| r.bytes, hourly(w)))
        .col("per_hour_low_bytes", |w| of(|r| r.low_bytes, hourly(w)))
        .col("per_hour_high_bytes", |w| of(|r| r.high_bytes, hourly(w)))
        .col("confidence", |w| {
            w.kind_finding(w.kind).map(|k| k.confidence)
        })
        .col("growth_bytes", |w| {
            w.kind_finding(w.kind).map(|k| k.growth_bytes)
        })
        .col(column::FIRST_CLEAR_TRIAL, |w| {
            w.kind_finding(w.kind)
                .and_then(|k| k.first_clear_trial.clone())
        })
        .col("trials", |w| w.trials as u64)
        .col(column::CRASH_RESTARTS, |w| count(w, |c| c.crash_restarts))
        .col(column::POLICY_RESTARTS, |w| count(w, |c| c.policy_restarts))
        .col(column::OOM_KILLS, |w| count(w, |c| c.oom_kills))
        .col("process", |w| w.process.as_ref().map(|p| p.command.clone()))
        .col("mapping", |w| w.mappings.first().map(|m| m.name.clone()))
        .col(column::SITE, |w| {
            w.top_site().map(|s| format!("{}:{}", s.file, s.line))
        })
        .col(column::SITE_CODE, |w| {
            w.top_site().and_then(|s| s.code.clone())
        })
        .col("site_per_trial_bytes", |w| {
            w.top_site().map(|s| s.per_trial.bytes)
        })
        .col("mechanisms", mechanisms)
        .frame()
}

/// The named mechanisms of a worker's diagnoses, comma-separated.
fn mechanisms(w: &WorkerFinding) -> Option<String> {
    let names: Vec<String> = w
        .diagnoses
        .iter()
        .filter_map(|d| {
            let value = serde_json::to_value(d).ok()?;
            Some(value["mechanism"].as_str()?.to_string())
        })
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

pub fn parameters_frame(findings: &Findings) -> PolarsResult<DataFrame> {
    Table::of(&findings.parameters)
        .col(column::NAME, |p| p.name.as_str())
        .col(column::VALUE, |p| p.value.clone())
        .col(column::EFFECT_BYTES, |p| p.effect_bytes)
        .col("effect_low_bytes", |p| p.effect_low_bytes)
        .col("effect_high_bytes", |p| p.effect_high_bytes)
        .col("with_bytes", |p| p.with_bytes)
        .col("without_bytes", |p| p.without_bytes)
        .col("trials_with", |p| p.trials_with as u64)
        .col("trials_without", |p| p.trials_without as u64)
        .col("rho", |p| p.rho)
        .col("p_value", |p| p.p_value)
        .col(column::SIGNIFICANT, |p| p.significant)
        .frame()
}

/// The run's value in the `status` column.
fn status_word(manifest: &crate::recording::Manifest) -> &'static str {
    match manifest.status {
        crate::recording::RunStatus::Finished => "finished",
        crate::recording::RunStatus::Running => "ended abruptly",
    }
}
