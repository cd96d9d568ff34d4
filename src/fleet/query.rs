//! The morning questions across a published fleet, asked of its small tables (`runs`,
//! `findings`, `parameters`) through polars: scanned lazily with their hive partitions, only
//! the columns asked for. Raw samples are never read here.

use super::layout::{table_files, RunKey};
use crate::frames::prelude::*;
use serde::Serialize;
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
    "worker",
    "verdict",
    "kind",
    "per_trial_bytes",
    "per_trial_low_bytes",
    "per_trial_high_bytes",
    "per_hour_bytes",
    "first_clear_trial",
    "site",
    "site_code",
    "oom_kills",
    "crash_restarts",
    "policy_restarts",
];
const RUNS: &[&str] = &["start", "start_wall_ns", "study"];
const PARAMETERS: &[&str] = &["name", "value", "effect_bytes", "significant"];

pub fn answer(dest: &Path, since_wall_ns: Option<u64>) -> Result<Answers, FleetError> {
    if !dest.is_dir() {
        return Err(FleetError::NoDestination(dest.to_path_buf()));
    }
    let runs = scan(dest, "runs", RUNS)?.ok_or_else(|| FleetError::Empty(dest.to_path_buf()))?;
    let runs = match since_wall_ns {
        Some(since) => runs.filter(col("start_wall_ns").gt_eq(lit(since))),
        None => runs,
    };
    // Each table is read from its files once; the questions below are asked of these frames.
    let run_frame = runs.collect()?;
    let runs = run_frame.clone().lazy();
    let keys = [col("host"), col("run")];
    let findings = match scan(dest, "findings", FINDINGS)? {
        Some(f) => f.join(
            runs.clone(),
            keys.clone(),
            keys.clone(),
            JoinArgs::new(JoinType::Inner),
        ),
        None => runs.clone().limit(0).with_columns(
            FINDINGS
                .iter()
                .map(|c| lit(NULL).alias(*c))
                .collect::<Vec<_>>(),
        ),
    }
    .collect()?
    .lazy();
    let hosts = run_frame.column("host")?.n_unique()?;
    let leaks = findings
        .clone()
        .filter(col("verdict").eq(lit("leak")))
        .sort(
            ["per_trial_bytes"],
            SortMultipleOptions::default()
                .with_order_descending(true)
                .with_nulls_last(true),
        )
        .collect()?;
    // Every host with a run counts its runs, also those whose runs have no findings (no
    // samples); the findings add what leaked and what was killed or restarted.
    let per_host = runs
        .clone()
        .group_by([col("host")])
        .agg([col("run").n_unique().alias("runs")])
        .join(
            findings.clone().group_by([col("host")]).agg([
                col("run")
                    .filter(col("verdict").eq(lit("leak")))
                    .n_unique()
                    .alias("leaking_runs"),
                col("per_trial_bytes")
                    .filter(col("verdict").eq(lit("leak")))
                    .max()
                    .alias("fastest"),
                col("oom_kills").sum().alias("oom_kills"),
                (col("crash_restarts") + col("policy_restarts"))
                    .sum()
                    .alias("restarts"),
            ]),
            [col("host")],
            [col("host")],
            JoinArgs::new(JoinType::Left),
        )
        .sort(["host"], SortMultipleOptions::default())
        .collect()?;
    let troubled = findings
        .clone()
        .filter(
            col("oom_kills")
                .gt(lit(0))
                .or(col("crash_restarts").gt(lit(0)))
                .or(col("policy_restarts").gt(lit(0))),
        )
        .sort(
            ["oom_kills", "crash_restarts", "policy_restarts"],
            SortMultipleOptions::default().with_order_descending(true),
        )
        .limit(20)
        .collect()?;
    let timeline = findings
        .clone()
        .group_by([col("host"), col("run")])
        .agg([
            col("start_wall_ns").first(),
            col("per_trial_bytes").max(),
            col("verdict").eq(lit("leak")).any(true).alias("leak"),
        ])
        .sort(["start_wall_ns"], SortMultipleOptions::default())
        .collect()?;
    let parameters = match scan(dest, "parameters", PARAMETERS)? {
        Some(p) => p
            .join(runs, keys.clone(), keys, JoinArgs::new(JoinType::Inner))
            .filter(col("significant"))
            .group_by([col("name"), col("value")])
            .agg([
                col("run").n_unique().alias("runs"),
                col("host").n_unique().alias("hosts"),
                col("effect_bytes").median().alias("median_effect"),
            ])
            .sort(
                ["runs", "median_effect"],
                SortMultipleOptions::default().with_order_descending(true),
            )
            .collect()?,
        None => DataFrame::empty(),
    };
    Ok(Answers {
        dest: dest.display().to_string(),
        since_wall_ns,
        runs: run_frame.height(),
        hosts,
        leaks: rows(&leaks, |r| Leak {
            host: r.str("host").unwrap_or_default(),
            run: r.str("run").unwrap_or_default(),
            study: r.str("study"),
            start: r.str("start").unwrap_or_default(),
            worker: r.u64("worker").unwrap_or(0) as u32,
            kind: r.str("kind").unwrap_or_default(),
            per_trial_bytes: r.f64("per_trial_bytes"),
            per_trial_low_bytes: r.f64("per_trial_low_bytes"),
            per_trial_high_bytes: r.f64("per_trial_high_bytes"),
            per_hour_bytes: r.f64("per_hour_bytes"),
            first_clear_trial: r.str("first_clear_trial"),
            site: r.str("site"),
            site_code: r.str("site_code"),
            path: RunKey {
                host: r.str("host").unwrap_or_default(),
                run: r.str("run").unwrap_or_default(),
            }
            .partition(dest, "runs")
            .display()
            .to_string(),
        })?,
        hosts_summary: rows(&per_host, |r| HostSummary {
            host: r.str("host").unwrap_or_default(),
            runs: r.u64("runs").unwrap_or(0),
            leaking_runs: r.u64("leaking_runs").unwrap_or(0),
            fastest_per_trial_bytes: r.f64("fastest"),
            oom_kills: r.u64("oom_kills").unwrap_or(0),
            restarts: r.u64("restarts").unwrap_or(0),
        })?,
        troubled: rows(&troubled, |r| Troubled {
            host: r.str("host").unwrap_or_default(),
            run: r.str("run").unwrap_or_default(),
            worker: r.u64("worker").unwrap_or(0) as u32,
            oom_kills: r.u64("oom_kills").unwrap_or(0),
            crash_restarts: r.u64("crash_restarts").unwrap_or(0),
            policy_restarts: r.u64("policy_restarts").unwrap_or(0),
        })?,
        parameters: rows(&parameters, |r| ParameterAcross {
            name: r.str("name").unwrap_or_default(),
            value: r.str("value"),
            runs: r.u64("runs").unwrap_or(0),
            hosts: r.u64("hosts").unwrap_or(0),
            median_effect_bytes: r.f64("median_effect"),
        })?,
        timeline: rows(&timeline, |r| RunPoint {
            host: r.str("host").unwrap_or_default(),
            run: r.str("run").unwrap_or_default(),
            start_wall_ns: r.u64("start_wall_ns").unwrap_or(0),
            per_trial_bytes: r.f64("per_trial_bytes"),
            leak: r.bool("leak").unwrap_or(false),
        })?,
    })
}

/// One table of the layout as a lazy frame with `host` and `run` from its partitions and only
/// `columns` read; `None` where nothing is published in it. Each file's footer is checked as
/// it is read, so a torn or foreign file is named rather than failing the query somewhere
/// inside.
/// Files are read here, each with only those columns, and the questions run on the in-memory
/// engine: polars scans files only on its streaming engine, whose file cache pulls an HTTP
/// stack into the build (issue 31).
fn scan(dest: &Path, table: &str, columns: &[&str]) -> Result<Option<LazyFrame>, FleetError> {
    let files = table_files(dest, table).map_err(|cause| FleetError::Io {
        path: dest.join(table),
        cause,
    })?;
    if files.is_empty() {
        return Ok(None);
    }
    let mut frames = Vec::with_capacity(files.len());
    for (key, path) in &files {
        let df = read_partition(path, columns)?;
        // Partition values are text, whatever they look like (a host named 1234).
        let rows = df.height();
        let mut partitioned = DataFrame::new(
            rows,
            vec![
                Column::new("host".into(), vec![key.host.as_str(); rows]),
                Column::new("run".into(), vec![key.run.as_str(); rows]),
            ],
        )?;
        partitioned.hstack_mut(df.columns())?;
        frames.push(partitioned.lazy());
    }
    Ok(Some(concat(frames, UnionArgs::default())?))
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

fn rows<T>(df: &DataFrame, make: impl Fn(&Row) -> T) -> Result<Vec<T>, FleetError> {
    Ok((0..df.height()).map(|i| make(&Row { df, i })).collect())
}

/// `4.5 MiB/trial`, or `-` where there is no rate.
pub(super) fn per_trial(bytes: Option<f64>) -> String {
    bytes.map_or("-".into(), |b| format!("{}/trial", crate::units::size(b)))
}

/// The answers as text, for a terminal.
pub fn text(a: &Answers) -> String {
    use crate::units::size;
    let mut out = format!("{} run(s) on {} host(s) in {}\n", a.runs, a.hosts, a.dest);
    if a.leaks.is_empty() {
        out.push_str("\nno leaking worker\n");
    } else {
        out.push_str(&format!(
            "\nleaking workers ({}), fastest first:\n",
            a.leaks.len()
        ));
        for l in &a.leaks {
            out.push_str(&format!(
                "  {} {} worker {}: {} in {}{}{}, started {}\n",
                l.host,
                l.run,
                l.worker,
                per_trial(l.per_trial_bytes),
                l.kind,
                l.first_clear_trial
                    .as_ref()
                    .map_or(String::new(), |t| format!(", clear from trial {t}")),
                l.site
                    .as_ref()
                    .map_or(String::new(), |s| format!(", at {s}")),
                l.start,
            ));
        }
    }
    out.push_str("\nby host:\n");
    for h in &a.hosts_summary {
        out.push_str(&format!(
            "  {}: {} run(s), {} leaking (fastest {}), {} OOM kill(s), {} restart(s)\n",
            h.host,
            h.runs,
            h.leaking_runs,
            per_trial(h.fastest_per_trial_bytes),
            h.oom_kills,
            h.restarts
        ));
    }
    if !a.troubled.is_empty() {
        out.push_str("\nOOM-killed or restarted most:\n");
        for t in &a.troubled {
            out.push_str(&format!(
                "  {} {} worker {}: {} OOM kill(s), {} crash restart(s), {} policy restart(s)\n",
                t.host, t.run, t.worker, t.oom_kills, t.crash_restarts, t.policy_restarts
            ));
        }
    }
    if !a.parameters.is_empty() {
        out.push_str("\nparameter values that went with retained growth:\n");
        for p in &a.parameters {
            out.push_str(&format!(
                "  {}{}: in {} run(s) on {} host(s), median +{}/trial\n",
                p.name,
                p.value
                    .as_ref()
                    .map_or(" (trend)".into(), |v| format!("={v}")),
                p.runs,
                p.hosts,
                p.median_effect_bytes.map_or("-".into(), size)
            ));
        }
    }
    out
}
