//! The sampling thread: a fixed cadence from the monotonic clock, tiered by cost.
//!
//! Every tick: system memory and PSI, and the cheap counters of every process of every worker's
//! tree. A worker with a memory cgroup of its own (`worker_cgroup`) is also read from its cgroup
//! every tick, one read for the whole tree; a large tree's processes (over 8) are then read about
//! 80 process-reads a second (once a second at least), at its trial boundaries and whenever the
//! cgroup's members change, so that a 300-process worker does not cost 300 reads a tick.
//! smaps_rollup (PSS, USS) as the CPU budget allows, and for a whole worker at each of its
//! trial boundaries. Full smaps at trial boundaries, on a thread of its own so a slow snapshot
//! of a big process never delays a tick. A tick that runs past its interval is reported as an
//! overrun event; the cadence skips ahead rather than bursting to catch up.
//!
//! A PSS read stands for its process only while fresh (`freshness`): past that, and before a
//! process's first read, the policy's reading takes its RSS, and the run is told once per
//! process. Per worker, the sampler counts the ticks on which its PSS was read and fresh: the
//! sampler-health line at the end of every run.

mod gpu;
pub mod hold_budget;
pub mod rollup_budget;
mod sampling;
mod shm;
mod snapshots;
mod tree;
mod worker_cgroup;

pub use hold_budget::HoldLimits;
pub use sampling::{Control, Sampler, SamplerConfig, SamplerStats};
