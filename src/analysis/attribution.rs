//! Where a worker's growth is, once its verdict is known: the mappings that grew (from the
//! smaps snapshots), the traced lines that kept it (the allocation tracer's sites) and the
//! holders of growing PyTorch tensors (the tracer's census).

use super::judge::findings::*;
use super::judge::verdict::Verdict;
use super::kind::Kind;
use super::load::loaded::MappingRow;
use super::locate::location::mapping_growth;
use std::collections::BTreeMap;

/// The holders of PyTorch tensors that grow, from the tracer's census at trial ends. A
/// census is placed at its trial's ordinal; a trial id seen several times (a test's repeats)
/// takes its next ordinal after the previous census's.
pub(super) fn locate_holders(
    workers: &mut [WorkerFinding],
    events: &[crate::recording::Event],
    trials: &[TrialRecord],
) {
    for finding in workers.iter_mut() {
        let censuses = worker_events(events, finding.worker, |kind| match kind {
            crate::recording::EventKind::PythonTensors(c) => Some(c.as_ref()),
            _ => None,
        });
        let by_name = trials_named(
            trials,
            finding.worker,
            censuses.iter().map(|(_, c)| &c.trial),
        );
        let reports: Vec<super::locate::holders::Report> = censuses
            .into_iter()
            .filter_map(|(t_ns, census)| {
                let trial = of_trial(&by_name, &census.trial, t_ns)?;
                Some(super::locate::holders::Report {
                    census,
                    ordinal: trial.ordinal,
                    params: &trial.params,
                })
            })
            .collect();
        finding.holders = super::locate::holders::holders(&reports);
        let measured = finding.per_trial_bytes(finding.kind).filter(|m| *m > 0.0);
        for h in &mut finding.holders {
            h.share = measured.map(|m| h.per_trial.bytes / m);
        }
        if !finding.holders.is_empty() {
            // The holders name what these hints send the user looking for.
            finding.hints.retain(|h| {
                h != super::locate::location::ANON_HINT && h != super::locate::location::HEAP_HINT
            });
        }
    }
}

/// The lines of Python code that hold each worker's growth, from the tracer's reports, with
/// their source text; for a leak the traced lines explain little of, that the rest is native
/// memory Python cannot see or the allocator keeping it; and what PyTorch's allocator says.
pub(super) fn locate_sites(
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
        // Every tracer report of the worker, read from the events once; each kind of memory
        // takes its own below.
        let told = worker_events(events, finding.worker, |kind| match kind {
            crate::recording::EventKind::PythonSites(sites) => Some(sites.as_ref()),
            _ => None,
        });
        let by_name = trials_named(trials, finding.worker, told.iter().map(|(_, s)| &s.trial));
        let reports_of = |memory| -> Vec<super::locate::sites::Report> {
            told.iter()
                .filter(|(_, sites)| sites.memory == memory)
                .map(|&(t_ns, sites)| super::locate::sites::Report {
                    t_ns,
                    sites,
                    params: of_trial(&by_name, &sites.trial, t_ns)
                        .map_or(&no_params, |t| &*t.params),
                })
                .collect()
        };
        let measured = finding.per_trial_bytes(finding.kind);
        let (mut sites, mut tracing) = super::locate::sites::sites(&reports_of(memory), measured);
        if memory == crate::recording::SiteMemory::PythonHeap {
            let native = super::locate::sites::sites(
                &reports_of(crate::recording::SiteMemory::Native),
                measured,
            );
            (sites, tracing) = heap_or_native((sites, tracing), native);
        }

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
                .and_then(|t| super::locate::sites::source_line(t, site.line));
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
            if share < super::locate::sites::NATIVE_BELOW && peak >= resident {
                finding
                    .diagnoses
                    .push(super::judge::findings::Diagnosis::AllocatorRetention {
                        resident_bytes_per_trial: resident,
                        traced_bytes_per_trial: share * resident,
                        traced_peak_bytes: peak,
                    });
            }
        }
        let retention = !finding.diagnoses.is_empty();
        if retention {
            // A mechanism, not an object kept: "look for a list appended per trial" misleads.
            finding.hints.retain(|h| {
                h != super::locate::location::ANON_HINT && h != super::locate::location::HEAP_HINT
            });
        }
        if let Some(share) = explained {
            // Tensors with named holders are not memory the tracer cannot see.
            let named = !finding.holders.is_empty();
            if growing && !retention && !named && share < super::locate::sites::NATIVE_BELOW {
                finding.hints.push(format!(
                    "the traced Python allocations explain only {:.0}% of this growth: the rest is native memory Python's tracer cannot see (C extensions, tensors of frameworks that allocate outside Python's allocator, or the allocator keeping freed memory); a native profiler (memray run --native, heaptrack) shows it",
                    100.0 * share
                ));
            }
        }
        if let Some(words) = super::locate::sites::heap_words(&sites) {
            for hint in &mut finding.hints {
                if hint == super::locate::location::HEAP_HINT {
                    hint.clone_from(&words);
                }
            }
        }
        finding.sites = sites;
        finding.tracing = tracing;
        let torch = super::judge::gpu_allocator::readings(events, finding.worker);
        let device_rate = finding.per_trial_bytes(Kind::Gpu);
        if let Some(d) = super::judge::gpu_allocator::diagnose(&torch, device_rate) {
            finding.diagnoses.push(d);
        }
    }
}

pub(super) fn locate_mappings(finding: &mut WorkerFinding, rows: &[MappingRow]) {
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

/// `worker`'s events that `pick` takes, with their times.
fn worker_events<'e, T>(
    events: &'e [crate::recording::Event],
    worker: u32,
    pick: impl Fn(&'e crate::recording::EventKind) -> Option<T>,
) -> Vec<(u64, T)> {
    events
        .iter()
        .filter(|e| e.worker == Some(worker))
        .filter_map(|e| pick(&e.kind).map(|t| (e.t_ns, t)))
        .collect()
}

/// `worker`'s trials by name, only those `named` (a map of every trial cost a million
/// entries); a name may stand for several trials, one per study a restarted worker ran.
fn trials_named<'t>(
    trials: &'t [TrialRecord],
    worker: u32,
    named: impl Iterator<Item = &'t String>,
) -> BTreeMap<&'t str, Vec<&'t TrialRecord>> {
    let named: std::collections::HashSet<&str> = named.map(String::as_str).collect();
    let mut by_name: BTreeMap<&str, Vec<&TrialRecord>> = BTreeMap::new();
    for t in trials
        .iter()
        .filter(|t| t.worker == worker && named.contains(t.trial.as_str()))
    {
        by_name.entry(t.trial.as_str()).or_default().push(t);
    }
    by_name
}

/// The trial a report at `t_ns` names `name`: of the trials of that name, the one that started
/// last before it. A restarted worker's new study counts its trials from 0 again, so a name
/// alone is ambiguous.
fn of_trial<'t>(
    by_name: &BTreeMap<&str, Vec<&'t TrialRecord>>,
    name: &str,
    t_ns: u64,
) -> Option<&'t TrialRecord> {
    by_name
        .get(name)?
        .iter()
        .filter(|t| t.start_ns.is_none_or(|start| start <= t_ns))
        .max_by_key(|t| (t.start_ns, t.ordinal))
        .copied()
}

type Located = (
    Vec<super::locate::sites::SiteFinding>,
    Option<super::locate::sites::Tracing>,
);

/// For host memory: the Python heap's lines, exact (tracemalloc), where they explain the
/// growth; where they explain under a third of it, the native sampler's lines if they explain
/// more (PyTorch's CPU tensors never reach tracemalloc), with the heap's tracing figures (its
/// cost, the study's own growth).
fn heap_or_native(heap: Located, native: Located) -> Located {
    let share = |t: &Option<super::locate::sites::Tracing>| {
        t.as_ref().and_then(|t| t.explained).unwrap_or(0.0)
    };
    if native.0.is_empty()
        || share(&heap.1) >= super::locate::sites::NATIVE_BELOW
        || share(&native.1) <= share(&heap.1)
    {
        return heap;
    }
    let tracing = match (heap.1, native.1) {
        (Some(mut heap), Some(native)) => {
            heap.explained = native.explained;
            heap.native = true;
            Some(heap)
        }
        (heap, native) => native.or(heap),
    };
    (native.0, tracing)
}

/// Which attribution ran in the traced Python processes, in one line: the Python heap
/// (tracemalloc) always, native allocations where the sampler was preloaded and loaded, and
/// why not where it was not; and the workers none of whose processes started the tracer (the
/// harness's closing notes), which would otherwise just have no lines. None without
/// `--trace-python`.
pub(super) fn tracer_notes(events: &[crate::recording::Event]) -> Vec<String> {
    let mut notes: Vec<String> = tracer_note(events).into_iter().collect();
    notes.extend(events.iter().filter_map(|e| match &e.kind {
        crate::recording::EventKind::Note { message }
            if message.contains("no Python process started the allocation tracer") =>
        {
            Some(message.clone())
        }
        _ => None,
    }));
    notes
}

fn tracer_note(events: &[crate::recording::Event]) -> Option<String> {
    let states: Vec<(i32, Option<&str>)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            crate::recording::EventKind::PythonTracer { pid, native, .. } => {
                Some((*pid, native.as_deref()))
            }
            _ => None,
        })
        .collect();
    if states.is_empty() {
        return None;
    }
    let sampled = states
        .iter()
        .filter(|(_, n)| n.is_some_and(|n| n.starts_with("on")))
        .count();
    let mut line = format!(
        "the Python tracer ran in {} process(es): lines of the Python heap (tracemalloc) in all, of native allocations (malloc and its kin, sampled) in {sampled}",
        states.len()
    );
    let why: std::collections::BTreeSet<&str> = states
        .iter()
        .filter_map(|(_, n)| match n {
            Some(n) if n.starts_with("on") => None,
            Some(n) => Some(n.split('\t').next().unwrap_or(n)),
            None => Some("a tracer too old to say"),
        })
        .collect();
    if !why.is_empty() {
        line.push_str(&format!(
            " (elsewhere: {})",
            why.into_iter().collect::<Vec<_>>().join("; ")
        ));
    }
    Some(line)
}

/// A diagnosis's trials traced in full, and why it began.
struct Diagnosis<'e> {
    pid: i32,
    after: &'e str,
    trials: usize,
    why: &'e str,
    traced: Vec<&'e str>,
}

/// Per worker, its diagnoses in order, with the trials each traced.
fn diagnoses(events: &[crate::recording::Event]) -> BTreeMap<u32, Vec<Diagnosis<'_>>> {
    use crate::recording::{EventKind, SiteMemory};
    let mut by_worker: BTreeMap<u32, Vec<Diagnosis>> = BTreeMap::new();
    for e in events {
        let Some(worker) = e.worker else { continue };
        match &e.kind {
            EventKind::PythonDiagnose {
                pid,
                trial,
                trials,
                why,
            } => by_worker.entry(worker).or_default().push(Diagnosis {
                pid: *pid,
                after: trial,
                trials: *trials as usize,
                why,
                traced: Vec::new(),
            }),
            EventKind::PythonSites(report) if report.memory == SiteMemory::PythonHeap => {
                let open = by_worker
                    .get_mut(&worker)
                    .and_then(|d| d.iter_mut().rev().find(|d| d.pid == report.pid));
                if let Some(d) = open.filter(|d| d.traced.len() < d.trials) {
                    if !d.traced.contains(&report.trial.as_str()) {
                        d.traced.push(&report.trial);
                    }
                }
            }
            _ => {}
        }
    }
    by_worker
}

/// Per worker, the names of the trials its diagnoses traced. Their memory is not the
/// objective's alone: the tracer's own allocations, interleaved with the worker's, leave the
/// allocator holding more (the holders study's diagnosed trials retained 4-22 MiB more than
/// its untraced trials of the same parameter value), so the run's parameter analysis leaves
/// them out.
pub(super) fn diagnosed_trials(
    events: &[crate::recording::Event],
) -> BTreeMap<u32, std::collections::BTreeSet<String>> {
    diagnoses(events)
        .into_iter()
        .map(|(worker, d)| {
            let names = d
                .iter()
                .flat_map(|d| d.traced.iter().map(|t| t.to_string()));
            (worker, names.collect())
        })
        .collect()
}

/// Per worker whose processes imported torch (traced only in diagnoses), the trials its
/// diagnoses traced in full and why the first began: the report's lines and holders come from
/// those trials alone, and a reader must know it.
pub(super) fn diagnosis_notes(events: &[crate::recording::Event]) -> Vec<String> {
    diagnoses(events)
        .into_iter()
        .map(|(worker, diagnoses)| {
            // Forked children diagnose themselves: their trials interleave with the parent's.
            let mut traced: Vec<&str> = diagnoses.iter().flat_map(|d| d.traced.clone()).collect();
            traced.sort_by_key(|name| (name.parse::<u64>().map_err(|_| *name), *name));
            traced.dedup();
            let first = &diagnoses[0];
            if traced.is_empty() {
                return format!(
                    "worker {worker}: a diagnosis began after trial {} ({}) but the run ended before it traced a trial",
                    first.after, first.why
                );
            }
            format!(
                "worker {worker} (PyTorch) was traced in full (heap and native lines, tensor census) only in its diagnosed trials {}: its lines and holders come from those; its other trials had only their memory read, and only those weigh its parameters (the tracer's own allocations add to a diagnosed trial's) (the first diagnosis began after trial {}: {})",
                name_ranges(&traced),
                first.after,
                first.why
            )
        })
        .collect()
}

/// Trial names as a short list, runs of consecutive numbers as ranges ("3–6, 12, 15–18"); the
/// first 12 entries and how many more.
fn name_ranges(names: &[&str]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(u64, u64)> = None;
    let close = |run: Option<(u64, u64)>, parts: &mut Vec<String>| match run {
        Some((a, b)) if a == b => parts.push(a.to_string()),
        Some((a, b)) => parts.push(format!("{a}–{b}")),
        None => {}
    };
    for name in names {
        match (name.parse::<u64>(), run) {
            (Ok(n), Some((a, b))) if n == b + 1 => run = Some((a, n)),
            (Ok(n), _) => {
                close(run, &mut parts);
                run = Some((n, n));
            }
            (Err(_), _) => {
                close(run.take(), &mut parts);
                parts.push((*name).to_string());
            }
        }
    }
    close(run, &mut parts);
    let more = parts.len().saturating_sub(12);
    parts.truncate(12);
    let mut text = parts.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{Event, EventKind, PythonSites, SiteMemory};

    fn event(worker: u32, kind: EventKind) -> Event {
        Event {
            t_ns: 0,
            wall_ns: 0,
            worker: Some(worker),
            kind,
        }
    }

    fn sites(pid: i32, trial: &str, memory: SiteMemory) -> EventKind {
        EventKind::PythonSites(Box::new(PythonSites {
            memory,
            pid,
            trial: trial.into(),
            epoch: 1,
            traced_bytes: 0,
            cost_ms: 0.0,
            peak_bytes: None,
            slowdown: None,
            gap: None,
            stretch: None,
            sites: Vec::new(),
        }))
    }

    fn diagnose(pid: i32, trial: &str, trials: u32) -> EventKind {
        EventKind::PythonDiagnose {
            pid,
            trial: trial.into(),
            trials,
            why: "anonymous memory grew 32.0 MiB over 4 trials".into(),
        }
    }

    #[test]
    fn a_diagnosis_names_the_trials_it_traced_and_why() {
        let mut events = vec![event(0, sites(7, "2", SiteMemory::Gpu))];
        events.push(event(0, diagnose(7, "5", 3)));
        for trial in ["6", "7", "8", "9"] {
            // Trial 9 is past the window: a report of it is another diagnosis's, or none.
            events.push(event(0, sites(7, trial, SiteMemory::PythonHeap)));
            events.push(event(0, sites(7, trial, SiteMemory::Native)));
        }
        // A forked child diagnoses itself, in the parent's trials.
        events.push(event(0, diagnose(8, "6", 2)));
        events.push(event(0, sites(8, "7", SiteMemory::PythonHeap)));
        events.push(event(0, sites(8, "8", SiteMemory::PythonHeap)));
        events.push(event(0, diagnose(7, "20", 3)));
        events.push(event(0, sites(7, "21", SiteMemory::PythonHeap)));
        events.push(event(1, sites(9, "3", SiteMemory::PythonHeap)));
        let traced = diagnosed_trials(&events);
        let names: Vec<&str> = traced[&0].iter().map(String::as_str).collect();
        assert_eq!((traced.len(), names), (1, vec!["21", "6", "7", "8"]));
        let notes = diagnosis_notes(&events);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("worker 0 (PyTorch) was traced in full (heap and native lines, tensor census) only in its diagnosed trials 6–8, 21:"),
            "{}",
            notes[0]
        );
        assert!(
            notes[0].ends_with("(the first diagnosis began after trial 5: anonymous memory grew 32.0 MiB over 4 trials)"),
            "{}",
            notes[0]
        );
    }

    #[test]
    fn a_diagnosis_cut_short_by_the_run_says_so() {
        let notes = diagnosis_notes(&[event(2, diagnose(7, "30", 4))]);
        assert!(
            notes[0] == "worker 2: a diagnosis began after trial 30 (anonymous memory grew 32.0 MiB over 4 trials) but the run ended before it traced a trial",
            "{notes:?}"
        );
    }

    #[test]
    fn a_worker_whose_tracer_never_started_is_said() {
        let message = "worker 0: no Python process started the allocation tracer (not Python, its PYTHONPATH replaced, or the tracer failed to start: its log says why), so no lines are named for it";
        let other = "pid 7: its PSS was read at 1 of 30 trial ends";
        let events = [other, message].map(|m| {
            event(
                0,
                EventKind::Note {
                    message: m.to_string(),
                },
            )
        });
        assert_eq!(tracer_notes(&events), [message]);
    }

    #[test]
    fn trial_names_read_as_ranges() {
        assert_eq!(
            name_ranges(&["1", "2", "3", "7", "x", "9", "10"]),
            "1–3, 7, x, 9–10"
        );
        let many: Vec<String> = (0..30).map(|n| (n * 2).to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            name_ranges(&many),
            "0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22 and 18 more"
        );
    }
}
