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
