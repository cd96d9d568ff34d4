//! Leak analysis: from a recording to findings. Per trial, per worker and per process the
//! baseline, peak and retained levels of each memory kind; a verdict per worker and kind from a
//! robust trend (leak, plateau, stable, insufficient data); where the growth is (process, kind,
//! mappings); which trial parameters go with it; and when memory runs out at that rate.
//!
//! Only `load` touches the recording (through polars); everything after it is pure and is
//! tested on synthetic series. `gates` judges findings against CI budgets and compares runs.

mod analyze;
pub mod boundary;
pub mod brief;
mod coarse_series;
mod columns;
pub mod compare;
pub mod containment;
mod fill;
mod findings;
mod forecast;
pub mod gates;
pub mod gpu_allocator;
pub mod holders;
mod kind;
mod levels;
mod load;
mod loaded;
mod locate;
mod location;
mod logs_only;
mod measures;
pub mod oom;
pub mod outside;
mod params;
pub mod per_test;
pub mod policy_inputs;
mod process_levels;
pub mod repeats;
mod site_series;
pub mod sites;
pub mod statements;
pub mod study;
pub mod text;
mod verdict;
mod walk;
mod worker;
pub use analyze::*;
pub use coarse_series::{slot, Bucket, Timeline};
pub use findings::*;
pub use forecast::{forecast, Machine, WorkerRates};
pub use kind::{Kind, Values, KINDS};
pub use levels::{windows, Levels, SeriesWalker, TrialWindow};
pub use loaded::SystemSummary;
pub use location::{categorize, mapping_growth, MappingRow, HEAP_HINT};
pub use logs_only::logs_only;
pub use measures::*;
pub use params::{parameter_effects, TrialGrowth, MAX_CATEGORIES};
pub use process_levels::ProcessLevels;
pub use verdict::{classify, stitch, Classification, Rules, Verdict};
