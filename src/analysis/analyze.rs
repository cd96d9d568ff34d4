//! `analyze`: a recording in, findings out (what the module header describes), and the
//! findings of a report built from worker logs alone.

use super::attribution::{locate_holders, locate_mappings, locate_sites};
use super::judge::findings::*;
use super::judge::forecast::{forecast, Machine, WorkerRates};
use super::judge::verdict::{Rules, Verdict};
use super::kind::Kind;
use super::load::coarse_series::Timeline;
use super::load::loaded::Loaded;
use super::load::loaded::SystemSummary;
use super::locate::params::{parameter_effects, TrialGrowth};
use super::measures::*;
use crate::recording::{Recording, RecordingError, RunStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("{0}: the recording holds no samples (it was stopped before its first tick, or its sample files are missing)")]
    NoSamples(PathBuf),
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub rules: Rules,
    /// How far ahead the forecast plans (e.g. a 12-hour soak).
    pub horizon_hours: f64,
    /// The recording is still being written (a soak's checkpoint, a report of a live run): a
    /// `running` manifest is then no crash. The caller tells (`Manifest::still_recording`).
    pub live: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rules: Rules::default(),
            horizon_hours: 12.0,
            live: false,
        }
    }
}

/// Findings plus the bounded time series they came from, for reports and plots.
pub struct Analysis {
    pub findings: Findings,
    /// Per worker, the tree's memory over time.
    pub timelines: BTreeMap<u32, Timeline>,
    pub system: Option<SystemSummary>,
    /// Per GPU device, its memory over time: used in slot 0, total in slot 1.
    pub devices: BTreeMap<u32, Timeline>,
    /// The last sample's time (ns since the start).
    pub last_sample_ns: Option<u64>,
}

/// How far ahead `analyze`, `check` and a run's verdict forecast unless told.
pub const HORIZON: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// Opens the recording (or published run) at `dir` (which refuses a format newer than this
/// memwarden's) and analyses it with the default rules, forecasting `horizon` ahead: what
/// `analyze`, `check`, `diff` and the verdict at a run's end all start from.
pub fn analyze_run(
    dir: &std::path::Path,
    horizon: std::time::Duration,
) -> Result<(Recording, Findings), AnalysisError> {
    let recording = Recording::open(dir)?;
    let options = Options {
        horizon_hours: horizon.as_secs_f64() / 3600.0,
        live: recording.manifest.still_recording(),
        ..Options::default()
    };
    let findings = analyze(&recording, &options)?;
    Ok((recording, findings))
}

pub fn analyze(recording: &Recording, options: &Options) -> Result<Findings, AnalysisError> {
    Ok(analyze_with_series(recording, options)?.findings)
}

pub fn analyze_with_series(
    recording: &Recording,
    options: &Options,
) -> Result<Analysis, AnalysisError> {
    let mut loaded = super::load::read::load(recording)?;
    // Workers that die before their first tick (a crash loop) leave system samples only: still a
    // run to report on.
    if loaded.process_samples == 0 && loaded.system.is_none() {
        return Err(AnalysisError::NoSamples(recording.dir.clone()));
    }
    let rules = &options.rules;
    let worker_ids: BTreeSet<u32> = loaded
        .timelines
        .keys()
        .chain(loaded.trials.keys())
        .copied()
        .collect();
    let mut workers: Vec<WorkerFinding> = worker_ids
        .iter()
        .map(|w| super::judge::worker::worker_finding(*w, &loaded, rules))
        .collect();
    for finding in &mut workers {
        if let Some(diagnosis) =
            super::judge::worker::copy_on_read(finding.worker, &loaded, finding, rules)
        {
            // No one process leaks: naming the main one (or any) would send the reader astray.
            finding.process = None;
            finding.diagnoses.push(diagnosis);
        }
    }
    let located: Vec<(u32, i32)> = workers
        .iter()
        .filter_map(|w| Some((w.worker, w.process.as_ref()?.pid)))
        .collect();
    let mut mappings = super::load::read::mapping_rows(recording, &located)?;
    for finding in &mut workers {
        let rows = finding
            .process
            .as_ref()
            .and_then(|p| mappings.remove(&(finding.worker, p.pid)))
            .unwrap_or_default();
        locate_mappings(finding, &rows);
    }
    let trials_seen = loaded.trials.values().any(|t| !t.is_empty());
    let diagnoses = super::tracer_notes::Diagnoses::read(&recording.events);
    let parameters = parameters(&loaded, &workers, &diagnoses);
    let duration_s = match (loaded.first_ns, loaded.last_ns) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
        _ => 0.0,
    };
    let forecast = machine_forecast(&loaded, &workers, options.horizon_hours, duration_s);
    let verdict = workers
        .iter()
        .map(|w| w.verdict)
        .max_by_key(|v| super::judge::worker::severity(*v))
        .unwrap_or(Verdict::InsufficientData);
    let stats = recording.stats.get();
    let mut notes = run_notes(recording, options, &loaded, trials_seen, &diagnoses);
    let boundary_reads = boundary_reads(&loaded);
    let trials = trial_records(std::mem::take(&mut loaded.trials));
    if super::judge::per_test::repeated(&trials) {
        notes.push("each trial is one repeat of a test (memwarden's pytest plugin): a worker's growth per trial mixes tests of every size; `memwarden check RUN --max-growth SIZE/trial` judges each test on its own repeats".to_string());
    }
    // Holders first: a worker whose tensors have named holders gets no "native memory"
    // hint from the line tracer.
    locate_holders(&mut workers, &recording.events, &trials);
    locate_sites(&mut workers, &recording.events, &trials);
    let oom_kills = oom_kills(recording, &loaded);
    let outside_trees = outside_trees(recording, &loaded);
    let containment = containment(recording, &loaded);
    let findings = Findings {
        schema_version: SCHEMA_VERSION,
        memory_pressure: loaded.system.as_ref().is_some_and(under_pressure),
        containment,
        boundary_reads,
        run: RunSummary {
            dir: recording.dir.display().to_string(),
            mode: recording.manifest.mode.clone(),
            status: match recording.manifest.status {
                RunStatus::Finished => Ending::Finished,
                RunStatus::Running if options.live => Ending::Running,
                RunStatus::Running => Ending::EndedAbruptly,
            },
            workers: recording.manifest.workers,
            start: recording.manifest.start_rfc3339.clone(),
            duration_s,
            trials_seen,
            trials: trials.len(),
            process_samples: loaded.process_samples,
            damaged_records: stats.garbled_records,
        },
        verdict,
        workers,
        parameters,
        forecast,
        notes,
        trials,
        oom_kills,
        outside_trees,
        sampler_health: loaded
            .pss_health
            .iter()
            .map(|(&worker, &pss)| SamplerHealth { worker, pss })
            .collect(),
    };
    Ok(Analysis {
        findings,
        timelines: loaded.timelines,
        system: loaded.system,
        devices: loaded.devices,
        last_sample_ns: loaded.last_ns,
    })
}

/// Retained growth per trial (this trial's retained level minus the previous one's), pooled over
/// the workers that grow (all workers when none does), in each worker's headline kind. A worker
/// that does not grow at all says nothing about which trials make the others grow. The trials
/// of a diagnosis are left out: the tracer's allocations add to theirs.
fn parameters(
    loaded: &Loaded,
    workers: &[WorkerFinding],
    diagnoses: &super::tracer_notes::Diagnoses,
) -> Vec<ParameterFinding> {
    let growing = |w: &&WorkerFinding| matches!(w.verdict, Verdict::Leak | Verdict::Plateau);
    let pooled: Vec<&WorkerFinding> = if workers.iter().any(|w| growing(&w)) {
        workers.iter().filter(growing).collect()
    } else {
        workers.iter().collect()
    };
    let mut growth = Vec::new();
    for finding in pooled {
        let k = finding.kind as usize;
        let Some(trials) = loaded.trials.get(&finding.worker) else {
            continue;
        };
        let restarts = loaded
            .restarts
            .get(&finding.worker)
            .map_or(&[][..], Vec::as_slice);
        let mut previous: Option<(f64, u64)> = None;
        for t in trials {
            let Some(levels) = &t.tree else { continue };
            let (Some(retained), Some(end)) = (levels.retained.get(k), t.trial.end_ns()) else {
                continue;
            };
            // After a restart the previous trial's level is gone: compare with the baseline.
            let restarted = |since: u64| restarts.iter().any(|r| *r > since && *r <= end);
            let before = previous
                .filter(|(_, at)| !restarted(*at))
                .map(|(level, _)| level)
                .or(levels.baseline.get(k));
            // A trial whose start was lost has no parameters to weigh.
            let diagnosed = diagnoses.traced(finding.worker, t.trial.trial());
            if let (Some(before), Some(params), false) = (before, t.trial.params(), diagnosed) {
                growth.push(TrialGrowth {
                    params,
                    growth: retained - before,
                });
            }
            previous = Some((retained, end));
        }
    }
    parameter_effects(&growth)
}

/// `window_s`: how long the run recorded.
fn machine_forecast(
    loaded: &Loaded,
    workers: &[WorkerFinding],
    horizon_hours: f64,
    window_s: f64,
) -> Option<Forecast> {
    let system = loaded.system.as_ref()?;
    let rates: Vec<WorkerRates> = workers
        .iter()
        .filter_map(|w| {
            let summary = w
                .kind_finding(Kind::Pss)
                .filter(|k| k.verdict != Verdict::InsufficientData)
                .or_else(|| w.kind_finding(Kind::Rss))?;
            // GPU memory is not the machine's: a GPU leak does not bring host memory closer to
            // running out (the GPU's own headroom is in the report's device summary).
            let growing = w
                .kind_finding(w.kind)
                .filter(|k| k.verdict == Verdict::Leak && k.kind != Kind::Gpu);
            let trials = loaded.trials.get(&w.worker);
            let trial_hours = trials.and_then(|t| {
                let starts: Vec<f64> = t
                    .iter()
                    .filter_map(|t| t.trial.start_ns())
                    .map(|s| s as f64)
                    .collect();
                let gaps: Vec<f64> = starts.windows(2).map(|p| (p[1] - p[0]) / 3.6e12).collect();
                (!gaps.is_empty()).then(|| crate::stats::median(&gaps))
            });
            let per_trial = growing.and_then(|g| g.per_trial).map_or(0.0, |r| r.bytes);
            // A run too short for a rate per hour of its own still has a trial cadence: the
            // forecast projects the per-trial growth at that cadence.
            let per_hour = match growing.and_then(|g| g.per_hour) {
                Some(rate) => rate.bytes,
                None => trial_hours
                    .filter(|h| *h > 0.0)
                    .map_or(0.0, |h| per_trial / h),
            };
            Some(WorkerRates {
                first_bytes: summary.first_bytes.unwrap_or(0.0),
                transient_bytes: summary.transient_bytes.unwrap_or(0.0),
                per_trial,
                per_hour,
                trial_hours,
            })
        })
        .collect();
    let machine = Machine {
        mem_total_bytes: system.mem_total_bytes,
        first_available_bytes: system.first_available_bytes,
        last_available_bytes: system.last_available_bytes,
    };
    Some(forecast(&machine, &rates, horizon_hours, window_s))
}

/// The trials as findings report them, made from the loaded ones, which they replace (their
/// strings and parameters are moved, not copied: a million trials are held at once).
fn trial_records(trials: BTreeMap<u32, Vec<super::load::loaded::TrialLevels>>) -> Vec<TrialRecord> {
    let mut records = Vec::with_capacity(trials.values().map(Vec::len).sum());
    for mut loaded in trials.into_values() {
        let first = records.len();
        // From the back, handing the loaded trials' memory back as the records take theirs.
        while let Some(t) = loaded.pop() {
            records.push(TrialRecord {
                worker: t.trial.worker,
                trial: t.trial.trial().clone(),
                ordinal: t.ordinal,
                start_ns: t.trial.start_ns(),
                end_ns: t.trial.end_ns(),
                state: t.trial.state().into(),
                params: t.trial.params().cloned().unwrap_or_default(),
                tree: t.tree.unwrap_or_default(),
                processes: t.processes,
            });
            if loaded.len() % 8192 == 0 {
                loaded.shrink_to_fit();
            }
        }
        records[first..].reverse();
    }
    records
}

/// The kernel's OOM kills as the memory cgroup counted them, matched to the workers; `None`
/// where no counter was recorded (no cgroup, or an older recording).
fn oom_kills(recording: &Recording, loaded: &Loaded) -> Option<super::judge::oom::OomKills> {
    let workers = worker_oom_counts(recording);
    let system = loaded.system.as_ref();
    if system.is_none_or(|s| s.oom_kill_readings.is_empty()) && workers.is_empty() {
        return None;
    }
    let cgroup = recording.manifest.memory_cgroup.as_ref();
    let rises = system.map_or_else(Vec::new, |s| {
        super::judge::oom::rises(s.oom_kill_readings.iter().copied())
    });
    // The exit is reaped at once; the counter shows on the next tick, give or take one.
    let slack_ns = 2 * recording.manifest.interval_ns + 500_000_000;
    let memory = |worker: u32, t_ns: u64| {
        let values = loaded.before_end.get(&(worker, t_ns))?;
        [Kind::Pss, Kind::Rss]
            .into_iter()
            .find_map(|kind| Some((kind, values[kind as usize]?)))
    };
    let kills = super::judge::oom::all_kills(&rises, &workers, &loaded.ended, slack_ns, &memory);
    Some(super::judge::oom::OomKills {
        cgroup: cgroup.map_or_else(
            || "the memory cgroup".to_string(),
            |c| format!("cgroup {} {}", c.version, c.path),
        ),
        limit_bytes: cgroup.and_then(|c| c.limit_bytes).map(|b| b as f64),
        counted: kills.len() as u64,
        kills,
    })
}

/// What each worker's own cgroup counted (the `cgroups` table); empty without one.
fn worker_oom_counts(recording: &Recording) -> Vec<super::judge::oom::WorkerCounts> {
    super::load::cgroups::oom_readings(recording)
        .into_iter()
        .map(|(worker, readings)| super::judge::oom::WorkerCounts {
            worker,
            rises: super::judge::oom::worker_rises(&readings),
        })
        .filter(|c| !c.rises.is_empty())
        .collect()
}

/// What the reader should know about the recording itself: no boundaries, damaged or cut
/// files, a run not cleanly stopped, PSS reads that failed.
fn run_notes(
    recording: &Recording,
    options: &Options,
    loaded: &Loaded,
    trials_seen: bool,
    diagnoses: &super::tracer_notes::Diagnoses,
) -> Vec<String> {
    let mut notes = Vec::new();
    if !trials_seen {
        notes.push("no trial boundaries were seen: verdicts are fitted over time (growth per hour), not per trial".to_string());
    }
    notes.extend(recording.stats.get().describe());
    if recording.events_cut_short() {
        notes.push(format!("the run is marked finished but its events.log ends before the run's stop ({} events read): the file was cut short, and trials and events after the cut are missing", recording.events.len()));
    }
    if recording.manifest.status == RunStatus::Running && options.live {
        notes.push("the run is still being recorded: this is where it stood at its last sample, not how it ended, and each worker's last trial may still be running".to_string());
    } else if recording.manifest.status == RunStatus::Running {
        notes.push("the recording ended without a clean stop (crash, kill or power loss): the last trial of each worker may be cut short".to_string());
    }
    notes.extend(super::tracer_notes::tracer_notes(&recording.events));
    notes.extend(diagnoses.notes());
    for (worker, health) in &loaded.pss_health {
        // A tenth of the ticks without a fresh PSS is no budget at work: reads were failing.
        if health.stale_ticks() * 10 > health.ticks {
            notes.push(format!(
                "worker {worker}: PSS was fresh on only {} of {} ticks (its reads failed or starved): PSS and USS figures leave the other ticks out, while anonymous memory and RSS are measured on every tick",
                health.fresh_ticks, health.ticks
            ));
        }
    }
    notes
}

/// Per worker, how its trials' ends were read.
fn boundary_reads(loaded: &Loaded) -> Vec<super::load::boundary::BoundaryReads> {
    loaded
        .trials
        .iter()
        .map(|(worker, trials)| {
            let reads: Vec<_> = trials
                .iter()
                .map(|t| {
                    let delay = t
                        .trial
                        .end_memory()
                        .filter(|m| m.read_by == crate::recording::EndReader::Harness)
                        .map(|m| m.delay_ns);
                    (t.end_read, delay)
                })
                .collect();
            super::load::boundary::BoundaryReads::of(*worker, &reads)
        })
        .filter(|b| b.trials > 0)
        .collect()
}

/// Memory that no worker's tree holds (shared memory files, the rest of the cgroup).
fn outside_trees(
    recording: &Recording,
    loaded: &Loaded,
) -> Option<super::judge::outside::OutsideTrees> {
    loaded.system.as_ref().and_then(|s| {
        let last_listing = recording
            .events
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                crate::recording::EventKind::SharedMemory { files, more, .. } => {
                    Some((files.as_slice(), *more))
                }
                _ => None,
            })
            .unwrap_or_default();
        let outside = if s.outside_within_cgroup {
            &s.outside_readings[..]
        } else {
            &[]
        };
        super::judge::outside::outside_trees(&s.shm_readings, outside, last_listing)
    })
}

/// How the policy contained the run, where it had one.
fn containment(
    recording: &Recording,
    loaded: &Loaded,
) -> Option<super::judge::containment::Containment> {
    recording.policy_text().and_then(|text| {
        // A policy file that no longer parses (written by another version) still had the
        // default escalation and grace unless it set them.
        let policy = crate::policy::Policy::parse(&text, "policy.toml").unwrap_or_default();
        let end_ns = recording
            .events
            .iter()
            .map(|e| e.t_ns)
            .chain(loaded.last_ns)
            .max()
            .unwrap_or(0);
        super::judge::containment::containment(
            &recording.events,
            end_ns,
            super::judge::containment::bound(&policy),
            false,
        )
    })
}
