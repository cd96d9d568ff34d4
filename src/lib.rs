//! memwarden: a supervisor, profiler and post-mortem writer for memory leaks in long-running
//! ML training and hyperparameter-search workers.
//!
//! `probe` reads /proc; `sampler` turns probes into ticks on a fixed cadence; `supervisor` owns
//! worker processes and their output; `recording` owns the on-disk format; `harness` runs a
//! recording session; `analysis` turns a recording into findings; `commands` are the
//! subcommands.

pub mod analysis;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod exit;
pub mod freshness;
pub mod harness;
pub mod plot;
pub mod policy;
pub mod probe;
pub mod recording;
pub mod replay;
pub mod report;
pub mod sampler;
pub mod soak;
pub mod supervisor;
pub mod units;

#[doc(hidden)]
#[path = "../fixtures/worker.rs"]
pub mod fixture_worker;
