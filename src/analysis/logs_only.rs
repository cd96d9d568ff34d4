//! Findings of a report built from worker logs alone (`report --worker-log` without a
//! recording).

use super::analyze::Analysis;
use super::judge::findings::*;
use super::judge::verdict::Verdict;
use std::collections::BTreeMap;

/// What can be said of trials known only from logs (`report --worker-log` without a recording):
/// no memory was recorded, so there are trials but no verdicts.
pub fn logs_only(
    manifest: &crate::recording::Manifest,
    events: &[crate::recording::Event],
) -> Analysis {
    let trials = crate::recording::trials_from_events(events);
    let mut ordinals: BTreeMap<u32, usize> = BTreeMap::new();
    let records: Vec<TrialRecord> = trials
        .iter()
        .map(|t| {
            let ordinal = ordinals.entry(t.worker).or_default();
            *ordinal += 1;
            TrialRecord {
                worker: t.worker,
                trial: t.trial.clone(),
                ordinal: *ordinal - 1,
                start_ns: t.start_ns,
                end_ns: t.end_ns,
                state: t.state.clone(),
                params: t.params.clone(),
                tree: Default::default(),
                processes: Default::default(),
            }
        })
        .collect();
    let last_ns = events.iter().map(|e| e.t_ns).max();
    let findings = Findings {
        schema_version: SCHEMA_VERSION,
        run: RunSummary {
            dir: String::new(),
            mode: manifest.mode.clone(),
            status: Ending::FromLogs,
            workers: manifest.workers,
            start: manifest.start_rfc3339.clone(),
            duration_s: last_ns.unwrap_or(0) as f64 / 1e9,
            trials_seen: !records.is_empty(),
            trials: records.len(),
            process_samples: 0,
            damaged_records: 0,
        },
        verdict: Verdict::InsufficientData,
        workers: Vec::new(),
        parameters: Vec::new(),
        forecast: None,
        notes: vec!["no memory was recorded: this report is built from logs alone, so it can tell what ran and what the kernel killed, not what leaked".into()],
        trials: records,
        oom_kills: None,
        outside_trees: None,
        sampler_health: Vec::new(),
        boundary_reads: Vec::new(),
        containment: None,
        memory_pressure: false,
    };
    Analysis {
        findings,
        timelines: BTreeMap::new(),
        system: None,
        devices: BTreeMap::new(),
        last_sample_ns: last_ns,
    }
}
