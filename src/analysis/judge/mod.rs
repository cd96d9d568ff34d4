//! Verdicts from the loaded levels: per worker and kind, OOM kills, containment, memory outside the trees, the forecast, CI gates and comparisons, and the findings document they make.

pub mod compare;
pub mod containment;
pub(crate) mod findings;
pub(crate) mod forecast;
pub mod gates;
pub mod gpu_allocator;
pub mod oom;
pub mod outside;
pub mod per_test;
pub mod repeats;
pub(crate) mod verdict;
pub(crate) mod worker;
