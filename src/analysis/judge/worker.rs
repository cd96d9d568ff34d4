//! One worker's findings: a verdict per memory kind, the kind that grows, and the process of
//! its tree that holds the growth.

use super::findings::{Basis, KindFinding, ProcessFinding, StepFinding, WorkerFinding};
use super::verdict::{classify, Classification, Rules, Verdict};
use crate::analysis::kind::{Kind, KINDS};
use crate::analysis::load::coarse_series::Timeline;
use crate::analysis::load::levels::Levels;
use crate::analysis::load::loaded::{Loaded, TrialLevels};
use crate::analysis::measures::Rate;
use crate::stats::{median, theil_sen, Trend};

const NS_PER_HOUR: f64 = 3.6e12;

/// Kinds that partition a process's memory; the one that grows is "where" the leak is. File
/// pages are left out on purpose: they are reclaimable page cache, reported apart.
const COMPONENTS: [Kind; 4] = [Kind::Anon, Kind::Shmem, Kind::Swap, Kind::Gpu];

/// A retained series: x (trial ordinal), hours, bytes, and the trial label of each point.
pub struct Series {
    pub ordinal: Vec<f64>,
    pub hours: Vec<f64>,
    /// Stitched across restarts (see `verdict::stitch`); `raw` as measured.
    pub bytes: Vec<f64>,
    pub raw: Vec<f64>,
    /// The trials' ids (Trials basis only; a `Short` is inline: a million trials are fitted).
    pub labels: Vec<crate::recording::Short>,
    pub basis: Basis,
    /// The largest level during a trial and the median transient above the baseline.
    pub peak: Option<f64>,
    pub transient: Option<f64>,
}

/// Retained levels of the completed trials, or the minima of the timeline when there are too
/// few trials; stitched across `restarts` (ns since the start).
pub fn series(
    trials: &[TrialLevels],
    levels_of: impl for<'t> Fn(&'t TrialLevels<'_>) -> Option<&'t Levels>,
    timeline: Option<&Timeline>,
    kind: Kind,
    rules: &Rules,
    restarts: &[u64],
) -> Option<Series> {
    let mut s = gather(trials, levels_of, timeline, kind, rules)?;
    let group: Vec<usize> = s
        .hours
        .iter()
        .map(|h| {
            let t_ns = (h * NS_PER_HOUR) as u64;
            restarts.iter().filter(|r| **r <= t_ns).count()
        })
        .collect();
    let x = match s.basis {
        Basis::Trials => &s.ordinal,
        Basis::Time => &s.hours,
    };
    s.bytes = super::verdict::stitch(x, &s.raw, &group);
    Some(s)
}

fn gather(
    trials: &[TrialLevels],
    levels_of: impl for<'t> Fn(&'t TrialLevels<'_>) -> Option<&'t Levels>,
    timeline: Option<&Timeline>,
    kind: Kind,
    rules: &Rules,
) -> Option<Series> {
    let k = kind as usize;
    let mut s = Series {
        ordinal: Vec::new(),
        hours: Vec::new(),
        bytes: Vec::new(),
        raw: Vec::new(),
        labels: Vec::new(),
        basis: Basis::Trials,
        peak: None,
        transient: None,
    };
    let mut transients = Vec::new();
    for t in trials {
        let Some(levels) = levels_of(t) else { continue };
        if let (Some(peak), Some(baseline)) = (levels.peak.get(k), levels.baseline.get(k)) {
            s.peak = Some(s.peak.map_or(peak, |p: f64| p.max(peak)));
            transients.push((peak - baseline).max(0.0));
        }
        let (Some(retained), Some(end)) = (levels.retained.get(k), t.trial.end_ns()) else {
            continue;
        };
        s.ordinal.push(t.ordinal as f64);
        s.hours.push(end as f64 / NS_PER_HOUR);
        s.raw.push(retained);
        s.labels.push(t.trial.trial().clone());
    }
    s.transient = (!transients.is_empty()).then(|| median(&transients));
    if s.raw.len() >= rules.min_points {
        return Some(s);
    }
    let timeline = timeline?;
    let mut time = Series {
        ordinal: Vec::new(),
        hours: Vec::new(),
        bytes: Vec::new(),
        raw: Vec::new(),
        labels: Vec::new(),
        basis: Basis::Time,
        peak: None,
        transient: None,
    };
    for (i, bucket) in timeline.buckets().enumerate() {
        if let Some(peak) = bucket.max[k] {
            time.peak = Some(time.peak.map_or(peak, |p: f64| p.max(peak)));
        }
        let Some(min) = bucket.min[k] else { continue };
        time.ordinal.push(i as f64);
        time.hours.push(bucket.t_ns as f64 / NS_PER_HOUR);
        time.raw.push(min);
    }
    (!time.raw.is_empty()).then_some(time)
}

fn rate(trend: Option<Trend>) -> Option<Rate> {
    trend.as_ref().map(Rate::from)
}

pub fn kind_finding(kind: Kind, s: &Series, rules: &Rules) -> (KindFinding, Classification) {
    let x = match s.basis {
        Basis::Trials => &s.ordinal,
        Basis::Time => &s.hours,
    };
    let c = classify(x, &s.bytes, rules);
    let from = c.ongoing_from.min(s.bytes.len());
    // A rate per hour beside a per-trial one is only said from enough time: fitted on a
    // 5-second run it printed "+2011 MiB/h" next to "stable" (issue 30).
    let span_s = match (s.hours[from..].first(), s.hours[from..].last()) {
        (Some(first), Some(last)) => (last - first) * 3600.0,
        _ => 0.0,
    };
    let per_hour = match s.basis {
        Basis::Trials if span_s < super::gates::MIN_HOURLY_WINDOW_S => None,
        Basis::Trials => theil_sen(&s.hours[from..], &s.bytes[from..]),
        Basis::Time => c.ongoing,
    };
    let label = |i: usize| match s.basis {
        Basis::Trials => s.labels.get(i).map(ToString::to_string),
        Basis::Time => s.hours.get(i).map(|h| format!("{}s", (h * 3600.0).round())),
    };
    let finding = KindFinding {
        kind,
        verdict: c.verdict,
        basis: s.basis,
        per_trial: match s.basis {
            Basis::Trials => rate(c.ongoing),
            Basis::Time => None,
        },
        per_hour: rate(per_hour),
        confidence: c.overall.map_or(0.0, |t| t.growth_confidence),
        first_clear_trial: c.first_clear.and_then(label),
        plateau_from_trial: c.plateau_from.and_then(label),
        step: c.step.and_then(|step| {
            Some(StepFinding {
                trial: label(step.at)?,
                size_bytes: step.size,
            })
        }),
        growth_bytes: c.growth,
        first_bytes: s.raw.first().copied(),
        last_bytes: s.raw.last().copied(),
        peak_bytes: s.peak,
        transient_bytes: s.transient,
        points: c.points,
    };
    (finding, c)
}

/// PSS and USS read on fewer ticks than a fit needs are not enough data, whatever a fit on
/// their carried values says: a 400 MiB PyTorch process read twice fitted "stable" while its
/// anonymous memory leaked (issue 30). `check` judges them the same way.
fn starve(mut k: KindFinding, pss_reads: Option<u64>, rules: &Rules) -> KindFinding {
    let starved = pss_reads.is_some_and(|reads| (reads as usize) < rules.min_points);
    if starved && matches!(k.kind, Kind::Pss | Kind::Uss) {
        k.verdict = Verdict::InsufficientData;
        k.per_trial = None;
        k.per_hour = None;
        k.confidence = 0.0;
    }
    k
}

/// Leak over plateau over stable over too little data.
pub(crate) fn severity(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Leak => 3,
        Verdict::Plateau => 2,
        Verdict::Stable => 1,
        Verdict::InsufficientData => 0,
    }
}

/// Worse verdict first, then the faster ongoing growth.
pub fn worse(a: &KindFinding, b: &KindFinding) -> bool {
    let growth = |k: &KindFinding| k.per_trial.or(k.per_hour).map_or(0.0, |r| r.bytes);
    (severity(a.verdict), growth(a)) > (severity(b.verdict), growth(b))
}

pub fn worker_finding(worker: u32, loaded: &Loaded, rules: &Rules) -> WorkerFinding {
    let no_trials = Vec::new();
    let trials = loaded.trials.get(&worker).unwrap_or(&no_trials);
    let timeline = loaded.timelines.get(&worker);
    let pss_reads = loaded.pss_health.get(&worker).map(|h| h.read_ticks);
    let kinds: Vec<KindFinding> = KINDS
        .iter()
        .filter_map(|kind| {
            let restarts = loaded.restarts.get(&worker).map_or(&[][..], Vec::as_slice);
            let s = series(
                trials,
                |t| t.tree.as_ref(),
                timeline,
                *kind,
                rules,
                restarts,
            )?;
            Some(kind_finding(*kind, &s, rules).0)
        })
        .map(|k| starve(k, pss_reads, rules))
        .collect();
    let summary = kinds
        .iter()
        .find(|k| k.kind == Kind::Pss && k.verdict != Verdict::InsufficientData)
        .or_else(|| kinds.iter().find(|k| k.kind == Kind::Rss));
    let headline = kinds
        .iter()
        .filter(|k| COMPONENTS.contains(&k.kind))
        .fold(None::<&KindFinding>, |best, k| match best {
            Some(b) if !worse(k, b) => Some(b),
            _ => Some(k),
        })
        .filter(|k| severity(k.verdict) >= 2)
        .or(summary)
        .cloned();
    let (verdict, kind, basis) = headline
        .as_ref()
        .map_or((Verdict::InsufficientData, Kind::Pss, Basis::Time), |k| {
            (k.verdict, k.kind, k.basis)
        });
    let process = matches!(verdict, Verdict::Leak | Verdict::Plateau)
        .then(|| locate_process(worker, trials, loaded, kind, headline.as_ref(), rules))
        .flatten();
    WorkerFinding {
        worker,
        trials: trials.iter().filter(|t| t.trial.end_ns().is_some()).count(),
        verdict,
        kind,
        basis,
        kinds,
        process,
        mappings: Vec::new(),
        hints: Vec::new(),
        sites: Vec::new(),
        holders: Vec::new(),
        tracing: None,
        diagnoses: Vec::new(),
    }
}

/// Copy-on-read after fork: the worker's proportional memory grows, its resident memory does
/// not, and the growth is in two or more of its forked processes. Those processes are not
/// leaking: each privatizes pages it inherited, up to what it reads.
pub fn copy_on_read(
    worker: u32,
    loaded: &Loaded,
    finding: &WorkerFinding,
    rules: &Rules,
) -> Option<super::findings::Diagnosis> {
    if !matches!(finding.verdict, Verdict::Leak | Verdict::Plateau)
        || !matches!(finding.kind, Kind::Pss | Kind::Uss)
    {
        return None;
    }
    let rate_of = |k: Option<&KindFinding>| k.and_then(|k| k.per_trial).map(|r| r.bytes);
    let tree = rate_of(finding.kind_finding(finding.kind))?;
    let rss = rate_of(finding.kind_finding(Kind::Rss)).unwrap_or(0.0);
    let anon = rate_of(finding.kind_finding(Kind::Anon)).unwrap_or(0.0);
    if tree <= 0.0 || rss.abs() > 0.25 * tree || anon.abs() > 0.25 * tree {
        return None;
    }
    let trials = loaded.trials.get(&worker)?;
    let mut children: Vec<f64> = Vec::new();
    for ((_, pid), timeline) in loaded
        .process_timelines
        .range((worker, i32::MIN)..=(worker, i32::MAX))
    {
        let main = loaded
            .processes
            .get(&(worker, *pid))
            .is_some_and(|p| p.main);
        if main {
            continue;
        }
        let Some(s) = series(
            trials,
            |t| t.process(*pid),
            Some(timeline),
            Kind::Uss,
            rules,
            &[],
        ) else {
            continue;
        };
        let (k, _) = kind_finding(Kind::Uss, &s, rules);
        if let (Verdict::Leak | Verdict::Plateau, Some(r)) = (k.verdict, k.per_trial) {
            children.push(r.bytes);
        }
    }
    let share = children.iter().sum::<f64>() / tree;
    if children.len() < 2 || share < 0.5 {
        return None;
    }
    children.sort_by(f64::total_cmp);
    Some(super::findings::Diagnosis::CopyOnRead {
        processes: children.len(),
        per_process_bytes_per_trial: children[children.len() / 2],
        children_share: share,
        rss_bytes_per_trial: rss,
    })
}

/// The process whose own retained series grows fastest in `kind`.
fn locate_process(
    worker: u32,
    trials: &[TrialLevels],
    loaded: &Loaded,
    kind: Kind,
    tree: Option<&KindFinding>,
    rules: &Rules,
) -> Option<ProcessFinding> {
    let tree_rate = tree
        .and_then(|t| t.per_trial.or(t.per_hour))
        .map(|r| r.bytes);
    let mut best: Option<(KindFinding, i32)> = None;
    let pids = loaded
        .process_timelines
        .range((worker, i32::MIN)..=(worker, i32::MAX));
    for ((_, pid), timeline) in pids {
        let timeline = Some(timeline);
        // A process lives in one incarnation of its worker: nothing to stitch.
        let Some(s) = series(trials, |t| t.process(*pid), timeline, kind, rules, &[]) else {
            continue;
        };
        let (finding, _) = kind_finding(kind, &s, rules);
        if best.as_ref().is_none_or(|(b, _)| worse(&finding, b)) {
            best = Some((finding, *pid));
        }
    }
    let (finding, pid) = best?;
    let info = loaded
        .processes
        .get(&(worker, pid))
        .cloned()
        .unwrap_or_default();
    let per_trial = finding.per_trial.or(finding.per_hour);
    Some(ProcessFinding {
        pid,
        command: info.command,
        main: info.main,
        verdict: finding.verdict,
        per_trial: finding.per_trial,
        share: match (per_trial, tree_rate) {
            (Some(p), Some(t)) if t > 0.0 => Some(p.bytes / t),
            _ => None,
        },
    })
}
