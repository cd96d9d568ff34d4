//! memwarden: a supervisor, profiler and post-mortem writer for memory leaks in long-running
//! ML training and hyperparameter-search workers.
//!
//! What each module owns:
//! - `probe` reads /proc (and NVML); nothing else touches them.
//! - `sampler` turns probes into ticks on a fixed cadence, under a CPU budget for the costly
//!   reads; `freshness` says how long a budgeted reading still stands.
//! - `supervisor` owns worker processes: spawning, process groups, signals, the guardian,
//!   output lines and trial boundaries, the trial gate, per-worker memory cgroups and systemd.
//! - `recording` owns the on-disk format: framing, writer, reader, compaction, tables.
//! - `harness` runs one recording session from start to end, feeding the policy engine.
//! - `live` folds a run's records into what it looks like now and shows that while it runs
//!   (and from another terminal: `watch`); `console` owns memwarden's lines on stderr, so a
//!   note never lands inside the live view.
//! - `policy` decides (brake, escalation, restarts), pure, live and simulated.
//! - `analysis` turns a recording into findings; `report` writes them as Markdown and `plot`
//!   draws the charts.
//! - `pytrace` ships the Python helper and allocation tracer, installs them for the workers
//!   and reads back what the tracer reports.
//! - `soak` runs a soak beside the harness and judges it; `replay` repeats recorded trials and
//!   bisects their parameters, its session beside the harness too.
//! - `metrics` serves the live status to Prometheus (`/metrics`, node_exporter's textfile);
//!   `fleet` publishes runs into a Parquet layout and answers questions over many of them.
//! - `frames` is the part of polars memwarden uses (tables, Parquet, CSV), under one prelude.
//! - `stats` holds the pure statistics (trends, tests, medians) that analysis, the live view,
//!   replay and the fleet share.
//! - `stop_token` is how memwarden's own loops wait: until their time is up or they are stopped.
//! - `few` is the small sorted map a per-trial value keeps (a BTreeMap node is 11 entries).
//! - `markdown` escapes worker-controlled text for every Markdown output (report, fleet).
//! - `redact` masks secrets in command lines and text before anything is written.
//! - `units` parses and prints sizes, durations and clock times; `clock` pairs the run's
//!   monotonic and wall clocks; `exit` maps outcomes to exit codes.
//! - `attended` is a recording someone watches: the live view, the metrics exporter, and the
//!   summary, verdict and report at its end (run, attach, demo, watch, soak).
//! - `cli` is the command line and `commands` the subcommands, glue over the rest.
//! - `fixture_worker` is the stand-in trial worker that tests and the demo run.
//!
//! The floors, from the top: a module imports only from floors below its own, never beside or
//! above it (the integration test `house` holds the code to this table).
//!
//! | floor | modules |
//! |---|---|
//! | 8 | `commands` |
//! | 7 | `cli`, `soak`, `replay`, `attended` |
//! | 6 | `harness`, `metrics`, `fleet`, `fixture_worker` |
//! | 5 | `sampler`, `live`, `report` |
//! | 4 | `supervisor`, `analysis` |
//! | 3 | `probe`, `policy`, `pytrace` |
//! | 2 | `recording`, `plot` |
//! | 1 | `units`, `clock`, `exit`, `console`, `markdown`, `redact`, `few`, `freshness`, `frames`, `stats`, `stop_token` |

pub mod analysis;
pub mod attended;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod console;
pub mod exit;
pub mod few;
pub mod fleet;
pub mod frames;
pub mod freshness;
pub mod harness;
pub mod live;
pub mod markdown;
pub mod metrics;
pub mod plot;
pub mod policy;
pub mod probe;
pub mod pytrace;
pub mod recording;
pub mod redact;
pub mod replay;
pub mod report;
pub mod sampler;
pub mod soak;
pub mod stats;
pub mod stop_token;
pub mod supervisor;
pub mod units;

#[doc(hidden)]
pub mod fixture_worker;
