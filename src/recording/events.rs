//! The events memwarden records beside its samples: workers started and ended, trial
//! boundaries with their parameters, what the tracer and the tensor census report, and what
//! the policy did. Field names are part of the recording format (see FORMAT.md), as in
//! `schema`.

use super::schema::SharedMemoryFile;
use serde::{Deserialize, Serialize};

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

/// How a parameter value is written as text (into an argument, a directory name, a sentence):
/// strings bare, everything else as JSON.
pub fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

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
        /// The native sampler in that process: `on ...`, `off: why`, or `not preloaded`
        /// (absent in older recordings).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        native: Option<String>,
    },
    /// A Python process that imported torch, traced in diagnoses only, begins one at the end of
    /// `trial`: its next `trials` trials are traced in full (the heap's and the native
    /// sampler's lines, the tensor census), because of `why` (its memory grew).
    PythonDiagnose {
        pid: i32,
        trial: String,
        trials: u32,
        why: String,
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
    /// Native allocations (malloc and its kin: PyTorch's CPU tensors, NumPy's buffers) as the
    /// preloaded sampler saw them, each sample standing for its bytes (`_native.py`).
    Native,
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
