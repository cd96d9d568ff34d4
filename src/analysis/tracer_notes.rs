//! What the Python tracer did in a run, in the run's notes: which attribution ran in its
//! processes (the Python heap's, the native sampler's), the workers where none started, and,
//! for a worker that imported torch, which trials its diagnoses traced and why. Pure: the
//! recorded events in, lines out.

use std::collections::{BTreeMap, BTreeSet};

/// Which attribution ran in the traced Python processes, in one line: the Python heap
/// (tracemalloc) always, native allocations where the sampler was preloaded and loaded, and
/// why not where it was not; and the workers none of whose processes started the tracer (the
/// harness's closing notes), which would otherwise just have no lines. None without
/// `--trace-python`.
pub(super) fn tracer_notes(events: &[crate::recording::Event]) -> Vec<String> {
    let mut notes: Vec<String> = tracer_note(events).into_iter().collect();
    notes.extend(events.iter().filter_map(|e| match &e.kind {
        crate::recording::EventKind::Note { message }
            if message.contains(crate::pytrace::NO_TRACER) =>
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
    let why: BTreeSet<&str> = states
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

/// Every worker's diagnoses, read once from the events: the run's notes say which trials they
/// traced, and the parameter analysis leaves those trials out.
pub(super) struct Diagnoses<'e> {
    /// Per worker, its diagnoses in order, with the trials each traced.
    by_worker: BTreeMap<u32, Vec<Diagnosis<'e>>>,
    /// Per worker, the names of the trials its diagnoses traced.
    traced: BTreeMap<u32, BTreeSet<&'e str>>,
}

impl<'e> Diagnoses<'e> {
    pub(super) fn read(events: &'e [crate::recording::Event]) -> Self {
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
        let traced = by_worker
            .iter()
            .map(|(worker, d)| {
                (
                    *worker,
                    d.iter().flat_map(|d| d.traced.iter().copied()).collect(),
                )
            })
            .collect();
        Self { by_worker, traced }
    }

    /// Whether a diagnosis of `worker` traced a trial named `trial`. Such a trial's memory is
    /// not the objective's alone: the tracer's own allocations, interleaved with the worker's,
    /// leave the allocator holding more (the holders study's diagnosed trials retained 4-22 MiB
    /// more than its untraced trials of the same parameter value), so the run's parameter
    /// analysis leaves it out.
    pub(super) fn traced(&self, worker: u32, trial: &str) -> bool {
        self.traced
            .get(&worker)
            .is_some_and(|names| names.contains(trial))
    }

    /// Per worker whose processes imported torch (traced only in diagnoses), the trials its
    /// diagnoses traced in full and why the first began: the report's lines and holders come
    /// from those trials alone, and a reader must know it.
    pub(super) fn notes(&self) -> Vec<String> {
        self.by_worker
            .iter()
            .map(|(worker, diagnoses)| {
                // Forked children diagnose themselves: their trials interleave with the
                // parent's, and the set holds each name once, in text order.
                let mut traced: Vec<&str> = self
                    .traced
                    .get(worker)
                    .map(|names| names.iter().copied().collect())
                    .unwrap_or_default();
                traced.sort_by_key(|name| (name.parse::<u64>().map_err(|_| *name), *name));
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
        let diagnoses = Diagnoses::read(&events);
        let traced: Vec<bool> = ["5", "6", "8", "9", "21"]
            .iter()
            .map(|t| diagnoses.traced(0, t))
            .collect();
        assert_eq!(traced, [false, true, true, false, true]);
        assert!(!diagnoses.traced(1, "3"), "worker 1 was never diagnosed");
        let notes = diagnoses.notes();
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
        let events = [event(2, diagnose(7, "30", 4))];
        let notes = Diagnoses::read(&events).notes();
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
