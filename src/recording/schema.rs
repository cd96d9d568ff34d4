//! The records memwarden writes: raw observations only. Rates, deltas and verdicts are derived at
//! analysis time, so a new finding never needs a new recording. Field names are part of the
//! recording format (see FORMAT.md); add fields as `Option` with `#[serde(default)]` to stay
//! readable by older readers.

use serde::{Deserialize, Serialize};

/// Bumped when a reader of the previous version could not read a new recording.
pub const FORMAT_VERSION: u32 = 1;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub t_ns: u64,
    pub wall_ns: u64,
    /// The worker it concerns; `None` for run-wide events.
    pub worker: Option<u32>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A trial's parameters, shared by its event, its trial and its analysis record (copies were a
/// third of what analysis held per trial), in a small sorted map that reads and writes as JSON's
/// object did.
pub type Params = std::sync::Arc<ParamMap>;

/// A trial's parameters by name.
pub type ParamMap = crate::few::Few<Short, serde_json::Value>;

/// A short text kept once per trial (its id, its state, a parameter's name): up to 24 bytes
/// inline, without an allocation of its own; it reads, writes and compares as a `String` does.
pub type Short = compact_str::CompactString;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A worker process was started (`attempt` counts restarts, 0 for the first start) or, in
    /// attach mode, adopted.
    WorkerStart {
        pid: i32,
        pgid: i32,
        attempt: u32,
    },
    /// A worker's main process ended. Both fields are `None` when the exit status cannot be
    /// known (an attached process that is not our child).
    WorkerExit {
        pid: i32,
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// A process joined a worker's tree. `start_ticks` (field 22 of /proc/PID/stat) makes the
    /// identity unique: a recycled pid has another start time.
    ProcessSeen {
        pid: i32,
        ppid: i32,
        start_ticks: u64,
        command: String,
    },
    ProcessGone {
        pid: i32,
    },
    /// What `/dev/shm` holds, recorded when it changed (its files, largest first, at most
    /// [`SHARED_MEMORY_FILES`]; `mapped`: some process of a worker's tree maps it).
    SharedMemory {
        total_bytes: u64,
        files: Vec<SharedMemoryFile>,
        /// Files left out of the list.
        more: u64,
    },
    /// A tracked process replaced its program (execve): same pid, a new address space and
    /// command line. Samples from this event on describe the new program; budgeted values
    /// (PSS, USS, GPU) read before it never stand in for it.
    Exec {
        pid: i32,
        start_ticks: u64,
        command: String,
    },
    TrialStart {
        trial: Short,
        params: Params,
        source: TrialSource,
    },
    TrialEnd {
        trial: Short,
        state: Short,
        value: Option<serde_json::Value>,
        /// The worker's memory read at the end line: by the worker itself (the helper), or by
        /// the harness as the line arrived. `None` in older recordings and where neither could.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory: Option<EndMemory>,
    },
    /// Ticks that could not be taken on time because a tick ran past its interval.
    SamplerOverrun {
        missed_ticks: u64,
    },
    /// Samples the writer could not accept in time (a slow disk); sampling never waits for it.
    SamplesDropped {
        count: u64,
    },
    /// A line from memwarden itself about the run (a capability missing, a stop requested).
    Note {
        message: String,
    },
    /// The policy engine acted. Memory is what the engine saw when it decided (`None`: not
    /// known yet).
    Policy {
        action: PolicyAction,
        reason: String,
        #[serde(default)]
        worker_pss_bytes: Option<u64>,
        #[serde(default)]
        available_bytes: Option<u64>,
        /// The action was simulated (`memwarden simulate`), not carried out.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        simulated: bool,
    },
    /// The harness began stopping the run.
    Stop {
        reason: String,
    },
    /// A Python process of the worker started memwarden's tracer (`--trace-python`);
    /// `tracemalloc` is false for a Python built without it (nothing is traced there).
    PythonTracer {
        pid: i32,
        python: Option<String>,
        tracemalloc: bool,
    },
    /// At a trial's end, what a traced Python process still holds by allocation site, of the
    /// memory allocated since its traces were last cleared. Within one `epoch` a site's bytes
    /// are cumulative; the first report of an epoch holds only that trial's allocations.
    PythonSites(Box<PythonSites>),
    /// At a trial's end, who holds the PyTorch tensors still alive in a traced process that
    /// imported torch (`--trace-python`): cumulative per holder.
    PythonTensors(Box<PythonTensors>),
    /// At a trial's end, what PyTorch's CUDA caching allocator held on one device, from
    /// `torch.cuda.memory_stats` in the worker (`--trace-python`; only where the worker had
    /// initialised CUDA itself).
    TorchMemory(TorchMemory),
}

/// The payload of `EventKind::TorchMemory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TorchMemory {
    pub pid: i32,
    pub trial: String,
    pub device: u32,
    /// Bytes in live tensors.
    pub allocated_bytes: u64,
    /// Bytes the allocator holds from the driver (live tensors and its cache).
    pub reserved_bytes: u64,
    /// The most allocated at once during the trial.
    pub peak_allocated_bytes: u64,
    /// Cached blocks split so they cannot serve larger requests (fragmentation).
    pub inactive_split_bytes: u64,
    pub alloc_retries: u64,
    pub ooms: u64,
}

/// The payload of `EventKind::PythonTensors`: the tensor census at one trial end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonTensors {
    pub pid: i32,
    pub trial: String,
    /// Live tensors and the storages they are on, and those storages' bytes.
    pub tensors: u64,
    pub storages: u64,
    pub bytes: u64,
    /// What the census cost the worker, in milliseconds.
    pub cost_ms: f64,
    /// New storages whose holder this census looked for.
    #[serde(default)]
    pub walked: u64,
    /// The largest holders, largest first; a storage keeps the holder it was first found
    /// under. Storages alive before the first trial ended are nobody's.
    pub holders: Vec<TensorHolder>,
}

/// What one holder keeps alive at a trial's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorHolder {
    /// From a root down: `module.NAME`, `module.Class.attr`, `module.OBJ.attr`, or a function's
    /// name for a closure; varying keys and indexes are left out.
    pub holder: String,
    /// The Python type of the holding container (`list`, `dict`, a class name).
    pub container: String,
    /// `module-level`, `attribute`, `closure`, `local variable` or `unknown`.
    pub place: String,
    pub device: String,
    /// Storages the holder's tensors are on (each once), their count and its tensors.
    pub bytes: u64,
    pub storages: u64,
    pub tensors: u64,
    pub largest_bytes: u64,
    /// Of `bytes`, what views pin of storages larger than themselves.
    #[serde(default)]
    pub view_bytes: u64,
    /// Saved tensors the holder's autograd graphs keep (not in `bytes`).
    #[serde(default)]
    pub graph_bytes: u64,
}

/// The payload of `EventKind::PythonSites` (boxed: it is far larger than other events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonSites {
    /// Which memory the sites hold: the Python heap (tracemalloc) or, from PyTorch's caching
    /// allocator, live CUDA tensors.
    #[serde(default)]
    pub memory: SiteMemory,
    pub pid: i32,
    pub trial: String,
    pub epoch: u32,
    /// All traced bytes still held (the tracer's own left out).
    pub traced_bytes: u64,
    /// What the snapshot cost the worker, in milliseconds.
    pub cost_ms: f64,
    /// The most traced memory alive at once during the trial (what it allocated and freed).
    #[serde(default)]
    pub peak_bytes: Option<u64>,
    /// How much longer a traced trial took than an untraced one, when both were measured.
    #[serde(default)]
    pub slowdown: Option<f64>,
    /// Untraced trials the tracer then leaves between stretches of traced ones, to keep the
    /// run's slowdown within its budget.
    #[serde(default)]
    pub gap: Option<u32>,
    /// Trials traced in a row in each stretch.
    #[serde(default)]
    pub stretch: Option<u32>,
    /// The largest sites, largest first; sites below the cut are not listed (not zero).
    pub sites: Vec<PythonSite>,
}

/// What a tracer report's sites measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteMemory {
    /// Blocks of CPython's allocator, as tracemalloc sees them.
    #[default]
    PythonHeap,
    /// Live CUDA blocks of PyTorch's caching allocator, with the stack that allocated them.
    Gpu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonSite {
    /// The innermost frame in the worker's own code (outside the standard library and
    /// installed packages), or the innermost frame when there is none.
    pub file: String,
    pub line: u32,
    pub bytes: u64,
    pub blocks: u64,
    /// The largest of those blocks.
    #[serde(default)]
    pub largest_block: Option<u64>,
    /// The innermost frame, where it is not `file:line` (a library's line that allocated).
    pub via: Option<String>,
    /// What follows the worker's line is the search framework's own code (Optuna): growth
    /// of the study, not of the objective.
    pub study: bool,
    /// The last frames of the largest block's traceback, oldest first, as `file:line`.
    pub traceback: Vec<String>,
}

/// What the policy engine did, as recordings name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    BrakeOn,
    BrakeOff,
    /// A cooperative worker was told to wait.
    Refuse,
    /// A cooperative worker was told to abort (a restart is pending).
    Abort,
    /// A cooperative worker was told to go (not recorded by the harness).
    Go,
    Pause,
    Resume,
    AbortTrial,
    /// The brake held long enough: a restart follows, or the reason says why none can.
    Escalate,
    Stop,
    Start,
    Restart,
    BackOff,
    GiveUp,
}

impl PolicyAction {
    /// The recorded name: `brake_on`, `abort_trial`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BrakeOn => "brake_on",
            Self::BrakeOff => "brake_off",
            Self::Refuse => "refuse",
            Self::Abort => "abort",
            Self::Go => "go",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::AbortTrial => "abort_trial",
            Self::Escalate => "escalate",
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Restart => "restart",
            Self::BackOff => "back_off",
            Self::GiveUp => "give_up",
        }
    }
}

impl std::fmt::Display for PolicyAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A worker's memory at a trial's end line (bytes; the resident counters of its process tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndMemory {
    pub anon_bytes: u64,
    pub file_bytes: u64,
    pub shmem_bytes: u64,
    pub read_by: EndReader,
    /// From the line's arrival to the harness's read (0 when the worker read it itself).
    pub delay_ns: u64,
}

/// Who read the memory at a trial's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReader {
    /// The worker, in its own process, before it printed the line (exact by construction).
    Worker,
    /// The harness, when the line arrived (the worker may have gone on for `delay_ns` more).
    Harness,
}

/// Where a trial boundary was learned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialSource {
    Marker,
    Optuna,
    Regex,
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
