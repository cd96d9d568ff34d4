//! Reading a recording into per-trial levels and timelines: its columns, the sparse fill of budgeted reads, the walk of each segment, the workers' own cgroups, how each trial's end was read, and the inputs the policy engine is replayed on.

pub mod boundary;
pub(crate) mod cgroups;
pub(crate) mod coarse_series;
pub(crate) mod columns;
pub(crate) mod fill;
pub(crate) mod levels;
pub(crate) mod loaded;
pub mod policy_inputs;
pub(crate) mod process_levels;
pub(crate) mod read;
pub(crate) mod walk;
