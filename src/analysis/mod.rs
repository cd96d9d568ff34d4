//! Leak analysis: from a recording to findings. Per trial, per worker and per process the
//! baseline, peak and retained levels of each memory kind; a verdict per worker and kind from a
//! robust trend (leak, plateau, stable, insufficient data); where the growth is (process, kind,
//! mappings); which trial parameters go with it; and when memory runs out at that rate.
//!
//! The inner plan, from the bottom (each part uses only those below it):
//! - `kind`, `measures`: the memory kinds and the measured values findings are made of;
//! - `load/`: the only part that touches the recording (through polars): per-trial levels,
//!   timelines, how each trial's end was read, the policy engine's inputs;
//! - `locate/`: where growth is (mappings, traced lines, tensor holders, parameter values);
//! - `judge/`: verdicts, OOM kills, containment, the forecast, CI gates, and the findings
//!   document they make;
//! - `analyze`, `attribution`, `logs_only`: the pipeline from a recording to its findings,
//!   with `tracer_notes`, what the Python tracer did, in the run's notes;
//! - `words/`: findings put into words once, for every renderer.
//!
//! Everything after `load` is pure and is tested on synthetic series.

mod analyze;
mod attribution;
mod judge;
mod kind;
mod load;
mod locate;
mod logs_only;
mod measures;
mod tracer_notes;
mod words;

pub use judge::{compare, containment, gates, gpu_allocator, oom, outside, per_test, repeats};
pub use load::{boundary, policy_inputs};
pub use locate::{holders, sites, study};
pub use words::{brief, statements, text};

pub use analyze::*;
pub use judge::findings::*;
pub use judge::forecast::{forecast, Machine, WorkerRates};
pub use judge::verdict::{classify, stitch, Classification, Rules, Verdict};
pub use kind::{Kind, Values, KINDS};
pub use load::coarse_series::{slot, Bucket, Timeline};
pub use load::levels::{windows, Levels, SeriesWalker, TrialWindow};
pub use load::loaded::{MappingRow, SystemSummary};
pub use load::process_levels::ProcessLevels;
pub use locate::location::{categorize, mapping_growth, HEAP_HINT};
pub use locate::params::{parameter_effects, TrialGrowth, MAX_CATEGORIES};
pub use logs_only::logs_only;
pub use measures::*;
