//! `analyze`: a recording in, findings out (what the module header describes), and the
//! findings of a report built from worker logs alone.

use super::load::Loaded;
use super::*;
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

pub fn analyze(recording: &Recording, options: &Options) -> Result<Findings, AnalysisError> {
    Ok(analyze_with_series(recording, options)?.findings)
}

pub fn analyze_with_series(
    recording: &Recording,
    options: &Options,
) -> Result<Analysis, AnalysisError> {
    let mut loaded = super::load::load(recording)?;
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
        .map(|w| super::worker::worker_finding(*w, &loaded, rules))
        .collect();
    for finding in &mut workers {
        if let Some(diagnosis) =
            super::worker::copy_on_read(finding.worker, &loaded, finding, rules)
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
    let mut mappings = super::load::mapping_rows(recording, &located)?;
    for finding in &mut workers {
        let rows = finding
            .process
            .as_ref()
            .and_then(|p| mappings.remove(&(finding.worker, p.pid)))
            .unwrap_or_default();
        locate_mappings(finding, &rows);
    }
    let trials_seen = loaded.trials.values().any(|t| !t.is_empty());
    let parameters = parameters(&loaded, &workers);
    let duration_s = match (loaded.first_ns, loaded.last_ns) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
        _ => 0.0,
    };
    let forecast = machine_forecast(&loaded, &workers, options.horizon_hours, duration_s);
    let verdict = workers
        .iter()
        .map(|w| w.verdict)
        .max_by_key(|v| super::worker::severity(*v))
        .unwrap_or(Verdict::InsufficientData);
    let stats = recording.stats.get();
    let mut notes = Vec::new();
    if !trials_seen {
        notes.push("no trial boundaries were seen: verdicts are fitted over time (growth per hour), not per trial".to_string());
    }
    notes.extend(stats.describe());
    if recording.events_cut_short() {
        notes.push(format!("the run is marked finished but its events.log ends before the run's stop ({} events read): the file was cut short, and trials and events after the cut are missing", recording.events.len()));
    }
    if recording.manifest.status == RunStatus::Running && options.live {
        notes.push("the run is still being recorded: this is where it stood at its last sample, not how it ended, and each worker's last trial may still be running".to_string());
    } else if recording.manifest.status == RunStatus::Running {
        notes.push("the recording ended without a clean stop (crash, kill or power loss): the last trial of each worker may be cut short".to_string());
    }
    for (worker, health) in &loaded.pss_health {
        // A tenth of the ticks without a fresh PSS is no budget at work: reads were failing.
        if health.stale_ticks() * 10 > health.ticks {
            notes.push(format!(
                "worker {worker}: PSS was fresh on only {} of {} ticks (its reads failed or starved): PSS and USS figures leave the other ticks out, while anonymous memory and RSS are measured on every tick",
                health.fresh_ticks, health.ticks
            ));
        }
    }
    let boundary_reads = loaded
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
            super::boundary::BoundaryReads::of(*worker, &reads)
        })
        .filter(|b| b.trials > 0)
        .collect();
    let trials = trial_records(std::mem::take(&mut loaded.trials));
    if super::per_test::repeated(&trials) {
        notes.push("each trial is one repeat of a test (memwarden's pytest plugin): a worker's growth per trial mixes tests of every size; `memwarden check RUN --max-growth SIZE/trial` judges each test on its own repeats".to_string());
    }
    // Holders first: a worker whose tensors have named holders gets no "native memory"
    // hint from the line tracer.
    locate_holders(&mut workers, &recording.events, &trials);
    locate_sites(&mut workers, &recording.events, &trials);
    let oom_kills = oom_kills(recording, &loaded);
    let outside_trees = loaded.system.as_ref().and_then(|s| {
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
        super::outside::outside_trees(&s.shm_readings, outside, last_listing)
    });
    let containment = recording.policy_text().and_then(|text| {
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
        super::containment::containment(
            &recording.events,
            end_ns,
            super::containment::bound(&policy),
            false,
        )
    });
    let findings = Findings {
        schema_version: SCHEMA_VERSION,
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

/// The holders of PyTorch tensors that grow, from the tracer's census at trial ends. A
/// census is placed at its trial's ordinal; a trial id seen several times (a test's repeats)
/// takes its next ordinal after the previous census's.
fn locate_holders(
    workers: &mut [WorkerFinding],
    events: &[crate::recording::Event],
    trials: &[TrialRecord],
) {
    for finding in workers.iter_mut() {
        let mut censuses: Vec<&crate::recording::PythonTensors> = events
            .iter()
            .filter(|e| e.worker == Some(finding.worker))
            .filter_map(|e| match &e.kind {
                crate::recording::EventKind::PythonTensors(c) => Some(c.as_ref()),
                _ => None,
            })
            .collect();
        // Only the trials a census names: a map of every trial cost a million entries.
        let named: std::collections::HashSet<&str> =
            censuses.iter().map(|c| c.trial.as_str()).collect();
        let mut ordinals: BTreeMap<&str, Vec<(usize, &TrialRecord)>> = BTreeMap::new();
        for t in trials
            .iter()
            .filter(|t| t.worker == finding.worker && named.contains(t.trial.as_str()))
        {
            ordinals
                .entry(t.trial.as_str())
                .or_default()
                .push((t.ordinal, t));
        }
        let mut after = 0;
        let mut reports = Vec::new();
        censuses.sort_by_key(|c| c.pid);
        let mut last_pid = None;
        for census in censuses {
            if last_pid != Some(census.pid) {
                after = 0;
                last_pid = Some(census.pid);
            }
            let Some(&(ordinal, trial)) = ordinals
                .get(census.trial.as_str())
                .and_then(|o| o.iter().find(|(k, _)| *k >= after))
            else {
                continue;
            };
            after = ordinal + 1;
            reports.push(super::holders::Report {
                census,
                ordinal,
                params: &trial.params,
            });
        }
        finding.holders = super::holders::holders(&reports);
        let measured = finding.per_trial_bytes(finding.kind).filter(|m| *m > 0.0);
        for h in &mut finding.holders {
            h.share = measured.map(|m| h.per_trial.bytes / m);
        }
        if !finding.holders.is_empty() {
            // The holders name what these hints send the user looking for.
            finding
                .hints
                .retain(|h| h != super::location::ANON_HINT && h != super::location::HEAP_HINT);
        }
    }
}

/// The lines of Python code that hold each worker's growth, from the tracer's reports, with
/// their source text; for a leak the traced lines explain little of, that the rest is native
/// memory Python cannot see or the allocator keeping it; and what PyTorch's allocator says.
fn locate_sites(
    workers: &mut [WorkerFinding],
    events: &[crate::recording::Event],
    trials: &[TrialRecord],
) {
    let no_params = crate::few::Few::new();
    let mut sources: BTreeMap<String, Option<String>> = BTreeMap::new();
    for finding in workers.iter_mut() {
        // The sites that measure the kind that grows: live CUDA tensors for GPU memory, the
        // Python heap for the rest.
        let memory = if finding.kind == Kind::Gpu {
            crate::recording::SiteMemory::Gpu
        } else {
            crate::recording::SiteMemory::PythonHeap
        };
        let told: Vec<&crate::recording::PythonSites> = events
            .iter()
            .filter(|e| e.worker == Some(finding.worker))
            .filter_map(|e| match &e.kind {
                crate::recording::EventKind::PythonSites(sites) if sites.memory == memory => {
                    Some(sites.as_ref())
                }
                _ => None,
            })
            .collect();
        // Only the trials a report names: a map of every trial cost a million entries.
        let named: std::collections::HashSet<&str> =
            told.iter().map(|sites| sites.trial.as_str()).collect();
        let params: BTreeMap<&str, &crate::recording::ParamMap> = trials
            .iter()
            .filter(|t| t.worker == finding.worker && named.contains(t.trial.as_str()))
            .map(|t| (t.trial.as_str(), &*t.params))
            .collect();
        let reports: Vec<super::sites::Report> = told
            .into_iter()
            .map(|sites| super::sites::Report {
                sites,
                params: params
                    .get(sites.trial.as_str())
                    .copied()
                    .unwrap_or(&no_params),
            })
            .collect();
        let measured = finding.per_trial_bytes(finding.kind);
        let (mut sites, tracing) = super::sites::sites(&reports, measured);
        for site in &mut sites {
            let text = sources.entry(site.file.clone()).or_insert_with(|| {
                // A source file, not a data file someone named .py: bounded.
                let file = std::fs::File::open(&site.file).ok()?;
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::Read::take(file, 4 << 20), &mut text)
                    .ok()?;
                Some(text)
            });
            site.code = text
                .as_deref()
                .and_then(|t| super::sites::source_line(t, site.line));
        }
        // Python's tracer sees host memory only: a GPU leak is neither native nor retention.
        let growing = matches!(finding.verdict, Verdict::Leak | Verdict::Plateau)
            && matches!(finding.kind, Kind::Anon | Kind::Pss | Kind::Uss | Kind::Rss);
        let explained = tracing.as_ref().and_then(|t| t.explained);
        let peak = tracing.as_ref().and_then(|t| t.peak_bytes);
        if let (true, Some(share), Some(peak), Some(resident)) =
            (growing, explained, peak, measured)
        {
            // The trials churn through at least as much traced memory as stays resident, yet
            // the traced lines keep little of it: what was freed was not given back.
            if share < super::sites::NATIVE_BELOW && peak >= resident {
                finding
                    .diagnoses
                    .push(super::findings::Diagnosis::AllocatorRetention {
                        resident_bytes_per_trial: resident,
                        traced_bytes_per_trial: share * resident,
                        traced_peak_bytes: peak,
                    });
            }
        }
        let retention = !finding.diagnoses.is_empty();
        if retention {
            // A mechanism, not an object kept: "look for a list appended per trial" misleads.
            finding
                .hints
                .retain(|h| h != super::location::ANON_HINT && h != super::location::HEAP_HINT);
        }
        if let Some(share) = explained {
            // Tensors with named holders are not memory the tracer cannot see.
            let named = !finding.holders.is_empty();
            if growing && !retention && !named && share < super::sites::NATIVE_BELOW {
                finding.hints.push(format!(
                    "the traced Python allocations explain only {:.0}% of this growth: the rest is native memory Python's tracer cannot see (C extensions, tensors of frameworks that allocate outside Python's allocator, or the allocator keeping freed memory); a native profiler (memray run --native, heaptrack) shows it",
                    100.0 * share
                ));
            }
        }
        if let Some(words) = super::sites::heap_words(&sites) {
            for hint in &mut finding.hints {
                if hint == super::location::HEAP_HINT {
                    hint.clone_from(&words);
                }
            }
        }
        finding.sites = sites;
        finding.tracing = tracing;
        let torch = super::gpu_allocator::readings(events, finding.worker);
        let device_rate = finding.per_trial_bytes(Kind::Gpu);
        if let Some(d) = super::gpu_allocator::diagnose(&torch, device_rate) {
            finding.diagnoses.push(d);
        }
    }
}

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
    };
    Analysis {
        findings,
        timelines: BTreeMap::new(),
        system: None,
        devices: BTreeMap::new(),
        last_sample_ns: last_ns,
    }
}

fn locate_mappings(finding: &mut WorkerFinding, rows: &[MappingRow]) {
    if finding.process.is_none() {
        return;
    }
    finding.mappings = mapping_growth(rows);
    let mut hints: Vec<String> = finding
        .mappings
        .iter()
        .filter(|m| m.growth_bytes >= 0.25 * finding.mappings[0].growth_bytes)
        .filter_map(|m| m.hint.clone())
        .collect();
    if let Some(file) = finding.kind_finding(Kind::File) {
        if file.verdict == Verdict::Leak && finding.kind != Kind::File {
            hints.push("file-backed memory grows too: that is page cache of mapped files, reclaimable and not a leak".into());
        }
    }
    hints.dedup();
    finding.hints = hints;
}

/// Retained growth per trial (this trial's retained level minus the previous one's), pooled over
/// the workers that grow (all workers when none does), in each worker's headline kind. A worker
/// that does not grow at all says nothing about which trials make the others grow.
fn parameters(loaded: &Loaded, workers: &[WorkerFinding]) -> Vec<ParameterFinding> {
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
            if let (Some(before), Some(params)) = (before, t.trial.params()) {
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
                (!gaps.is_empty()).then(|| super::stats::median(&gaps))
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
fn trial_records(trials: BTreeMap<u32, Vec<super::load::TrialLevels>>) -> Vec<TrialRecord> {
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
fn oom_kills(recording: &Recording, loaded: &Loaded) -> Option<super::oom::OomKills> {
    let workers = worker_oom_counts(recording);
    let system = loaded.system.as_ref();
    if system.is_none_or(|s| s.oom_kill_readings.is_empty()) && workers.is_empty() {
        return None;
    }
    let cgroup = recording.manifest.memory_cgroup.as_ref();
    let rises = system.map_or_else(Vec::new, |s| {
        super::oom::rises(s.oom_kill_readings.iter().copied())
    });
    // The exit is reaped at once; the counter shows on the next tick, give or take one.
    let slack_ns = 2 * recording.manifest.interval_ns + 500_000_000;
    let memory = |worker: u32, t_ns: u64| {
        let values = loaded.before_end.get(&(worker, t_ns))?;
        [Kind::Pss, Kind::Rss]
            .into_iter()
            .find_map(|kind| Some((kind, values[kind as usize]?)))
    };
    let kills = super::oom::all_kills(&rises, &workers, &loaded.ended, slack_ns, &memory);
    Some(super::oom::OomKills {
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
fn worker_oom_counts(recording: &Recording) -> Vec<super::oom::WorkerCounts> {
    let mut readings: BTreeMap<u32, Vec<super::oom::WorkerReading>> = BTreeMap::new();
    for index in recording.sample_segments().unwrap_or_default() {
        let Ok(table) = recording.cgroups_segment(index) else {
            continue;
        };
        let column = |name: &str| super::load::u64_values(&table, name).unwrap_or_default();
        let (t, worker, kills) = (column("t_ns"), column("worker"), column("oom_kill"));
        let (oom, failcnt, limit) = (column("oom"), column("failcnt"), column("limit"));
        for i in 0..t.len() {
            let (Some(t), Some(worker), Some(kills)) = (t[i], worker[i], kills[i]) else {
                continue;
            };
            // v2 counts meeting the limit in `oom`, v1 a failed charge in `failcnt`.
            let own = oom
                .get(i)
                .copied()
                .flatten()
                .or(failcnt.get(i).copied().flatten());
            let limit = limit.get(i).copied().flatten();
            readings
                .entry(worker as u32)
                .or_default()
                .push((t, kills, own.unwrap_or(0), limit));
        }
    }
    readings
        .into_iter()
        .map(|(worker, mut r)| {
            r.sort_by_key(|x| x.0);
            super::oom::WorkerCounts {
                worker,
                rises: super::oom::worker_rises(&r),
            }
        })
        .filter(|c| !c.rises.is_empty())
        .collect()
}
