//! What goes into the engine and what comes out: readings and events in, actions out, and the
//! counters a run's summary reads.

use crate::recording::PolicyAction;
use std::collections::BTreeMap;
use std::time::Duration;

/// Memory at one tick: the system's, and each running worker's tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub psi_full_avg10: Option<f64>,
    /// The memory cgroup's limit, where one below the host's memory applies: total and
    /// available memory above are within it.
    pub limit_bytes: Option<u64>,
    pub workers: BTreeMap<u32, WorkerMemory>,
    /// Each GPU device's memory: (device, used, total). Empty where not measured.
    pub devices: Vec<(u32, u64, u64)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkerMemory {
    /// The tree's PSS (RSS for processes whose PSS was not read yet or went stale).
    pub pss_bytes: u64,
    pub gpu_bytes: Option<u64>,
    /// Some process of the tree counts by RSS: its PSS was not read yet or went stale.
    pub pss_stale: bool,
    /// The anonymous and shared memory its own cgroup holds (only a restart frees it), where
    /// the worker has a cgroup of its own.
    pub cgroup_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Tick(Reading),
    TrialStart {
        worker: u32,
        /// The trial's id, as the worker's line gave it (named when the trial is lost).
        trial: String,
    },
    TrialEnd {
        worker: u32,
    },
    /// A cooperative worker asks whether it may start a trial.
    Ask {
        worker: u32,
    },
    /// The worker's main process ended; `success`: exit code 0.
    WorkerExit {
        worker: u32,
        success: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Go,
    /// Ask again after this long.
    Wait(Duration),
    /// Do not start: the worker is about to be stopped.
    Abort,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    /// Start the worker (`attempt` 0) or start it again.
    Start {
        attempt: u32,
    },
    /// SIGTERM to its process group, the grace period, then SIGKILL.
    Stop,
    /// SIGSTOP to its process group, between trials.
    Pause,
    /// SIGCONT.
    Resume,
    /// SIGUSR1: a cooperative worker abandons its running trial.
    AbortTrial,
    /// The brake held long enough: the worker named is restarted (at once when it is held or
    /// between trials, else within `restart.grace`), or, without a worker, why none could be.
    Escalate,
    Answer(Answer),
    BrakeOn,
    BrakeOff,
    /// A crashed worker starts again after `delay`.
    BackOff {
        delay: Duration,
    },
    /// The worker stays down (a crash loop, or a canary that does not fit); the run is degraded.
    GiveUp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub t_ns: u64,
    pub worker: Option<u32>,
    pub kind: ActionKind,
    pub reason: String,
    pub worker_pss_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
}

impl Action {
    /// What recordings call it.
    pub fn name(&self) -> PolicyAction {
        match self.kind {
            ActionKind::Start { attempt: 0 } => PolicyAction::Start,
            ActionKind::Start { .. } => PolicyAction::Restart,
            ActionKind::Stop => PolicyAction::Stop,
            ActionKind::Pause => PolicyAction::Pause,
            ActionKind::Resume => PolicyAction::Resume,
            ActionKind::AbortTrial => PolicyAction::AbortTrial,
            ActionKind::Escalate => PolicyAction::Escalate,
            ActionKind::Answer(Answer::Go) => PolicyAction::Go,
            ActionKind::Answer(Answer::Wait(_)) => PolicyAction::Refuse,
            ActionKind::Answer(Answer::Abort) => PolicyAction::Abort,
            ActionKind::BrakeOn => PolicyAction::BrakeOn,
            ActionKind::BrakeOff => PolicyAction::BrakeOff,
            ActionKind::BackOff { .. } => PolicyAction::BackOff,
            ActionKind::GiveUp => PolicyAction::GiveUp,
        }
    }
}

/// What the engine did over a run, for summaries and verdicts.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Counters {
    /// Trials refused or held back (a wait answer or a pause) while the brake was on.
    pub brakes: u64,
    pub brake_engagements: u64,
    pub escalations: u64,
    /// Restarts by rule: `escalation`, `pss_limit`, `every_trials`, ...
    pub restarts: BTreeMap<String, u64>,
    pub crashes: u64,
    pub degraded: Vec<String>,
}
