//! The morning questions across a published fleet, asked of its small tables (`runs`,
//! `findings`, `parameters`): each partition's file read by polars, only the columns asked
//! for, its run taken from the partition's names. Raw samples are never read here.

use crate::frames::prelude::*;
use crate::recording::layout::columns as column;
use crate::recording::layout::{table_files, RunKey};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{0}: no such directory")]
    NoDestination(PathBuf),
    #[error("{0}: no published runs here (publish them with `memwarden publish RUN_DIR DEST`)")]
    Empty(PathBuf),
    #[error("{path}: not a table memwarden published (torn, or another tool's file): {cause}; remove it and publish its run again")]
    Damaged { path: PathBuf, cause: String },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("reading the fleet: {0}")]
    Query(#[from] PolarsError),
}

/// What `fleet` answers (`--json` prints this document).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Answers {
    pub dest: String,
    /// Only runs started after this (ns since the Unix epoch), where asked.
    pub since_wall_ns: Option<u64>,
    pub runs: usize,
    pub hosts: usize,
    /// Leaking workers, fastest first.
    pub leaks: Vec<Leak>,
    /// Per host: runs, leaking runs, the fastest leak, OOM kills and restarts.
    pub hosts_summary: Vec<HostSummary>,
    /// Workers OOM-killed or restarted, most first.
    pub troubled: Vec<Troubled>,
    /// Parameter values that went with retained growth, by how many runs found them.
    pub parameters: Vec<ParameterAcross>,
    /// Each run's fastest worker, by start time (for the plots).
    pub timeline: Vec<RunPoint>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Leak {
    pub host: String,
    pub run: String,
    pub study: Option<String>,
    pub start: String,
    pub worker: u32,
    pub kind: String,
    pub per_trial_bytes: Option<f64>,
    pub per_trial_low_bytes: Option<f64>,
    pub per_trial_high_bytes: Option<f64>,
    pub per_hour_bytes: Option<f64>,
    /// The first trial from which the growth is clear: since when.
    pub first_clear_trial: Option<String>,
    pub site: Option<String>,
    pub site_code: Option<String>,
    /// `check`, `diff` and `analyze` take this.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostSummary {
    pub host: String,
    pub runs: u64,
    pub leaking_runs: u64,
    pub fastest_per_trial_bytes: Option<f64>,
    pub oom_kills: u64,
    pub restarts: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Troubled {
    pub host: String,
    pub run: String,
    pub worker: u32,
    pub oom_kills: u64,
    pub crash_restarts: u64,
    pub policy_restarts: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ParameterAcross {
    pub name: String,
    pub value: Option<String>,
    /// Runs in which this value went with significantly more retained growth.
    pub runs: u64,
    pub hosts: u64,
    pub median_effect_bytes: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunPoint {
    pub host: String,
    pub run: String,
    pub start_wall_ns: u64,
    pub per_trial_bytes: Option<f64>,
    pub leak: bool,
}

const FINDINGS: &[&str] = &[
    column::WORKER,
    column::VERDICT,
    column::KIND,
    column::PER_TRIAL_BYTES,
    column::PER_TRIAL_LOW_BYTES,
    column::PER_TRIAL_HIGH_BYTES,
    column::PER_HOUR_BYTES,
    column::FIRST_CLEAR_TRIAL,
    column::SITE,
    column::SITE_CODE,
    column::OOM_KILLS,
    column::CRASH_RESTARTS,
    column::POLICY_RESTARTS,
];
const RUNS: &[&str] = &[column::START, column::START_WALL_NS, column::STUDY];
const PARAMETERS: &[&str] = &[
    column::NAME,
    column::VALUE,
    column::EFFECT_BYTES,
    column::SIGNIFICANT,
];

/// A row of `runs`.
struct RunRow {
    start: String,
    start_wall_ns: Option<u64>,
    study: Option<String>,
}

/// A row of `findings`: one worker's verdict in one run.
struct FindingRow {
    worker: u32,
    leak: bool,
    kind: String,
    per_trial_bytes: Option<f64>,
    per_trial_low_bytes: Option<f64>,
    per_trial_high_bytes: Option<f64>,
    per_hour_bytes: Option<f64>,
    first_clear_trial: Option<String>,
    site: Option<String>,
    site_code: Option<String>,
    oom_kills: u64,
    crash_restarts: u64,
    policy_restarts: u64,
}

/// A row of `parameters`: one value's effect in one run.
struct ParameterRow {
    name: String,
    value: Option<String>,
    effect_bytes: Option<f64>,
    significant: bool,
}

/// A finding with the run it belongs to.
type Found<'a> = (&'a RunKey, &'a RunRow, FindingRow);

/// The questions are answered from the three small tables, read whole (only the columns asked
/// for) into plain rows: a fleet of 1,000 runs is a few thousand rows, and polars' query engine
/// (polars-lazy, -plan, -expr, -ops) was a third of the binary (49.9 MB with it, 32.8 MB
/// without) for these few group-bys (issue 31).
pub fn answer(dest: &Path, since_wall_ns: Option<u64>) -> Result<Answers, FleetError> {
    if !dest.is_dir() {
        return Err(FleetError::NoDestination(dest.to_path_buf()));
    }
    let runs = read_table(dest, "runs", RUNS, |r| RunRow {
        start: r.str(column::START).unwrap_or_default(),
        start_wall_ns: r.u64(column::START_WALL_NS),
        study: r.str(column::STUDY),
    })?;
    if runs.is_empty() {
        return Err(FleetError::Empty(dest.to_path_buf()));
    }
    // The runs asked about, by key: the other tables keep only their rows.
    let runs: BTreeMap<RunKey, RunRow> = runs
        .into_iter()
        .filter(|(_, run)| match since_wall_ns {
            Some(since) => run.start_wall_ns.is_some_and(|t| t >= since),
            None => true,
        })
        .collect();
    let findings: Vec<Found> = read_table(dest, "findings", FINDINGS, FindingRow::read)?
        .into_iter()
        .filter_map(|(key, f)| runs.get_key_value(&key).map(|(k, run)| (k, run, f)))
        .collect();
    let parameters = read_table(dest, "parameters", PARAMETERS, ParameterRow::read)?;
    let hosts: BTreeSet<&str> = runs.keys().map(|k| k.host.as_str()).collect();
    Ok(Answers {
        dest: dest.display().to_string(),
        since_wall_ns,
        runs: runs.len(),
        hosts: hosts.len(),
        leaks: leaks(dest, &findings),
        hosts_summary: hosts_summary(&runs, &findings),
        troubled: troubled(&findings),
        parameters: parameters_across(&runs, &parameters),
        timeline: timeline(&findings),
    })
}

impl FindingRow {
    fn read(r: &Row) -> Self {
        Self {
            worker: r.u64(column::WORKER).unwrap_or(0) as u32,
            leak: r.str(column::VERDICT).as_deref() == Some("leak"),
            kind: r.str(column::KIND).unwrap_or_default(),
            per_trial_bytes: r.f64(column::PER_TRIAL_BYTES),
            per_trial_low_bytes: r.f64(column::PER_TRIAL_LOW_BYTES),
            per_trial_high_bytes: r.f64(column::PER_TRIAL_HIGH_BYTES),
            per_hour_bytes: r.f64(column::PER_HOUR_BYTES),
            first_clear_trial: r.str(column::FIRST_CLEAR_TRIAL),
            site: r.str(column::SITE),
            site_code: r.str(column::SITE_CODE),
            oom_kills: r.u64(column::OOM_KILLS).unwrap_or(0),
            crash_restarts: r.u64(column::CRASH_RESTARTS).unwrap_or(0),
            policy_restarts: r.u64(column::POLICY_RESTARTS).unwrap_or(0),
        }
    }
}

impl ParameterRow {
    fn read(r: &Row) -> Self {
        Self {
            name: r.str(column::NAME).unwrap_or_default(),
            value: r.str(column::VALUE),
            effect_bytes: r.f64(column::EFFECT_BYTES),
            significant: r.bool(column::SIGNIFICANT).unwrap_or(false),
        }
    }
}

/// Descending, a missing figure last.
fn descending(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (a, b) => b.is_some().cmp(&a.is_some()),
    }
}

fn max(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.flatten().reduce(f64::max)
}

/// Leaking workers, fastest first.
fn leaks(dest: &Path, findings: &[Found]) -> Vec<Leak> {
    let mut leaks: Vec<&Found> = findings.iter().filter(|(_, _, f)| f.leak).collect();
    leaks.sort_by(|a, b| descending(a.2.per_trial_bytes, b.2.per_trial_bytes));
    leaks
        .into_iter()
        .map(|(key, run, f)| Leak {
            host: key.host.clone(),
            run: key.run.clone(),
            study: run.study.clone(),
            start: run.start.clone(),
            worker: f.worker,
            kind: f.kind.clone(),
            per_trial_bytes: f.per_trial_bytes,
            per_trial_low_bytes: f.per_trial_low_bytes,
            per_trial_high_bytes: f.per_trial_high_bytes,
            per_hour_bytes: f.per_hour_bytes,
            first_clear_trial: f.first_clear_trial.clone(),
            site: f.site.clone(),
            site_code: f.site_code.clone(),
            path: key.partition(dest, "runs").display().to_string(),
        })
        .collect()
}

/// Every host with a run counts its runs, also those whose runs have no findings (no
/// samples); the findings add what leaked and what was killed or restarted.
fn hosts_summary(runs: &BTreeMap<RunKey, RunRow>, findings: &[Found]) -> Vec<HostSummary> {
    let mut by_host: BTreeMap<&str, HostSummary> = BTreeMap::new();
    for key in runs.keys() {
        by_host
            .entry(&key.host)
            .or_insert_with(|| HostSummary {
                host: key.host.clone(),
                runs: 0,
                leaking_runs: 0,
                fastest_per_trial_bytes: None,
                oom_kills: 0,
                restarts: 0,
            })
            .runs += 1;
    }
    let mut leaking: BTreeSet<&RunKey> = BTreeSet::new();
    for (key, _, f) in findings {
        let Some(host) = by_host.get_mut(key.host.as_str()) else {
            continue;
        };
        host.oom_kills += f.oom_kills;
        host.restarts += f.crash_restarts + f.policy_restarts;
        if f.leak {
            host.fastest_per_trial_bytes =
                max([host.fastest_per_trial_bytes, f.per_trial_bytes].into_iter());
            if leaking.insert(key) {
                host.leaking_runs += 1;
            }
        }
    }
    by_host.into_values().collect()
}

/// Workers OOM-killed or restarted, most first (20 at most).
fn troubled(findings: &[Found]) -> Vec<Troubled> {
    let mut troubled: Vec<Troubled> = findings
        .iter()
        .filter(|(_, _, f)| f.oom_kills > 0 || f.crash_restarts > 0 || f.policy_restarts > 0)
        .map(|(key, _, f)| Troubled {
            host: key.host.clone(),
            run: key.run.clone(),
            worker: f.worker,
            oom_kills: f.oom_kills,
            crash_restarts: f.crash_restarts,
            policy_restarts: f.policy_restarts,
        })
        .collect();
    troubled.sort_by(|a, b| {
        (b.oom_kills, b.crash_restarts, b.policy_restarts).cmp(&(
            a.oom_kills,
            a.crash_restarts,
            a.policy_restarts,
        ))
    });
    troubled.truncate(20);
    troubled
}

/// Each run's fastest worker, by start time.
fn timeline(findings: &[Found]) -> Vec<RunPoint> {
    let mut by_run: BTreeMap<&RunKey, RunPoint> = BTreeMap::new();
    for (key, run, f) in findings {
        let point = by_run.entry(key).or_insert_with(|| RunPoint {
            host: key.host.clone(),
            run: key.run.clone(),
            start_wall_ns: run.start_wall_ns.unwrap_or(0),
            per_trial_bytes: None,
            leak: false,
        });
        point.per_trial_bytes = max([point.per_trial_bytes, f.per_trial_bytes].into_iter());
        point.leak |= f.leak;
    }
    let mut timeline: Vec<RunPoint> = by_run.into_values().collect();
    timeline.sort_by_key(|p| p.start_wall_ns);
    timeline
}

/// Parameter values that went with significantly more retained growth, by the runs that found
/// them, then by their median effect.
fn parameters_across(
    runs: &BTreeMap<RunKey, RunRow>,
    parameters: &[(RunKey, ParameterRow)],
) -> Vec<ParameterAcross> {
    // Per value: the runs and hosts that found it, and its effects.
    type Seen<'a> = (BTreeSet<&'a RunKey>, BTreeSet<&'a str>, Vec<f64>);
    let mut by_value: BTreeMap<(&str, Option<&str>), Seen> = BTreeMap::new();
    for (key, p) in parameters {
        if !p.significant || !runs.contains_key(key) {
            continue;
        }
        let (in_runs, hosts, effects) = by_value.entry((&p.name, p.value.as_deref())).or_default();
        in_runs.insert(key);
        hosts.insert(&key.host);
        effects.extend(p.effect_bytes);
    }
    let mut across: Vec<ParameterAcross> = by_value
        .into_iter()
        .map(
            |((name, value), (in_runs, hosts, effects))| ParameterAcross {
                name: name.to_string(),
                value: value.map(str::to_string),
                runs: in_runs.len() as u64,
                hosts: hosts.len() as u64,
                median_effect_bytes: (!effects.is_empty()).then(|| crate::stats::median(&effects)),
            },
        )
        .collect();
    across.sort_by(|a, b| {
        b.runs
            .cmp(&a.runs)
            .then_with(|| descending(a.median_effect_bytes, b.median_effect_bytes))
    });
    across
}

/// One table of the layout as rows with the run each came from; none where nothing is
/// published in it. Each file's footer is checked as it is read, so a torn or foreign file is
/// named rather than failing the query somewhere inside.
fn read_table<T>(
    dest: &Path,
    table: &str,
    columns: &[&str],
    make: impl Fn(&Row) -> T,
) -> Result<Vec<(RunKey, T)>, FleetError> {
    let files = table_files(dest, table).map_err(|cause| FleetError::Io {
        path: dest.join(table),
        cause,
    })?;
    let mut read = Vec::new();
    for (key, path) in files {
        let df = read_partition(&path, columns)?;
        read.extend((0..df.height()).map(|i| (key.clone(), make(&Row { df: &df, i }))));
    }
    Ok(read)
}

/// `columns` of one partition's file, once its footer shows it is whole Parquet with the
/// table's columns (another tool's Parquet file dropped into a partition would otherwise read
/// as rows of nulls). The footer is read once, for the check and the read.
fn read_partition(path: &Path, columns: &[&str]) -> Result<DataFrame, FleetError> {
    let damaged = |cause: String| FleetError::Damaged {
        path: path.to_path_buf(),
        cause,
    };
    let file = std::fs::File::open(path).map_err(|e| damaged(e.to_string()))?;
    let mut reader = ParquetReader::new(file);
    let schema = reader.schema().map_err(|e| damaged(e.to_string()))?;
    if let Some(missing) = columns.iter().find(|c| !schema.contains(c)) {
        return Err(damaged(format!("it has no column {missing}")));
    }
    reader
        .with_columns(Some(columns.iter().map(|c| c.to_string()).collect()))
        .finish()
        .map_err(|e| damaged(e.to_string()))
}

/// A row of a result frame, read by column name.
struct Row<'a> {
    df: &'a DataFrame,
    i: usize,
}

impl Row<'_> {
    fn value(&self, name: &str) -> Option<AnyValue<'_>> {
        let v = self.df.column(name).ok()?.get(self.i).ok()?;
        (!v.is_null()).then_some(v)
    }
    fn str(&self, name: &str) -> Option<String> {
        self.value(name).map(|v| match v {
            AnyValue::String(s) => s.to_string(),
            AnyValue::StringOwned(s) => s.to_string(),
            other => other.to_string(),
        })
    }
    fn f64(&self, name: &str) -> Option<f64> {
        self.value(name)?.extract::<f64>()
    }
    fn u64(&self, name: &str) -> Option<u64> {
        self.value(name)?.extract::<u64>()
    }
    fn bool(&self, name: &str) -> Option<bool> {
        match self.value(name)? {
            AnyValue::Boolean(b) => Some(b),
            _ => None,
        }
    }
}
