//! The records memwarden writes: raw observations only. Rates, deltas and verdicts are derived at
//! analysis time, so a new finding never needs a new recording. Field names are part of the
//! recording format (see FORMAT.md); add fields as `Option` with `#[serde(default)]` to stay
//! readable by older readers.

use serde::{Deserialize, Serialize};

/// Bumped when a reader of the previous version could not read a new recording. 2: the
/// system, cgroups and GPU tables' columns are spelled as their records' fields
/// (`mem_available_bytes`, was `mem_available`); format 1 is still read (`columns`).
pub const FORMAT_VERSION: u32 = 2;

/// One sampling tick: the system counters and every process of every worker's tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Monotonic nanoseconds since the run started (CLOCK_MONOTONIC; immune to clock changes).
    pub t_ns: u64,
    /// Wall-clock nanoseconds since the Unix epoch at the same instant.
    pub wall_ns: u64,
    pub system: SystemSample,
    pub processes: Vec<ProcessSample>,
    /// Each GPU's memory, when NVML (or the test fake) answers; empty means not measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuDeviceSample>,
    /// Each worker's own memory cgroup, where it has one; empty means none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<WorkerCgroupSample>,
}

/// One worker's own memory cgroup at one tick: the whole tree's memory in one read, whatever
/// its size. `None` where this cgroup version has no such counter (v1: `kernel`, `sock`,
/// `high`, `max`, `psi_full_total_us`; v2: `failcnt`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerCgroupSample {
    pub worker: u32,
    /// The worker's own limit as memwarden set it (`None`: no limit of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    /// v2 memory.current, v1 memory.usage_in_bytes.
    pub usage_bytes: u64,
    pub anon_bytes: Option<u64>,
    pub file_bytes: Option<u64>,
    pub shmem_bytes: Option<u64>,
    pub kernel_bytes: Option<u64>,
    pub sock_bytes: Option<u64>,
    pub mapped_file_bytes: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
    pub failcnt: Option<u64>,
    pub high: Option<u64>,
    pub max: Option<u64>,
    pub psi_full_total_us: Option<u64>,
}

/// One GPU device at one tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuDeviceSample {
    pub device: u32,
    pub used_bytes: u64,
    pub total_bytes: u64,
    /// Percent of the driver's last sample period that a kernel ran, where it says.
    pub utilization_percent: Option<u32>,
}

/// System-wide memory and pressure, read every tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemSample {
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
    /// Memory PSI; `None` where the kernel has no /proc/pressure (never a fake zero).
    pub psi_some_avg10: Option<f32>,
    pub psi_full_avg10: Option<f32>,
    pub psi_some_total_us: Option<u64>,
    pub psi_full_total_us: Option<u64>,
    /// The harness's own RSS, so a recording shows that the profiler itself does not grow.
    pub harness_rss_bytes: u64,
    /// The memory cgroup whose limit applies (see the manifest's `memory_cgroup`): its limit,
    /// usage, working set (usage less inactive file pages), OOM counters (v2 `memory.events`;
    /// v1 `memory.oom_control` and `memory.failcnt`) and PSI. Absent where there is no memory
    /// cgroup, the counter does not exist in that version, or the read failed: never a zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_limit_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_usage_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_working_set_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_oom: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_oom_kill: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_failcnt: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_psi_full_avg10: Option<f32>,
    /// Bytes allocated by the files in `/dev/shm` and their number, as last listed (every few
    /// seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_files: Option<u64>,
    /// Memory in use that no worker's tree accounts for: the memory cgroup's working set (the
    /// host's total less available where no cgroup limit applies) less the trees' PSS (RSS for
    /// processes whose PSS is not known). memwarden itself, `/dev/shm`, page tables and kernel
    /// memory, and on a host every other process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_trees_bytes: Option<u64>,
}

impl SystemSample {
    /// `(total, available)` as the workers can use them: the host's, or within the memory
    /// cgroup's limit when that is smaller (the limit less the cgroup's working set, which is
    /// what ends in an OOM kill there).
    pub fn effective_memory(&self) -> (u64, u64) {
        within_limit(
            self.mem_total_bytes,
            self.mem_available_bytes,
            self.cgroup_limit_bytes,
            self.cgroup_working_set_bytes,
        )
    }
}

/// The host's total and available memory, bounded by a cgroup limit and its working set.
pub fn within_limit(
    total: u64,
    available: u64,
    limit: Option<u64>,
    working_set: Option<u64>,
) -> (u64, u64) {
    match limit {
        Some(limit) => (
            total.min(limit),
            available.min(limit.saturating_sub(working_set.unwrap_or(0))),
        ),
        None => (total, available),
    }
}

/// One process of one worker's tree at one tick. Bytes throughout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSample {
    pub worker: u32,
    pub pid: i32,
    pub rss: u64,
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    pub swap: u64,
    /// From smaps_rollup, read only on the ticks the CPU budget (or a trial boundary) allows.
    pub pss: Option<u64>,
    /// Private clean + private dirty, from the same smaps_rollup read as `pss`.
    pub uss: Option<u64>,
    /// GPU memory used by this process, from NVML; `None` where it is not measured (no GPU, no
    /// driver, or per-process attribution impossible), never a fake 0.
    #[serde(default)]
    pub gpu: Option<u64>,
}

/// Something that happened, on the same clock as the ticks.
/// How many `/dev/shm` files a `SharedMemory` event lists.
pub const SHARED_MEMORY_FILES: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedMemoryFile {
    pub name: String,
    pub bytes: u64,
    pub mapped: bool,
}

/// The full memory map of one process at a trial boundary, condensed: file mappings summed per
/// path, small anonymous regions summed into one row, and anonymous regions of 1 MiB or more kept
/// one by one (glibc arenas, tensors and leaks show up as large regions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmapsSnapshot {
    pub t_ns: u64,
    pub worker: u32,
    pub pid: i32,
    /// The trial whose boundary this is, when known.
    pub trial: Option<String>,
    pub boundary: Boundary,
    pub mappings: Vec<Mapping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Boundary {
    TrialStart,
    TrialEnd,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    /// `[heap]`, `[stack]`, `[anon]`, `[anon<1MiB]`, a file path, a `/dev/shm` path, ...
    pub name: String,
    /// Start address of the region (0 for summed rows).
    pub start: u64,
    /// How many regions this row sums.
    pub regions: u32,
    pub size: u64,
    pub rss: u64,
    pub pss: u64,
    pub private: u64,
    pub anonymous: u64,
    pub swap: u64,
}

#[cfg(test)]
mod tests {
    use super::within_limit;

    #[test]
    fn a_cgroup_limit_bounds_what_the_workers_have() {
        const GIB: u64 = 1 << 30;
        // The host has 20 GiB free; the container's 1.5 GiB limit has 0.25 GiB left.
        assert_eq!(
            within_limit(24 * GIB, 20 * GIB, Some(3 * GIB / 2), Some(5 * GIB / 4)),
            (3 * GIB / 2, GIB / 4)
        );
        // A host shorter than the limit is the bound; no limit is the host's memory.
        assert_eq!(
            within_limit(8 * GIB, GIB, Some(16 * GIB), Some(2 * GIB)),
            (8 * GIB, GIB)
        );
        assert_eq!(within_limit(8 * GIB, GIB, None, None), (8 * GIB, GIB));
        // A working set over the limit leaves nothing, never wraps.
        assert_eq!(
            within_limit(8 * GIB, GIB, Some(GIB), Some(2 * GIB)),
            (GIB, 0)
        );
    }
}
