//! The command line. One `*Args` struct per subcommand; help text comes from the doc comments.

use crate::analysis::gates::GrowthBudget;
use crate::analysis::Kind;
use crate::units::{parse_duration, parse_positive_duration};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "memwarden",
    version,
    about = "Find and contain memory leaks in long-running ML workers"
)]
#[command(
    after_help = "Exit codes: 0 fine, 1 a finding (a worker crashed or failed, growth over budget, more growth than before), 2 bad usage or input, 3 memwarden's own work failed (a full disk, a crashed thread; what it recorded is readable), 4 `check` had not enough data to judge, `replay` could not decide."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start workers as children and record their memory and trials.
    Run(RunArgs),
    /// Record processes that are already running (and their children).
    Attach(AttachArgs),
    /// Write a recording's samples, events or trials as CSV or Parquet.
    Export(ExportArgs),
    /// Find, size and locate leaks in a recording.
    Analyze(AnalyzeArgs),
    /// Fail (exit 1) when a worker's retained growth exceeds a budget with confidence: for CI.
    /// A pytest run under `--memwarden-repeat N` is judged test by test, naming the leaking tests.
    Check(CheckArgs),
    /// Compare the growth of two recordings (before and after a fix).
    Diff(DiffArgs),
    /// Write an incident report (Markdown and plots) for a recording, also after a crash.
    Report(ReportArgs),
    /// Re-run a recording under a policy: what it would have done, and memory afterwards.
    Simulate(SimulateArgs),
    /// Run workers for hours under the policy, with live progress, checkpoints and a verdict.
    Soak(SoakArgs),
    /// Run a recorded trial again, repeated, to confirm a leak (or each parameter value: --bisect).
    Replay(ReplayArgs),
    /// Print a systemd unit that keeps a memwarden command running, with a watchdog.
    SystemdUnit(SystemdUnitArgs),
    /// Supervise two fixture workers (one leaking) for about a minute, record and analyze them.
    Demo(DemoArgs),
    /// Publish a finished run's tables into a fleet layout (Parquet, partitioned by host and
    /// run) that `fleet`, DuckDB, polars and Spark read; prints the published run's path.
    ///
    /// Idempotent: the same run again does nothing. A run still being recorded is refused.
    Publish(PublishArgs),
    /// Which hosts, runs and workers leaked across a published fleet, how fast, in which kind,
    /// since when; which were OOM-killed or restarted most; which parameter values leak.
    Fleet(FleetArgs),
    /// Show the live view of a run being recorded (from another terminal, over ssh), then its
    /// verdict.
    ///
    /// Only reads the recording: start and stop it at will; Ctrl-C stops watching, not the run.
    /// On a finished or crashed recording it says how it ended and gives the verdict at once.
    Watch(WatchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `memwarden completions bash > ~/.local/share/bash-completion/completions/memwarden`;
    /// zsh: into a directory on `$fpath` as `_memwarden`; fish:
    /// `~/.config/fish/completions/memwarden.fish`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one per command into a directory.
    ///
    /// `memwarden man-page | man -l -`, or `memwarden man-page --out /usr/local/share/man/man1`.
    ManPage(ManPageArgs),
    /// Kills the workers' process groups if the harness dies (started by the harness).
    #[command(hide = true)]
    Guardian,
    /// The fixture worker used by tests and the demo.
    #[command(hide = true)]
    FixtureWorker(crate::fixture_worker::FixtureArgs),
    /// Compacts one closed segment log into Parquet (started by the harness, so that the
    /// supervisor never holds a segment in memory).
    #[command(hide = true)]
    CompactSegment { log: std::path::PathBuf },
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A run directory written by `memwarden run` or `attach`.
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print the simulation as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write an incident report with the simulated actions into this directory.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Leave out what only this host can tell (for reports kept in a repository).
    #[arg(long, hide = true)]
    pub no_host: bool,
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// --duration is required: how long the soak lasts (2m in CI, 12h before a rollout).
    #[command(flatten)]
    pub record: RecordArgs,
    /// Number of copies of the command to run; each starts again when it finishes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Time between SIGTERM and SIGKILL when stopping a worker [default: the policy's, 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<Duration>,
    /// Growth a worker may show and still pass (e.g. 1MiB/trial, 50MiB/h) [default: any leak
    /// fails].
    #[arg(long, value_name = "SIZE/trial|SIZE/h", value_parser = parse_budget)]
    pub max_growth: Option<GrowthBudget>,
    /// Write a report checkpoint (and publish it) this often.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_positive_duration)]
    pub checkpoint: Duration,
    /// Copy the run directory into this directory after each checkpoint and at the end.
    #[arg(long, value_name = "DIR")]
    pub publish: Option<PathBuf>,
    /// Run this command after each checkpoint and at the end: a JSON array of strings, where
    /// `{run_dir}` becomes the run directory, e.g. '["rsync", "-a", "{run_dir}", "host:/runs/"]'
    /// (run as argv, never through a shell).
    #[arg(long, value_name = "JSON", value_parser = parse_publish_command)]
    pub publish_cmd: Option<PublishCommand>,
    /// Print the verdict as JSON (also written to RUN_DIR/verdict.json).
    #[arg(long)]
    pub json: bool,
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

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// The recording whose trial to replay.
    pub run_dir: PathBuf,
    /// The trial to replay, by its recorded id.
    #[arg(long, required_unless_present = "bisect")]
    pub trial: Option<String>,
    /// The worker that ran it, when several ran a trial with that id.
    #[arg(long)]
    pub worker: Option<u32>,
    /// Run the trial this many times in one worker process, so a leak accumulates: an Optuna
    /// study's first optimize() runs them (no script needed); another worker reads
    /// MEMWARDEN_TRIAL_REPEAT.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub repeat: u32,
    /// The first N repeats are warm-up (imports, lazy state, allocator pools): shown, not fitted.
    #[arg(long, value_name = "N", default_value_t = crate::analysis::repeats::DEFAULT_WARMUP)]
    pub warmup: u32,
    /// Run each repeat in a fresh process, to tell a per-process cost from a per-trial leak.
    #[arg(long)]
    pub isolate: bool,
    /// Find the leaking parameter values: from the cleanest recorded trial, change one
    /// parameter at a time (suspects first, continuous ones at three points of their range)
    /// until the values found explain the run's growth.
    #[arg(long, conflicts_with = "trial")]
    pub bisect: bool,
    /// With --bisect, test every parameter, not only until the run's growth is explained.
    #[arg(long, requires = "bisect")]
    pub exhaustive: bool,
    /// Print the outcome as JSON (on stdout) instead of sentences.
    #[arg(long)]
    pub json: bool,
    /// Time between SIGTERM and SIGKILL when stopping the worker.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// More environment for the replayed worker, e.g. `--env MALLOC_ARENA_MAX=2` to confirm an
    /// allocator-retention diagnosis (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// Do not trace the Python allocations of the replayed trials (on by default for replay,
    /// which runs few trials and wants the line that leaks).
    #[arg(long)]
    pub no_trace_python: bool,
    /// The worker command, e.g. the one the run used. `{name}` in an argument becomes the
    /// trial's parameter `name` (one argument, verbatim, never through a shell); all parameters
    /// are also in MEMWARDEN_TRIAL_PARAMS as JSON.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManPageArgs {
    /// Write `memwarden.1` and a `memwarden-COMMAND.1` per command into this directory instead
    /// of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// A run directory written by `run`, `attach` or `soak` (finished, or ended abruptly).
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// The fleet layout's root (created if missing): a local directory, or a mount of shared
    /// storage; sync it to object storage with the usual tools.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The fleet layout's root, as `publish` writes it.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Only runs started this recently (e.g. 24h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Print the answers as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write a Markdown report with plots into DIR.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The run directory being recorded (or already finished).
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// Without a terminal, print the view's lines this often.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub every: Duration,
    /// Do not write a report when the run has ended and has none yet.
    #[arg(long)]
    pub no_report: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Table {
    /// One row per process per tick.
    Samples,
    /// One row per tick: system memory, swap, PSI, the harness's own RSS.
    System,
    /// Worker starts and exits, trial boundaries, notes.
    Events,
    /// One row per trial: worker, start, end, state, value, parameters.
    Trials,
    /// Condensed memory maps taken at trial boundaries.
    Smaps,
    /// What each traced Python process still held at each trial's end, one row per
    /// allocation site (`--trace-python`).
    Sites,
    /// One row per worker with a memory cgroup of its own per tick: usage by kind, OOM and
    /// limit counters.
    Cgroups,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Parquet,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A run directory written by `memwarden run` or `attach`.
    pub run_dir: PathBuf,
    #[arg(long, value_enum, default_value = "samples")]
    pub table: Table,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// File to write [default: standard output]
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A run directory written by `memwarden run` or `attach`, or a published run
    /// (DEST/runs/host=H/run=R).
    pub run_dir: PathBuf,
    /// Print the findings as JSON (the stable document described in the README).
    #[arg(long)]
    pub json: bool,
    /// How far ahead the forecast plans (e.g. the length of a soak).
    #[arg(long, value_name = "DURATION", default_value = "12h", value_parser = parse_duration)]
    pub horizon: Duration,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A run directory written by `memwarden run` or `attach`, or a published run
    /// (DEST/runs/host=H/run=R).
    pub run_dir: PathBuf,
    /// The most retained growth allowed per worker: a size per trial or per hour. For a run of
    /// repeated tests, per repeat of each test (a `memwarden_budget` marker overrides it).
    #[arg(long, value_name = "SIZE/trial|SIZE/h", value_parser = parse_budget)]
    pub max_growth: GrowthBudget,
    /// Judge only this memory kind (pss, uss, anon, file, shmem, swap, gpu, rss). Default:
    /// every kind with enough data, any over the budget failing.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    pub kind: Option<Kind>,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The recording before the change (a run directory or a published run).
    pub before: PathBuf,
    /// The recording after it.
    pub after: PathBuf,
    /// The memory kind compared (pss, uss, anon, file, shmem, swap, gpu, rss). Default: the
    /// kind a leaking worker's verdict rests on.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    pub kind: Option<Kind>,
    /// Print the comparison as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A run directory written by `memwarden run` or `attach` (leave it out to report from
    /// --worker-log and --kernel-log alone).
    #[arg(required_unless_present = "worker_logs")]
    pub run_dir: Option<PathBuf>,
    /// Directory for report.md and plots/ [default: RUN_DIR/report, or ./memwarden-report]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Draw the plots as SVG instead of PNG.
    #[arg(long)]
    pub svg: bool,
    /// Kernel log text (`dmesg`, `dmesg -T` or `journalctl -k` output) whose OOM kills go on
    /// the timeline; may be given more than once.
    #[arg(long = "kernel-log", value_name = "FILE")]
    pub kernel_logs: Vec<PathBuf>,
    /// An Optuna log a worker wrote outside the harness (the first --worker-log is worker 0's,
    /// and so on): its trials are used for workers the recording has no trials for.
    #[arg(long = "worker-log", value_name = "FILE")]
    pub worker_logs: Vec<PathBuf>,
    /// Leave out what only this host can tell (its boot id now): for reports kept in a
    /// repository, which must not depend on where they were written.
    #[arg(long, hide = true)]
    pub no_host: bool,
    /// Also write the findings (as `analyze --json` prints them, less the per-trial list) to
    /// this file: a soak's checkpoint runs the report in a child process and judges from them.
    #[arg(long, hide = true, value_name = "FILE")]
    pub findings_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run directory to create [default: ./memwarden-runs/<UTC timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Trials per worker (about 1.5 s each).
    #[arg(long, default_value_t = 40)]
    pub trials: u32,
}

mod config;
mod run;
mod values;

pub use run::*;
use values::*;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
