//! What a run looks like now, folded from its records. The harness feeds it every batch its
//! writer writes (`run`, `attach`, `soak`); `watch` feeds it what it reads back from a recording
//! being written. One fold, so the view from another terminal is the view of the run itself.
//! Pure: records in, a status out; no clock, no /proc.

use crate::policy::Counters;
use crate::recording::{Event, EventKind, PolicyAction, SystemSample, Tick};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Trial ends kept per worker for its trend; past this, every other one is dropped, so the
/// trend still spans the whole time since the worker started, at a coarser grain.
const TREND_POINTS: usize = 256;
/// How far apart a worker's SIGKILL exit and the cgroup counter's rise may be seen and still be
/// one OOM kill (the counter is read once a tick; the exit is seen when the harness reaps it).
/// Wider than analysis' two intervals and a half second: the fold does not know the interval.
const OOM_PAIRING_NS: u64 = 5_000_000_000;
/// Notes kept for the view (older ones have been shown already).
const NOTES_KEPT: usize = 32;

/// What a worker is doing, as the records tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerState {
    /// Not started yet (a staggered start, a canary's wait).
    #[default]
    Waiting,
    Running,
    /// Paused by the brake between trials.
    Paused,
    /// Being stopped by the policy, to start again (or by the end of the run).
    Stopping,
    /// Waiting before it is started again after a crash.
    BackingOff,
    /// Exited with status 0.
    Finished,
    /// Exited with a non-zero code memwarden did not cause.
    Exited(i32),
    /// Killed by a signal memwarden did not send.
    Killed(i32),
    /// Stopped by memwarden (the run's end, or a restart).
    Stopped,
    /// Gone, with no exit status to know (an attached process).
    Ended,
    /// The policy stopped starting it again.
    GaveUp,
}

impl WorkerState {
    pub fn words(self) -> String {
        match self {
            Self::Waiting => "waiting".into(),
            Self::Running => "running".into(),
            Self::Paused => "PAUSED (brake)".into(),
            Self::Stopping => "restarting".into(),
            Self::BackingOff => "backing off".into(),
            Self::Finished => "finished".into(),
            Self::Exited(code) => format!("EXITED {code}"),
            Self::Killed(signal) => format!("KILLED (signal {signal})"),
            Self::Stopped => "stopped".into(),
            Self::Ended => "ended".into(),
            Self::GaveUp => "GAVE UP".into(),
        }
    }

    pub fn alive(self) -> bool {
        matches!(self, Self::Running | Self::Paused | Self::Stopping)
    }
}

/// A worker's tree at the last tick. Bytes throughout.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeMemory {
    pub processes: usize,
    /// PSS, with RSS standing in for a process whose PSS is not known yet.
    pub pss_bytes: u64,
    /// Some process was counted by its RSS.
    pub pss_stale: bool,
    pub anon_bytes: u64,
    pub shmem_bytes: u64,
    /// `None` where no process's GPU memory is measured.
    pub gpu_bytes: Option<u64>,
    pub rss_bytes: u64,
    /// USS carried forward like PSS; `None` until every process has had one read.
    pub uss_bytes: Option<u64>,
    pub file_bytes: u64,
    pub swap_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct LiveWorker {
    pub state: WorkerState,
    pub memory: TreeMemory,
    pub in_trial: bool,
    pub starts: u64,
    /// (trials ended in this incarnation, its anonymous memory then), for the trend.
    pub(super) trial_ends: Vec<(u64, u64)>,
    incarnation_trials: u64,
    /// The last PSS and USS read of each process, carried until the next read (as analysis
    /// fills it).
    last_pss: HashMap<i32, (u64, Option<u64>)>,
    /// Trials ended, by how they ended (`complete`, `pruned`, `failed`, `other`: bounded, so a
    /// metric label never takes a worker's own words).
    pub trials_by_state: BTreeMap<&'static str, u64>,
    /// Starts after the first, by why the worker had stopped: `crash` (it exited on its own)
    /// or `policy` (memwarden stopped it).
    pub restarts_by_reason: BTreeMap<&'static str, u64>,
}

impl LiveWorker {
    /// Trials ended since the run began.
    pub fn trials(&self) -> u64 {
        self.trials_by_state.values().sum()
    }

    /// Retained growth per trial since this incarnation started: the Theil–Sen slope of its
    /// anonymous memory at trial ends (the estimate soak has always shown), in bytes.
    /// Fitted when asked (a view's frame, a scrape), not at each trial's end: a fit at every
    /// end of a worker that prints 50,000 trials a second held the writer thread that folds
    /// them, and its trial lines backed up.
    pub fn trend_per_trial(&self) -> Option<f64> {
        let (x, y): (Vec<f64>, Vec<f64>) = self
            .trial_ends
            .iter()
            .map(|&(trial, bytes)| (trial as f64, bytes as f64))
            .unzip();
        crate::stats::theil_sen(&x, &y).map(|fit| fit.slope)
    }

    fn trial_ended(&mut self, state: &str) {
        *self.trials_by_state.entry(trial_state(state)).or_default() += 1;
        self.incarnation_trials += 1;
        self.in_trial = false;
        if self.memory.processes == 0 {
            return; // no reading yet (`watch` joined late): no level to place
        }
        self.trial_ends
            .push((self.incarnation_trials, self.memory.anon_bytes));
        if self.trial_ends.len() > TREND_POINTS {
            let mut index = 0;
            self.trial_ends.retain(|_| {
                index += 1;
                index % 2 == 1
            });
        }
    }

    fn started(&mut self) {
        self.state = WorkerState::Running;
        self.starts += 1;
        self.in_trial = false;
        // A fresh process: what it retains starts afresh.
        self.trial_ends.clear();
        self.incarnation_trials = 0;
        self.last_pss.clear();
    }

    fn sampled(&mut self, processes: &[&crate::recording::ProcessSample]) {
        if processes.is_empty() {
            // Gone: the view keeps showing what it held last.
            self.memory.processes = 0;
            self.last_pss.clear();
            return;
        }
        self.last_pss
            .retain(|pid, _| processes.iter().any(|p| p.pid == *pid));
        let mut memory = TreeMemory {
            processes: processes.len(),
            ..TreeMemory::default()
        };
        let mut uss = Some(0);
        for p in processes {
            if let Some(pss) = p.pss {
                self.last_pss.insert(p.pid, (pss, p.uss));
            }
            match self.last_pss.get(&p.pid) {
                Some(&(pss, process_uss)) => {
                    memory.pss_bytes += pss;
                    uss = uss.zip(process_uss).map(|(a, b)| a + b);
                }
                None => {
                    memory.pss_bytes += p.rss;
                    memory.pss_stale = true;
                    uss = None;
                }
            }
            memory.rss_bytes += p.rss;
            memory.file_bytes += p.file;
            memory.swap_bytes += p.swap;
            memory.anon_bytes += p.anon;
            memory.shmem_bytes += p.shmem;
            if let Some(gpu) = p.gpu {
                *memory.gpu_bytes.get_or_insert(0) += gpu;
            }
        }
        memory.uss_bytes = uss;
        self.memory = memory;
    }
}

/// A trial's end state as one of a few words (a metric label must stay bounded).
fn trial_state(state: &str) -> &'static str {
    match state.to_ascii_lowercase().as_str() {
        "complete" | "completed" | "finished" | "ok" => "complete",
        "pruned" => "pruned",
        "fail" | "failed" | "error" => "failed",
        _ => "other",
    }
}

#[derive(Debug, Clone, Default)]
pub struct LiveStatus {
    /// The run's clock at the newest record.
    pub elapsed_ns: u64,
    pub workers: BTreeMap<u32, LiveWorker>,
    /// The system at the last tick.
    pub system: Option<SystemSample>,
    pub brake_on: bool,
    /// Trials the brake refused or paused a worker for.
    pub held_back: u64,
    /// Worker exits memwarden did not cause.
    pub crashes: u64,
    /// The harness is stopping the run, and why.
    pub stopping: Option<String>,
    /// The newest notes and policy actions, as lines; `notes_total` counts every one so a
    /// reader can tell which it has shown.
    pub notes: VecDeque<String>,
    pub notes_total: u64,
    /// The policy engine's own counters, where it runs in this process (soak judges on them).
    pub engine: Option<Counters>,
    /// Wall-clock time of the newest tick, nanoseconds since the Unix epoch.
    pub last_tick_wall_ns: Option<u64>,
    /// Samples the writer could not take in time, and ticks the sampler could not take on time.
    pub samples_dropped: u64,
    pub missed_ticks: u64,
    /// The memory cgroup's OOM-kill counter at the last tick, its rises since the first
    /// (`(t_ns, how many)`), and the workers' main processes that died of a SIGKILL memwarden
    /// did not send: what `analysis::oom` pairs into kills.
    oom_reading: Option<u64>,
    oom_rises: Vec<(u64, u64)>,
    sigkilled: Vec<crate::analysis::oom::Ended>,
    /// Each worker's own cgroup's oom_kill counter: its last reading and its rises.
    worker_oom: BTreeMap<u32, (u64, Vec<crate::analysis::oom::WorkerRise>)>,
}

pub type SharedStatus = Arc<Mutex<LiveStatus>>;

impl LiveStatus {
    /// Folds records in time order (a tick and the events of the same instant in any order).
    pub fn tick(&mut self, tick: &Tick) {
        self.elapsed_ns = self.elapsed_ns.max(tick.t_ns);
        self.last_tick_wall_ns = Some(tick.wall_ns);
        if let Some(now) = tick.system.cgroup_oom_kill {
            if let Some(count) = crate::analysis::oom::rise(self.oom_reading, now) {
                self.oom_rises.push((tick.t_ns, count));
            }
            self.oom_reading = Some(now);
        }
        for c in &tick.cgroups {
            let Some(now) = c.oom_kill else { continue };
            let (last, rises) = self.worker_oom.entry(c.worker).or_insert((now, Vec::new()));
            if let Some(count) = crate::analysis::oom::rise(Some(*last), now) {
                rises.push((tick.t_ns, count, None));
            }
            *last = now;
        }
        self.system = Some(tick.system.clone());
        let mut trees: BTreeMap<u32, Vec<&crate::recording::ProcessSample>> = BTreeMap::new();
        for p in &tick.processes {
            trees.entry(p.worker).or_default().push(p);
        }
        for (index, worker) in self.workers.iter_mut() {
            let processes = trees.get(index).map_or(&[][..], Vec::as_slice);
            // A worker read from its own cgroup has its processes read once a second: between
            // those reads it is not gone.
            if processes.is_empty() && tick.cgroups.iter().any(|c| c.worker == *index) {
                continue;
            }
            worker.sampled(processes);
        }
        for (index, processes) in trees {
            // A tree seen before its start event (`watch` joined mid-run).
            if let std::collections::btree_map::Entry::Vacant(entry) = self.workers.entry(index) {
                let worker = entry.insert(LiveWorker {
                    state: WorkerState::Running,
                    ..LiveWorker::default()
                });
                worker.sampled(&processes);
            }
        }
    }

    pub fn event(&mut self, event: &Event) {
        self.elapsed_ns = self.elapsed_ns.max(event.t_ns);
        let worker = event.worker;
        match &event.kind {
            EventKind::WorkerStart { attempt, .. } => {
                if let Some(w) = self.entry(worker) {
                    if *attempt > 0 {
                        let reason = match w.state {
                            WorkerState::Exited(_) | WorkerState::Killed(_) => "crash",
                            _ => "policy",
                        };
                        *w.restarts_by_reason.entry(reason).or_default() += 1;
                    }
                    w.started();
                }
            }
            EventKind::WorkerExit { pid, code, signal } => {
                let stopping = self.stopping.is_some();
                let Some(w) = self.entry(worker) else { return };
                w.state = match (code, signal) {
                    _ if stopping => WorkerState::Stopped,
                    // Stopped by the policy: it starts again (or the policy gives up on it).
                    _ if w.state == WorkerState::Stopping => WorkerState::Stopping,
                    (Some(0), _) => WorkerState::Finished,
                    (Some(code), _) => WorkerState::Exited(*code),
                    (None, Some(signal)) => WorkerState::Killed(*signal),
                    (None, None) => WorkerState::Ended,
                };
                w.in_trial = false;
                let state = w.state;
                if matches!(state, WorkerState::Exited(_) | WorkerState::Killed(_)) {
                    self.crashes += 1;
                }
                if let (WorkerState::Killed(libc::SIGKILL), Some(index)) = (state, worker) {
                    self.sigkilled.push(crate::analysis::oom::Ended {
                        worker: index,
                        pid: *pid,
                        t_ns: event.t_ns,
                        main: true,
                    });
                }
            }
            EventKind::TrialStart { .. } => {
                if let Some(w) = self.entry(worker) {
                    w.in_trial = true;
                }
            }
            EventKind::TrialEnd { state, .. } => {
                if let Some(w) = self.entry(worker) {
                    w.trial_ended(state);
                }
            }
            EventKind::SamplesDropped { count } => self.samples_dropped += count,
            EventKind::SamplerOverrun { missed_ticks } => self.missed_ticks += missed_ticks,
            EventKind::Exec { pid, .. } => {
                // PSS read before an exec never stands in for the new program.
                if let Some(w) = self.entry(worker) {
                    w.last_pss.remove(pid);
                }
            }
            EventKind::Policy {
                action,
                reason,
                simulated: false,
                ..
            } => self.policy(worker, *action, reason),
            EventKind::Note { message } => self.note(message.clone()),
            EventKind::Stop { reason } => {
                self.stopping = Some(reason.clone());
                for w in self.workers.values_mut().filter(|w| w.state.alive()) {
                    w.state = WorkerState::Stopping;
                }
            }
            _ => {}
        }
    }

    /// Workers started again (after a crash or by a policy rule).
    pub fn restarts(&self) -> u64 {
        let per_worker = self.workers.values();
        per_worker.flat_map(|w| w.restarts_by_reason.values()).sum()
    }

    /// OOM kills per worker: the counters' rises paired with the SIGKILL exits near them, as
    /// analysis pairs them (a `kill -9` the counters do not show is none).
    pub fn oom_kills(&self) -> BTreeMap<u32, u64> {
        let mut per_worker = BTreeMap::new();
        for worker in self.all_kills().iter().filter_map(|k| k.worker) {
            *per_worker.entry(worker).or_default() += 1;
        }
        per_worker
    }

    /// OOM kills in the memory cgroup and the workers' own since the run began (`None`: no
    /// counter to read).
    pub fn oom_kills_total(&self) -> Option<u64> {
        if self.oom_reading.is_none() && self.worker_oom.is_empty() {
            return None;
        }
        Some(self.all_kills().len() as u64)
    }

    fn all_kills(&self) -> Vec<crate::analysis::oom::OomKill> {
        let workers: Vec<crate::analysis::oom::WorkerCounts> = self
            .worker_oom
            .iter()
            .map(|(&worker, (_, rises))| crate::analysis::oom::WorkerCounts {
                worker,
                rises: rises.clone(),
            })
            .collect();
        crate::analysis::oom::all_kills(
            &self.oom_rises,
            &workers,
            &self.sigkilled,
            OOM_PAIRING_NS,
            &|_, _| None,
        )
    }

    fn entry(&mut self, worker: Option<u32>) -> Option<&mut LiveWorker> {
        worker.map(|w| self.workers.entry(w).or_default())
    }

    fn policy(&mut self, worker: Option<u32>, action: PolicyAction, reason: &str) {
        let state = match action {
            PolicyAction::BrakeOn => {
                self.brake_on = true;
                None
            }
            PolicyAction::BrakeOff => {
                self.brake_on = false;
                None
            }
            PolicyAction::Refuse => {
                self.held_back += 1;
                None
            }
            PolicyAction::Pause => {
                self.held_back += 1;
                Some(WorkerState::Paused)
            }
            PolicyAction::Resume => Some(WorkerState::Running),
            PolicyAction::Stop => Some(WorkerState::Stopping),
            PolicyAction::BackOff => Some(WorkerState::BackingOff),
            PolicyAction::GiveUp => Some(WorkerState::GaveUp),
            PolicyAction::Go
            | PolicyAction::Abort
            | PolicyAction::AbortTrial
            | PolicyAction::Escalate
            | PolicyAction::Start
            | PolicyAction::Restart => None,
        };
        if let (Some(state), Some(w)) = (state, worker.and_then(|w| self.workers.get_mut(&w))) {
            // A worker already gone stays gone until it starts again.
            if w.state.alive() || state == WorkerState::GaveUp || state == WorkerState::BackingOff {
                w.state = state;
            }
        }
        // Routine answers and first starts would bury the rest.
        if !matches!(
            action,
            PolicyAction::Go | PolicyAction::Refuse | PolicyAction::Start
        ) {
            let who = worker.map_or(String::new(), |w| format!("worker {w}: "));
            self.note(format!("{who}{action}: {reason}"));
        }
    }

    fn note(&mut self, line: String) {
        self.notes.push_back(line);
        self.notes_total += 1;
        if self.notes.len() > NOTES_KEPT {
            self.notes.pop_front();
        }
    }

    /// The notes after the first `shown` of all, oldest first.
    pub fn notes_since(&self, shown: u64) -> impl Iterator<Item = &String> {
        let first_kept = self.notes_total - self.notes.len() as u64;
        let skip = shown.saturating_sub(first_kept) as usize;
        self.notes.iter().skip(skip)
    }
}
