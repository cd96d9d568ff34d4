//! What analysis finds, as the stable document `memwarden analyze --json` prints. Bytes
//! throughout (`*_bytes`, rates in `*_bytes` per trial or per hour); times in nanoseconds since
//! the run started. Fields are only ever added; `schema_version` goes up if one changes meaning.

use super::verdict::Verdict;
use crate::analysis::kind::Kind;
use crate::analysis::load::levels::Levels;
use crate::analysis::load::process_levels::ProcessLevels;
use crate::analysis::measures::{MappingFinding, ParameterFinding, Rate};
pub use crate::few::Few;
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Findings {
    pub schema_version: u32,
    pub run: RunSummary,
    /// The worst worker verdict.
    pub verdict: Verdict,
    pub workers: Vec<WorkerFinding>,
    /// Trial parameters that go with retained growth, most significant first.
    pub parameters: Vec<ParameterFinding>,
    pub forecast: Option<Forecast>,
    /// Things a reader should know (no trials seen, damaged records, ...).
    pub notes: Vec<String>,
    pub trials: Vec<TrialRecord>,
    /// Per worker, on how many ticks its PSS was read and fresh (absent in older documents).
    #[serde(default)]
    pub sampler_health: Vec<SamplerHealth>,
    /// Per worker, how each trial's retained level was read at its end (absent in older
    /// documents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boundary_reads: Vec<crate::analysis::load::boundary::BoundaryReads>,
    /// The kernel's OOM kills as the memory cgroup's counter saw them; absent where no counter
    /// was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_kills: Option<super::oom::OomKills>,
    /// `/dev/shm` and the memory no worker's tree accounts for; absent where not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_trees: Option<super::outside::OutsideTrees>,
    /// How the policy's brake and restarts went, where the brake engaged (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containment: Option<super::containment::Containment>,
    /// Available memory fell under 10% of the total (within the memory cgroup's limit where
    /// one applied), or memory PSI full reached 10%; false where nothing was recorded.
    #[serde(default)]
    pub memory_pressure: bool,
}

/// The machine ran short of memory: available memory under 10% of the total, or memory PSI
/// full at 10% or more.
pub fn under_pressure(system: &crate::analysis::load::loaded::SystemSummary) -> bool {
    system.min_available_bytes < 0.1 * system.mem_total_bytes
        || system.max_psi_full_avg10.is_some_and(|p| p >= 10.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplerHealth {
    pub worker: u32,
    #[serde(flatten)]
    pub pss: crate::freshness::PssHealth,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub dir: String,
    pub mode: String,
    pub status: Ending,
    pub workers: u32,
    pub start: String,
    pub duration_s: f64,
    pub trials_seen: bool,
    pub trials: usize,
    pub process_samples: u64,
    pub damaged_records: usize,
}

/// How the recording ended, as `analyze --json` words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    #[serde(rename = "finished")]
    Finished,
    /// The harness never wrote its end (a crash, a kill, a power loss).
    #[serde(rename = "ended abruptly")]
    EndedAbruptly,
    /// No recording: trials from worker logs alone.
    #[serde(rename = "from logs")]
    FromLogs,
    /// Still being recorded by a live harness (a checkpoint).
    #[serde(rename = "running")]
    Running,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Finished => "finished",
            Self::EndedAbruptly => "ended abruptly",
            Self::FromLogs => "from logs",
            Self::Running => "still running",
        })
    }
}

/// Whether rates were fitted per trial or, with no trials, over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    Trials,
    Time,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerFinding {
    pub worker: u32,
    pub trials: usize,
    /// The verdict of `kind`.
    pub verdict: Verdict,
    /// The memory kind that grows (anon, shmem, swap or gpu), or PSS/RSS when none is measured.
    pub kind: Kind,
    pub basis: Basis,
    pub kinds: Vec<KindFinding>,
    /// The process of the tree that holds the growth.
    pub process: Option<ProcessFinding>,
    /// Mappings of that process that grew between trial-boundary snapshots.
    pub mappings: Vec<MappingFinding>,
    pub hints: Vec<String>,
    /// Lines of Python code whose retained allocations grow (`--trace-python`), fastest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<crate::analysis::locate::sites::SiteFinding>,
    /// Holders of PyTorch tensors whose bytes grow (`--trace-python`'s tensor census),
    /// fastest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<crate::analysis::locate::holders::HolderFinding>,
    /// How much the worker was traced, and how much of its growth the sites explain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<crate::analysis::locate::sites::Tracing>,
    /// Mechanisms that are not a line of code, with their evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnoses: Vec<Diagnosis>,
}

/// A named mechanism behind a worker's growth, with the numbers that show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mechanism", rename_all = "snake_case")]
pub enum Diagnosis {
    /// Forked processes privatize pages they inherited by reading them (reference counts are
    /// writes): proportional set size grows across the children while resident size stays
    /// flat. The PyTorch DataLoader problem (pytorch/pytorch#13246).
    CopyOnRead {
        /// Forked processes whose own memory grows.
        processes: usize,
        /// Their median growth per trial.
        per_process_bytes_per_trial: f64,
        /// Their share of the tree's growth.
        children_share: f64,
        /// The tree's resident growth per trial, for comparison (flat under copy-on-read).
        rss_bytes_per_trial: f64,
    },
    /// Resident memory grows while the live objects the tracer sees do not, though the trials
    /// allocate and free much more: freed memory is not given back (arenas, fragmentation).
    /// PyTorch's live tensors on the GPU grow: tensors kept from trial to trial.
    GpuTensors {
        allocated_bytes_per_trial: f64,
        reserved_bytes_per_trial: f64,
    },
    /// Only what PyTorch's caching allocator reserves grows, not its live tensors: caching or
    /// fragmentation, which `torch.cuda.empty_cache()` returns; not a leak of tensors.
    GpuAllocatorCache {
        reserved_bytes_per_trial: f64,
        allocated_bytes_per_trial: f64,
        inactive_split_bytes: f64,
    },
    /// GPU memory grows outside PyTorch's allocator: what the driver reports for the process
    /// less what PyTorch reserves (CUDA contexts, cuDNN/cuBLAS workspaces, NCCL, other libraries).
    GpuOutsideTorch {
        device_bytes_per_trial: f64,
        reserved_bytes_per_trial: f64,
    },
    AllocatorRetention {
        resident_bytes_per_trial: f64,
        /// What the traced lines retain per trial.
        traced_bytes_per_trial: f64,
        /// The most traced memory alive at once within a trial (median over trials).
        traced_peak_bytes: f64,
    },
}

impl WorkerFinding {
    pub fn kind_finding(&self, kind: Kind) -> Option<&KindFinding> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// The measured growth per trial of one kind, in bytes.
    pub fn per_trial_bytes(&self, kind: Kind) -> Option<f64> {
        self.kind_finding(kind)
            .and_then(|k| k.per_trial)
            .map(|r| r.bytes)
    }

    /// The fastest-growing line of the worker's own code (not the search framework's state):
    /// the one a verdict names.
    pub fn top_site(&self) -> Option<&crate::analysis::locate::sites::SiteFinding> {
        crate::analysis::locate::sites::top(&self.sites)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindFinding {
    pub kind: Kind,
    pub verdict: Verdict,
    pub basis: Basis,
    /// The growth that continues (after a plateau or step, the rate since then).
    pub per_trial: Option<Rate>,
    pub per_hour: Option<Rate>,
    /// One-sided confidence that retained memory grows (Mann–Kendall).
    pub confidence: f64,
    pub first_clear_trial: Option<String>,
    pub plateau_from_trial: Option<String>,
    pub step: Option<StepFinding>,
    /// Retained at the end minus retained at the start (medians of the first and last points).
    pub growth_bytes: f64,
    pub first_bytes: Option<f64>,
    pub last_bytes: Option<f64>,
    /// The highest level seen during a trial, and the typical transient above the baseline.
    pub peak_bytes: Option<f64>,
    pub transient_bytes: Option<f64>,
    pub points: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFinding {
    pub trial: String,
    pub size_bytes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessFinding {
    pub pid: i32,
    pub command: String,
    /// The worker's main process, as opposed to a child it forked.
    pub main: bool,
    pub verdict: Verdict,
    pub per_trial: Option<Rate>,
    /// The process's share of the tree's growth rate (0..1, may exceed 1 when others shrink).
    pub share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub mem_total_bytes: f64,
    pub available_bytes: f64,
    /// What the workers may use: total minus a 10% reserve minus what else the host used.
    pub budget_bytes: f64,
    pub workers: u32,
    pub growth_bytes_per_hour: f64,
    pub growth_bytes_per_trial: f64,
    pub exhausted_in_hours: Option<f64>,
    pub exhausted_in_trials: Option<f64>,
    pub horizon_hours: f64,
    /// The most workers that fit for the horizon without restarts.
    pub max_workers: Option<u32>,
    pub restart_every_trials: Option<u64>,
    pub restart_every_minutes: Option<f64>,
    /// A per-worker limit that keeps `workers` workers within the budget.
    pub worker_limit_bytes: Option<f64>,
    pub advice: Vec<String>,
    /// The run's recorded span when too short for a rate per hour: the outlook is in trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_window_s: Option<f64>,
}

/// A trial as findings tell it. It reads and writes `processes` as a map from pid to levels
/// whichever way they are kept (see [`ProcessLevels`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "TrialJson<Few<i32, Levels>>")]
pub struct TrialRecord {
    pub worker: u32,
    pub trial: crate::recording::Short,
    pub ordinal: usize,
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    pub state: crate::recording::Short,
    pub params: crate::recording::Params,
    /// Each kind's levels (the kinds with any), as `{kind: LevelTriple}`.
    pub tree: Levels,
    pub processes: ProcessLevels,
}

impl TrialRecord {
    /// `pid`'s own levels in this trial.
    pub fn process(&self, pid: i32) -> Option<&Levels> {
        self.processes.get(pid, Some(&self.tree))
    }
}

/// A trial record as JSON holds it.
#[derive(Serialize, Deserialize)]
struct TrialJson<P> {
    worker: u32,
    trial: crate::recording::Short,
    ordinal: usize,
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    state: crate::recording::Short,
    params: crate::recording::Params,
    tree: Levels,
    processes: P,
}

impl From<TrialJson<Few<i32, Levels>>> for TrialRecord {
    fn from(t: TrialJson<Few<i32, Levels>>) -> Self {
        Self {
            processes: ProcessLevels::from_own(t.processes, Some(&t.tree)),
            worker: t.worker,
            trial: t.trial,
            ordinal: t.ordinal,
            start_ns: t.start_ns,
            end_ns: t.end_ns,
            state: t.state,
            params: t.params,
            tree: t.tree,
        }
    }
}

/// A trial's processes, written as a map from pid to levels.
struct ProcessesJson<'a>(&'a TrialRecord);

impl Serialize for ProcessesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.processes.iter(Some(&self.0.tree)))
    }
}

impl Serialize for TrialRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TrialJson {
            worker: self.worker,
            trial: self.trial.clone(),
            ordinal: self.ordinal,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            state: self.state.clone(),
            params: self.params.clone(),
            tree: self.tree.clone(),
            processes: ProcessesJson(self),
        }
        .serialize(serializer)
    }
}
