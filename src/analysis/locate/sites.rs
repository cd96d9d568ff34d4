//! Which lines of Python code hold a worker's growth, from the tracer's reports
//! (`--trace-python`). Pure: the reports, the trials' parameters and the worker's measured rate
//! in; ranked sites out. The source line's text is read by the caller.
//!
//! Each report holds, per site, what is still alive of the memory allocated since the tracer
//! began its current epoch (a stretch of traced trials). Within one epoch that is cumulative,
//! so a report's increment over the one before is what that trial kept, net of what it freed of
//! older blocks, and an epoch's first report is only their baseline. An epoch of one report
//! (its snapshot was over budget) holds what its one trial allocated and still held at its end,
//! which may include what the next trial frees: that is its increment. Summed, the increments give a per-site retained series,
//! fitted per traced trial with the same Theil–Sen trend as the verdicts.

use super::params::{parameter_effects, TrialGrowth};
use super::site_series::{Series, SiteKey};
use crate::analysis::measures::{ParameterFinding, Rate};
use crate::recording::PythonSites;
use crate::stats::theil_sen;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The tracer lists at most this many sites per report; a site missing from a full list may be
/// below its cut rather than gone.
const LISTED: usize = 40;
/// Sites growing slower than this are noise (interned strings, small caches).
const MIN_BYTES_PER_TRIAL: f64 = 16.0 * 1024.0;
/// Told when traced sites explain less than this share of the measured growth.
pub const NATIVE_BELOW: f64 = 1.0 / 3.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteFinding {
    pub file: String,
    pub line: u32,
    /// The source line, read from the file at analysis time (`None`: not readable here).
    pub code: Option<String>,
    /// The innermost frame when it is not this line (a library's code that allocated).
    pub via: Option<String>,
    /// Growth of the search framework's own state (Optuna's storage or sampler), not of the
    /// objective.
    pub study: bool,
    /// The process it was found in (the first, when several processes grow at this line).
    pub pid: i32,
    /// How many processes grow at this line (forked children running the same code).
    #[serde(default = "one")]
    pub processes: usize,
    /// Summed over those processes.
    pub per_trial: Rate,
    /// One-sided confidence that the site's retained bytes grow.
    pub confidence: f64,
    /// Retained at the site by the last report.
    pub retained_bytes: f64,
    /// The largest block still held at the site by the last report (the mean block where the
    /// tracer did not say).
    pub block_bytes: Option<f64>,
    pub reports: usize,
    pub traceback: Vec<String>,
    /// The trial parameter whose values go with this site's growth, as `name=value`.
    pub parameter: Option<String>,
}

fn one() -> usize {
    1
}

/// How much a worker was traced, and how much of its growth the sites explain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracing {
    pub processes: usize,
    pub reports: usize,
    /// Sum of the growing sites' rates over the worker's measured rate per trial (`None`
    /// without a measured rate).
    pub explained: Option<f64>,
    pub mean_cost_ms: f64,
    pub max_cost_ms: f64,
    /// How much longer a traced trial took than an untraced one, as the tracer last measured.
    #[serde(default)]
    pub slowdown: Option<f64>,
    /// Untraced trials between stretches of traced ones at the end.
    #[serde(default)]
    pub gap: Option<u32>,
    /// Trials traced in a row.
    #[serde(default)]
    pub stretch: Option<u32>,
    /// The median over reports of the most traced memory alive at once during a trial.
    #[serde(default)]
    pub peak_bytes: Option<f64>,
    /// The search framework's own state growing (every site flagged `study`, summed), told
    /// whatever the worker's verdict: an in-memory study keeps every trial.
    #[serde(default)]
    pub study: Option<super::study::StudyGrowth>,
    /// The lines are the native sampler's (its samples of malloc and its kin), not the
    /// Python heap's: they explained more of the growth.
    #[serde(default)]
    pub native: bool,
}

/// One report, with the parameters of the trial it closed (empty when not known).
pub struct Report<'a> {
    pub sites: &'a PythonSites,
    pub params: &'a crate::recording::ParamMap,
    /// When it was recorded: processes whose reports' times overlap ran together.
    pub t_ns: u64,
}

/// Each traced line's series, per process.
type SeriesByLine<'a> = BTreeMap<(i32, SiteKey), Series<'a>>;

/// The growing sites of one worker, fastest first, and what tracing explains of
/// `measured_per_trial` (the worker's rate in its growing kind).
pub fn sites(
    reports: &[Report],
    measured_per_trial: Option<f64>,
) -> (Vec<SiteFinding>, Option<Tracing>) {
    if reports.is_empty() {
        return (Vec::new(), None);
    }
    let mut by_pid: BTreeMap<i32, Vec<&Report>> = BTreeMap::new();
    for r in reports {
        by_pid.entry(r.sites.pid).or_default().push(r);
    }
    let (series, indexed) = site_series(&by_pid);
    let spans: BTreeMap<i32, (u64, u64)> = by_pid
        .iter()
        .map(|(pid, rs)| {
            let times = rs.iter().map(|r| r.t_ns);
            let span = (times.clone().min(), times.max());
            (*pid, (span.0.unwrap_or(0), span.1.unwrap_or(0)))
        })
        .collect();
    let study = super::study::study_growth(&series, &indexed, measured_per_trial);
    let found: Vec<SiteFinding> = series
        .into_iter()
        .filter_map(|((_, (file, line)), s)| site_finding(file, line, s))
        .collect();
    let mut found = merge_processes(found, &spans);
    found.sort_by(|a, b| b.per_trial.bytes.total_cmp(&a.per_trial.bytes));
    found.truncate(8);
    let costs: Vec<f64> = reports.iter().map(|r| r.sites.cost_ms).collect();
    let explained = measured_per_trial
        .filter(|m| *m > 0.0)
        .map(|m| found.iter().fold(0.0, |sum, s| sum + s.per_trial.bytes) / m);
    let tracing = Tracing {
        processes: by_pid.len(),
        reports: reports.len(),
        explained,
        mean_cost_ms: costs.iter().sum::<f64>() / costs.len() as f64,
        max_cost_ms: costs.iter().copied().fold(0.0, f64::max),
        slowdown: reports.iter().rev().find_map(|r| r.sites.slowdown),
        gap: reports.last().and_then(|r| r.sites.gap),
        stretch: reports.last().and_then(|r| r.sites.stretch),
        peak_bytes: {
            let peaks: Vec<f64> = reports
                .iter()
                .filter_map(|r| r.sites.peak_bytes.map(|p| p as f64))
                .collect();
            (!peaks.is_empty()).then(|| crate::stats::median(&peaks))
        },
        study,
        native: reports
            .iter()
            .any(|r| r.sites.memory == crate::recording::SiteMemory::Native),
    };
    (found, Some(tracing))
}

/// Per process and line, the retained bytes report by report (summed increments between
/// consecutive reports of an epoch), and per process how many reports counted.
fn site_series<'a>(
    by_pid: &BTreeMap<i32, Vec<&'a Report<'a>>>,
) -> (SeriesByLine<'a>, BTreeMap<i32, usize>) {
    let mut series: SeriesByLine = BTreeMap::new();
    let mut indexed: BTreeMap<i32, usize> = BTreeMap::new();
    for (pid, reports) in by_pid {
        // Reports per epoch: the first of an epoch that has later ones is only their baseline.
        let mut per_epoch: BTreeMap<u32, usize> = BTreeMap::new();
        for r in reports.iter() {
            *per_epoch.entry(r.sites.epoch).or_default() += 1;
        }
        let mut previous: Option<&PythonSites> = None;
        let mut index = 0;
        for report in reports.iter() {
            let now = report.sites;
            let opens_epoch = previous.is_none_or(|p| p.epoch != now.epoch);
            if opens_epoch && per_epoch.get(&now.epoch).is_some_and(|n| *n > 1) {
                previous = Some(now);
                continue;
            }
            let before: BTreeMap<SiteKey, u64> = previous
                .filter(|_| !opens_epoch)
                .map(|p| {
                    p.sites
                        .iter()
                        .map(|s| ((s.file.clone(), s.line), s.bytes))
                        .collect()
                })
                .unwrap_or_default();
            let before_full = previous.is_some_and(|p| p.sites.len() >= LISTED);
            let listed: BTreeMap<SiteKey, &crate::recording::PythonSite> = now
                .sites
                .iter()
                .map(|s| ((s.file.clone(), s.line), s))
                .collect();
            let now_full = now.sites.len() >= LISTED;
            let keys: Vec<SiteKey> = listed.keys().chain(before.keys()).cloned().collect();
            for key in keys {
                let increment = match (listed.get(&key), before.get(&key)) {
                    (Some(site), Some(&b)) => site.bytes as f64 - b as f64,
                    // Absent from a full list: somewhere below the cut; unknown.
                    (Some(_), None) if !opens_epoch && before_full => continue,
                    (Some(site), None) => site.bytes as f64,
                    (None, Some(_)) if now_full => continue,
                    // Gone from a list with room for it: all of it was freed.
                    (None, Some(&b)) => -(b as f64),
                    (None, None) => continue,
                };
                let Some(entry) = (match listed.get(&key) {
                    Some(_) => Some(series.entry((*pid, key.clone())).or_insert_with(|| Series {
                        pid: *pid,
                        retained: vec![0.0; index],
                        increments: Vec::new(),
                        last: None,
                    })),
                    None => series.get_mut(&(*pid, key.clone())),
                }) else {
                    continue;
                };
                if entry.retained.len() > index {
                    continue; // a key seen twice (listed and before): counted once
                }
                let level = entry.retained.last().copied().unwrap_or(0.0);
                entry.retained.resize(index, level);
                entry.retained.push(level + increment);
                entry.increments.push((increment, report.params));
                if let Some(site) = listed.get(&key) {
                    entry.last = Some(site);
                }
            }
            previous = Some(now);
            index += 1;
        }
        indexed.insert(*pid, index);
    }
    (series, indexed)
}

/// A line whose retained bytes grow per traced trial with confidence, with what it allocated
/// last and the parameter value that goes with its growth.
fn site_finding(file: String, line: u32, s: Series) -> Option<SiteFinding> {
    let x: Vec<f64> = (0..s.retained.len()).map(|i| i as f64).collect();
    let trend = theil_sen(&x, &s.retained)?;
    if trend.slope < MIN_BYTES_PER_TRIAL || trend.slope_low <= 0.0 {
        return None;
    }
    let last = s.last?;
    let growth: Vec<TrialGrowth> = s
        .increments
        .iter()
        .map(|(growth, params)| TrialGrowth {
            params,
            growth: *growth,
        })
        .collect();
    Some(SiteFinding {
        file,
        line,
        code: None,
        via: last.via.clone(),
        study: last.study,
        pid: s.pid,
        processes: 1,
        per_trial: Rate::from(&trend),
        confidence: trend.growth_confidence,
        retained_bytes: s.retained.last().copied().unwrap_or(0.0),
        block_bytes: last
            .largest_block
            .map(|b| b as f64)
            .or((last.blocks > 0).then(|| last.bytes as f64 / last.blocks as f64)),
        reports: s.retained.len(),
        traceback: last.traceback.clone(),
        parameter: parameter_effects(&growth)
            .into_iter()
            .find(|p| p.significant && p.effect_bytes > 0.0)
            .map(|p| parameter_words(&p)),
    })
}

/// One finding per line of code. Processes that reported at the same time (forked children
/// running the same code) grow at the same line together, and their rates add up. A restarted
/// worker's processes ran one after another (their reports' times do not overlap; their trial
/// numbers may, as a new study counts from 0 again): the line's rate is theirs averaged,
/// weighted by their reports, never their sum, and what it retains is the last one's.
fn merge_processes(found: Vec<SiteFinding>, spans: &BTreeMap<i32, (u64, u64)>) -> Vec<SiteFinding> {
    let mut lines: Vec<Vec<SiteFinding>> = Vec::new();
    for site in found {
        match lines
            .iter_mut()
            .find(|l| l[0].file == site.file && l[0].line == site.line)
        {
            Some(line) => line.push(site),
            None => lines.push(vec![site]),
        }
    }
    lines
        .into_iter()
        .map(|sites| merge_line(sites, spans))
        .collect()
}

/// One line's findings, one per process, as one.
fn merge_line(sites: Vec<SiteFinding>, spans: &BTreeMap<i32, (u64, u64)>) -> SiteFinding {
    // Processes alive together: each cluster's time spans overlap.
    let mut clusters: Vec<((u64, u64), SiteFinding)> = Vec::new();
    for site in sites {
        let span = spans.get(&site.pid).copied().unwrap_or((0, u64::MAX));
        match clusters
            .iter_mut()
            .find(|(t, _)| t.0 <= span.1 && span.0 <= t.1)
        {
            Some((t, m)) => {
                *t = (t.0.min(span.0), t.1.max(span.1));
                m.processes += 1;
                m.per_trial += site.per_trial;
                m.retained_bytes += site.retained_bytes;
                m.confidence = m.confidence.max(site.confidence);
                m.parameter = m.parameter.take().or(site.parameter);
            }
            None => clusters.push((span, site)),
        }
    }
    let reports: usize = clusters.iter().map(|(_, s)| s.reports).sum();
    let mut clusters = clusters.into_iter().map(|(_, s)| s);
    let mut merged = clusters.next().expect("bug: a line has a finding");
    let weight = |s: &SiteFinding| s.reports as f64 / reports.max(1) as f64;
    let mut rate = Rate {
        bytes: merged.per_trial.bytes * weight(&merged),
        low_bytes: merged.per_trial.low_bytes * weight(&merged),
        high_bytes: merged.per_trial.high_bytes * weight(&merged),
    };
    for later in clusters {
        let w = weight(&later);
        rate.bytes += later.per_trial.bytes * w;
        rate.low_bytes += later.per_trial.low_bytes * w;
        rate.high_bytes += later.per_trial.high_bytes * w;
        merged.processes += later.processes;
        merged.retained_bytes = later.retained_bytes;
        merged.confidence = merged.confidence.max(later.confidence);
        merged.parameter = merged.parameter.take().or(later.parameter);
        merged.per_trial = rate;
    }
    merged.reports = reports;
    merged
}
/// A parameter as `name=value`, or `larger name` for a numeric trend.
pub(super) fn parameter_words(p: &ParameterFinding) -> String {
    match &p.value {
        Some(value) => format!("{}={value}", p.name),
        None => format!("larger {}", p.name),
    }
}

/// The fastest-growing site outside the search framework's own state (sites are ranked).
pub fn top(sites: &[SiteFinding]) -> Option<&SiteFinding> {
    sites.iter().find(|s| !s.study)
}

/// The heap hint in words of what was traced: large blocks or many small objects.
pub fn heap_words(sites: &[SiteFinding]) -> Option<String> {
    let top = top(sites)?;
    let block = top.block_bytes?;
    Some(if block >= 256.0 * 1024.0 {
        format!(
            "the heap holds large blocks, not many small objects: the line above keeps blocks of up to {} (arrays, buffers), which glibc serves from the heap once its mmap threshold has risen",
            crate::units::size(block)
        )
    } else {
        format!(
            "the heap holds many small objects: the line above keeps blocks of at most {:.0} bytes (Python objects, lists, dicts)",
            block
        )
    })
}

/// Line `line` (1-based) of `text`, trimmed and cut to 160 characters.
pub fn source_line(text: &str, line: u32) -> Option<String> {
    let code = text.lines().nth(line.checked_sub(1)? as usize)?.trim();
    if code.is_empty() {
        return None;
    }
    Some(match code.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &code[..cut]),
        None => code.to_string(),
    })
}

#[cfg(test)]
mod tests;
