//! The arguments of the commands that run and record workers: `run`, `attach`, the policy
//! flags, the metrics server, the live view and the systemd unit.

use super::values::*;
use crate::units::{parse_duration, parse_positive_duration, parse_size};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// What every recording command shares.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// Run directory to create [default: ./memwarden-runs/<UTC timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Sampling interval for the cheap counters (1ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_interval)]
    pub interval: Duration,
    /// Share of one CPU core that smaps_rollup (PSS/USS) reads may use, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 2.0, value_parser = parse_percent)]
    pub rollup_cpu: f64,
    /// A process whose PSS and mapping reads hold its memory map longer than this (they walk
    /// its page tables, ~10 ms per GiB) is read only in the gaps after its trials.
    #[arg(long, value_name = "DURATION", default_value = "5ms", value_parser = parse_duration)]
    pub max_stall: Duration,
    /// Share of each such process's time that memwarden's reads may hold its memory map, in
    /// percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.5, value_parser = parse_percent)]
    pub max_hold: f64,
    /// Regex for trial lines, replacing the marker and Optuna syntaxes. Named groups: `trial`
    /// (the id), `phase` (start/end; without it each match ends a sequential trial), `state`,
    /// `value`; any other named group is a trial parameter.
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub trial_regex: Option<regex::Regex>,
    /// Stop the run after this long (e.g. 30m, 12h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Most bytes of each worker's output kept in its log: the first half in
    /// `logs/worker-N.log`, the newest lines in `logs/worker-N.tail.log` (and `.tail.old.log`).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub log_cap: u64,
    /// How long a sample segment stays open before it is compacted to Parquet.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration, hide = true)]
    pub segment: Duration,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// Number of copies of the command to run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,
    /// Time between SIGTERM and SIGKILL when stopping a worker's process group [default: 10s,
    /// or the policy's restart.grace].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<Duration>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Trace the allocations of every Python process of the workers (tracemalloc, started
    /// through a `sitecustomize` on their PYTHONPATH) and report, per trial, what each line of
    /// code left alive. Slows allocation-heavy Python; off by default.
    #[arg(long)]
    pub trace_python: bool,
    #[command(flatten)]
    pub view: ViewArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// The worker command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The policy to enforce: a file, and flags for the common knobs (which override the file).
/// Without any of them, `run` records and does not act.
#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {
    /// Policy file (TOML; see fixtures/policy/example.toml). An empty file is the default policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Memory the workers may use together [default: the whole machine].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub budget: Option<u64>,
    /// Restart a worker whose tree's PSS passes this.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_worker_pss: Option<u64>,
    /// Restart each worker after this many trials.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub restart_every_trials: Option<u32>,
    /// Restart each worker after it has run this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub restart_every: Option<Duration>,
    /// Start worker i this long after worker i-1.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub stagger: Option<Duration>,
    /// Start one worker first; the others after it completed N trials within budget.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub canary_trials: Option<u32>,
    /// Per-worker memory limit: its own cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes) where memwarden may make per-worker cgroups, else a PSS restart limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_max: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SystemdUnitArgs {
    /// The memwarden command the unit runs, e.g. `run --policy /etc/memwarden.toml -- python
    /// train.py` (use absolute paths: a unit has no working directory of yours).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// Live numbers for Prometheus while the run records.
#[derive(Debug, Clone, Default, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on http://ADDR/metrics (PORT alone binds 127.0.0.1; give
    /// 0.0.0.0:PORT to be scraped from other hosts). The README suggests 9477.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Keep DIR/memwarden.prom up to date (every 2 s) for node_exporter's textfile collector,
    /// where nothing may listen (Slurm and HPC nodes).
    #[arg(long, value_name = "DIR")]
    pub metrics_textfile: Option<PathBuf>,
}

impl MetricsArgs {
    pub fn options(&self) -> crate::metrics::MetricsOptions {
        crate::metrics::MetricsOptions {
            listen: self.metrics_listen.clone(),
            textfile: self.metrics_textfile.clone(),
        }
    }
}

/// What `run` and `attach` show while they record and say at their end.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ViewArgs {
    /// No live view on the terminal: only notes, as without a terminal.
    #[arg(long, short)]
    pub quiet: bool,
    /// Do not write the report at the end (RUN_DIR/report/report.md); the verdict is still
    /// printed.
    #[arg(long)]
    pub no_report: bool,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// Log file to follow for trial lines; the first --log goes with the first PID, and so on.
    #[arg(long = "log", value_name = "FILE")]
    pub logs: Vec<PathBuf>,
    #[command(flatten)]
    pub view: ViewArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Processes to record (their descendants are recorded too).
    #[arg(required = true, value_name = "PID")]
    pub pids: Vec<i32>,
}
