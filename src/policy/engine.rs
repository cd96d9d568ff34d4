//! The policy engine. It owns no clock, process or file: each input carries its time, and the
//! actions it returns are carried out by the harness (live) or by the simulator. One rule per
//! method; every action says why, and what memory looked like at that moment.

use super::config::{Policy, Threshold};
use crate::analysis::text::size;
use std::collections::BTreeMap;
use std::time::Duration;

/// Memory at one tick: the system's, and each running worker's tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub psi_full_avg10: Option<f64>,
    pub workers: BTreeMap<u32, WorkerMemory>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkerMemory {
    /// The tree's PSS (RSS for processes whose PSS was not read yet).
    pub pss_bytes: u64,
    pub gpu_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Tick(Reading),
    TrialStart {
        worker: u32,
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
    /// The event name in recordings: `start`, `stop`, `brake_on`, `refuse`, ...
    pub fn name(&self) -> &'static str {
        match self.kind {
            ActionKind::Start { attempt: 0 } => "start",
            ActionKind::Start { .. } => "restart",
            ActionKind::Stop => "stop",
            ActionKind::Pause => "pause",
            ActionKind::Resume => "resume",
            ActionKind::AbortTrial => "abort_trial",
            ActionKind::Answer(Answer::Go) => "go",
            ActionKind::Answer(Answer::Wait(_)) => "refuse",
            ActionKind::Answer(Answer::Abort) => "abort",
            ActionKind::BrakeOn => "brake_on",
            ActionKind::BrakeOff => "brake_off",
            ActionKind::BackOff { .. } => "back_off",
            ActionKind::GiveUp => "give_up",
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

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Not started: due at a time, or held until the canary has shown it fits (`None`).
    Waiting(Option<u64>),
    Running,
    /// Stop requested; its exit is ours.
    Stopping,
    /// Crashed; starts again at this time.
    Backoff(u64),
    /// Finished, or given up.
    Down,
}

#[derive(Debug, Clone)]
struct PendingRestart {
    rule: &'static str,
    reason: String,
    deadline_ns: u64,
}

#[derive(Debug, Clone)]
struct Worker {
    phase: Phase,
    attempt: u32,
    started_ns: u64,
    trial_running: bool,
    trials_this_attempt: u32,
    cooperative: bool,
    paused: bool,
    restart: Option<PendingRestart>,
    stop_rule: Option<&'static str>,
    consecutive_crashes: u32,
    memory: WorkerMemory,
    /// Highest PSS of this attempt, and PSS at each trial end (the canary's evidence).
    peak_pss_bytes: u64,
    trial_end_pss: Vec<u64>,
}

impl Worker {
    fn new(phase: Phase) -> Self {
        Self {
            phase,
            attempt: 0,
            started_ns: 0,
            trial_running: false,
            trials_this_attempt: 0,
            cooperative: false,
            paused: false,
            restart: None,
            stop_rule: None,
            consecutive_crashes: 0,
            memory: WorkerMemory::default(),
            peak_pss_bytes: 0,
            trial_end_pss: Vec::new(),
        }
    }
}

pub struct Engine {
    policy: Policy,
    workers: Vec<Worker>,
    reading: Option<Reading>,
    brake_since_ns: Option<u64>,
    brakes_in_a_row: u32,
    canary_pending: bool,
    shutting_down: bool,
    counters: Counters,
    out: Vec<Action>,
    now_ns: u64,
}

impl Engine {
    /// An engine that starts `workers` workers itself (staggered and canary-gated as the policy
    /// says); call [`Engine::begin`] first.
    pub fn new(policy: Policy, workers: u32) -> Self {
        Self {
            workers: (0..workers)
                .map(|_| Worker::new(Phase::Waiting(None)))
                .collect(),
            policy,
            reading: None,
            brake_since_ns: None,
            brakes_in_a_row: 0,
            canary_pending: false,
            shutting_down: false,
            counters: Counters::default(),
            out: Vec::new(),
            now_ns: 0,
        }
    }

    /// The first starts, due now or later.
    pub fn begin(&mut self, t_ns: u64) -> Vec<Action> {
        self.now_ns = t_ns;
        let stagger_ns = self.stagger_ns();
        let canary = self.policy.start.canary_trials.is_some() && self.workers.len() > 1;
        for (index, worker) in self.workers.iter_mut().enumerate() {
            worker.phase = if canary && index > 0 {
                Phase::Waiting(None)
            } else {
                Phase::Waiting(Some(t_ns + stagger_ns * index as u64))
            };
        }
        self.canary_pending = canary;
        self.start_due();
        std::mem::take(&mut self.out)
    }

    /// For a simulation: the workers are running already, as the recording shows.
    pub fn adopt_running(&mut self, t_ns: u64) {
        self.now_ns = t_ns;
        for worker in &mut self.workers {
            worker.phase = Phase::Running;
            worker.started_ns = t_ns;
        }
    }

    /// No more starts: the run is ending.
    pub fn shut_down(&mut self) {
        self.shutting_down = true;
    }

    /// Every worker is down for good: finished, or given up.
    pub fn finished(&self) -> bool {
        self.workers.iter().all(|w| w.phase == Phase::Down)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn brake_on(&self) -> bool {
        self.brake_since_ns.is_some()
    }

    /// Whether the worker has asked before a trial (and so is not paused by the brake).
    pub fn is_cooperative(&self, worker: u32) -> bool {
        self.workers
            .get(worker as usize)
            .is_some_and(|w| w.cooperative)
    }

    pub fn step(&mut self, t_ns: u64, input: Input) -> Vec<Action> {
        self.now_ns = self.now_ns.max(t_ns);
        match input {
            Input::Tick(reading) => self.tick(reading),
            Input::TrialStart { worker } => {
                if let Some(w) = self.worker_mut(worker) {
                    w.trial_running = true;
                }
            }
            Input::TrialEnd { worker } => self.trial_end(worker),
            Input::Ask { worker } => self.ask(worker),
            Input::WorkerExit { worker, success } => self.exit(worker, success),
        }
        std::mem::take(&mut self.out)
    }

    fn worker_mut(&mut self, worker: u32) -> Option<&mut Worker> {
        self.workers.get_mut(worker as usize)
    }

    fn stagger_ns(&self) -> u64 {
        self.policy
            .start
            .stagger
            .as_ref()
            .map_or(0, |s| s.get_ref().as_nanos() as u64)
    }

    fn act(&mut self, worker: Option<u32>, kind: ActionKind, reason: impl Into<String>) {
        let worker_pss_bytes = worker
            .and_then(|w| self.workers.get(w as usize))
            .map(|w| w.memory.pss_bytes)
            .filter(|&pss| pss > 0);
        self.out.push(Action {
            t_ns: self.now_ns,
            worker,
            kind,
            reason: reason.into(),
            worker_pss_bytes,
            available_bytes: self.reading.as_ref().map(|r| r.mem_available_bytes),
        });
    }

    /// The memory the brake and the floor compare with, and the whole their shares are of.
    fn headroom(&self) -> Option<(u64, u64)> {
        let reading = self.reading.as_ref()?;
        Some(match self.policy.budget_bytes() {
            Some(budget) => {
                let used: u64 = self.workers.iter().map(|w| w.memory.pss_bytes).sum();
                (
                    reading.mem_available_bytes.min(budget.saturating_sub(used)),
                    budget,
                )
            }
            None => (reading.mem_available_bytes, reading.mem_total_bytes),
        })
    }

    fn headroom_words(&self) -> &'static str {
        if self.policy.budget.is_some() {
            "headroom"
        } else {
            "available memory"
        }
    }

    fn tick(&mut self, reading: Reading) {
        for (index, worker) in self.workers.iter_mut().enumerate() {
            match reading.workers.get(&(index as u32)) {
                Some(memory) if worker.phase == Phase::Running => {
                    worker.memory = *memory;
                    worker.peak_pss_bytes = worker.peak_pss_bytes.max(memory.pss_bytes);
                }
                Some(memory) => worker.memory = *memory,
                None => worker.memory = WorkerMemory::default(),
            }
        }
        self.reading = Some(reading);
        self.start_due();
        self.emergency();
        self.brake();
        self.escalate();
        self.limits();
        self.deadlines();
    }

    fn start_due(&mut self) {
        let now = self.now_ns;
        for index in 0..self.workers.len() {
            let worker = &self.workers[index];
            let (due, why) = match worker.phase {
                Phase::Waiting(Some(at)) => (at <= now, "first start"),
                Phase::Backoff(at) => (at <= now, "back-off after a crash ended"),
                _ => (false, ""),
            };
            if due && !self.shutting_down {
                self.start(index as u32, why.to_string());
            }
        }
    }

    fn start(&mut self, worker: u32, reason: String) {
        let now = self.now_ns;
        let Some(w) = self.worker_mut(worker) else {
            return;
        };
        if !matches!(w.phase, Phase::Waiting(_)) {
            w.attempt += 1;
        }
        w.phase = Phase::Running;
        w.started_ns = now;
        w.trial_running = false;
        w.trials_this_attempt = 0;
        w.paused = false;
        w.restart = None;
        w.stop_rule = None;
        w.peak_pss_bytes = 0;
        w.trial_end_pss.clear();
        let attempt = w.attempt;
        self.act(Some(worker), ActionKind::Start { attempt }, reason);
    }

    fn emergency(&mut self) {
        let Some(floor) = self
            .policy
            .restart
            .emergency_floor
            .as_ref()
            .map(|f| *f.get_ref())
        else {
            return;
        };
        let Some((headroom, whole)) = self.headroom() else {
            return;
        };
        let floor_bytes = floor.resolve(whole);
        // One at a time: the next tick sees what the last restart freed.
        let stopping = self
            .workers
            .iter()
            .any(|w| w.stop_rule == Some("emergency"));
        if headroom >= floor_bytes || stopping {
            return;
        }
        if let Some(worker) = self.largest(|_| true) {
            let reason = format!(
                "emergency: {} {} is under the floor of {}; restarting the largest worker at once",
                self.headroom_words(),
                size(headroom as f64),
                share(floor_bytes, floor)
            );
            self.stop(worker, "emergency", reason);
        }
    }

    /// The running worker with the most PSS among those `eligible`.
    fn largest(&self, eligible: impl Fn(&Worker) -> bool) -> Option<u32> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.phase == Phase::Running && eligible(w))
            .max_by_key(|(_, w)| w.memory.pss_bytes)
            .map(|(index, _)| index as u32)
    }

    fn brake(&mut self) {
        let Some((headroom, whole)) = self.headroom() else {
            return;
        };
        let threshold = *self.policy.brake.min_headroom.get_ref();
        let min_bytes = threshold.resolve(whole);
        let max_psi = self.policy.brake.max_psi_full;
        let psi = self.reading.as_ref().and_then(|r| r.psi_full_avg10);
        if self.brake_since_ns.is_none() {
            let reason = if headroom < min_bytes {
                format!(
                    "{} {} is under {}",
                    self.headroom_words(),
                    size(headroom as f64),
                    share(min_bytes, threshold)
                )
            } else if psi.is_some_and(|p| p > max_psi) {
                format!(
                    "memory pressure (PSI full avg10) {:.1}% is over {max_psi}%",
                    psi.unwrap_or_default()
                )
            } else {
                return;
            };
            self.brake_since_ns = Some(self.now_ns);
            self.brakes_in_a_row = 0;
            self.counters.brake_engagements += 1;
            self.act(
                None,
                ActionKind::BrakeOn,
                format!("{reason}: no new trials"),
            );
            for index in 0..self.workers.len() as u32 {
                let w = &self.workers[index as usize];
                if w.phase == Phase::Running && !w.trial_running {
                    self.hold_back(index);
                }
            }
            return;
        }
        // Hysteresis: released a quarter above the threshold, and at half the pressure limit, so
        // the brake does not flap at the edge.
        let recovered =
            headroom >= min_bytes + min_bytes / 4 && psi.is_none_or(|p| p <= max_psi / 2.0);
        if recovered {
            self.brake_since_ns = None;
            self.brakes_in_a_row = 0;
            let reason = format!(
                "{} recovered to {}",
                self.headroom_words(),
                size(headroom as f64)
            );
            self.act(None, ActionKind::BrakeOff, reason);
            for index in 0..self.workers.len() as u32 {
                if self.workers[index as usize].paused {
                    self.workers[index as usize].paused = false;
                    self.act(Some(index), ActionKind::Resume, "the brake is off");
                }
            }
        }
    }

    /// A trial held back by the brake: a non-cooperative worker between trials is paused.
    fn hold_back(&mut self, worker: u32) {
        let w = &self.workers[worker as usize];
        if w.cooperative || w.paused || !self.policy.brake.pause || w.restart.is_some() {
            return;
        }
        self.workers[worker as usize].paused = true;
        self.note_brake();
        self.act(
            Some(worker),
            ActionKind::Pause,
            "the brake is on: paused between trials",
        );
    }

    fn note_brake(&mut self) {
        self.counters.brakes += 1;
        self.brakes_in_a_row += 1;
    }

    fn escalate(&mut self) {
        let Some(since) = self.brake_since_ns else {
            return;
        };
        let after = &self.policy.escalation;
        let long = self.now_ns.saturating_sub(since) >= after.after.as_nanos() as u64;
        if self.brakes_in_a_row < after.after_brakes && !long {
            return;
        }
        let Some(worker) = self.largest(|w| w.restart.is_none()) else {
            return;
        };
        let why = if self.brakes_in_a_row >= after.after_brakes {
            format!("the brake refused {} trials in a row", self.brakes_in_a_row)
        } else {
            format!(
                "the brake has been on for {}",
                crate::analysis::text::duration(self.now_ns.saturating_sub(since) as f64 / 1e9)
            )
        };
        // Counted afresh: if memory does not recover, the next worker follows after as many.
        self.brakes_in_a_row = 0;
        self.brake_since_ns = Some(self.now_ns);
        self.counters.escalations += 1;
        let pss = size(self.workers[worker as usize].memory.pss_bytes as f64);
        let reason =
            format!("escalation: {why}; worker {worker} holds the most memory ({pss} PSS)");
        if self.workers[worker as usize].cooperative && self.workers[worker as usize].trial_running
        {
            self.act(Some(worker), ActionKind::AbortTrial, reason.clone());
        }
        self.request_restart(worker, "escalation", reason);
    }

    fn limits(&mut self) {
        let restart = self.policy.restart.clone();
        for index in 0..self.workers.len() as u32 {
            let w = &self.workers[index as usize];
            if w.phase != Phase::Running || w.restart.is_some() {
                continue;
            }
            let uptime_ns = self.now_ns.saturating_sub(w.started_ns);
            let (rule, reason) = if let Some(max) = restart
                .max_worker_pss
                .as_ref()
                .map(|m| *m.get_ref())
                .filter(|&m| w.memory.pss_bytes > m)
            {
                (
                    "pss_limit",
                    format!(
                        "PSS {} passed the limit of {}",
                        size(w.memory.pss_bytes as f64),
                        size(max as f64)
                    ),
                )
            } else if let Some((gpu, max)) = w
                .memory
                .gpu_bytes
                .zip(restart.max_worker_gpu.as_ref().map(|m| *m.get_ref()))
                .filter(|(g, m)| g > m)
            {
                (
                    "gpu_limit",
                    format!(
                        "GPU memory {} passed the limit of {}",
                        size(gpu as f64),
                        size(max as f64)
                    ),
                )
            } else if let Some(every) = restart
                .every
                .as_ref()
                .map(|e| *e.get_ref())
                .filter(|e| uptime_ns >= e.as_nanos() as u64)
            {
                (
                    "every",
                    format!("it has run for {}", humantime::format_duration(every)),
                )
            } else {
                continue;
            };
            self.request_restart(index, rule, reason);
        }
    }

    fn deadlines(&mut self) {
        for index in 0..self.workers.len() as u32 {
            let w = &self.workers[index as usize];
            let Some(pending) = w.restart.clone() else {
                continue;
            };
            if w.phase == Phase::Running && self.now_ns >= pending.deadline_ns {
                let reason = format!(
                    "{}; its trial did not end within {}",
                    pending.reason,
                    humantime::format_duration(self.policy.restart.deadline)
                );
                self.stop(index, pending.rule, reason);
            }
        }
    }

    /// Restarts wait for the running trial to end (up to the deadline), so its work is kept.
    fn request_restart(&mut self, worker: u32, rule: &'static str, reason: String) {
        let deadline_ns = self.now_ns + self.policy.restart.deadline.as_nanos() as u64;
        let w = &mut self.workers[worker as usize];
        if w.phase != Phase::Running || w.restart.is_some() {
            return;
        }
        if w.trial_running {
            w.restart = Some(PendingRestart {
                rule,
                reason,
                deadline_ns,
            });
        } else {
            self.stop(worker, rule, reason);
        }
    }

    fn stop(&mut self, worker: u32, rule: &'static str, reason: String) {
        let w = &mut self.workers[worker as usize];
        w.phase = Phase::Stopping;
        w.stop_rule = Some(rule);
        w.restart = None;
        w.paused = false;
        *self.counters.restarts.entry(rule.to_string()).or_default() += 1;
        self.act(Some(worker), ActionKind::Stop, reason);
    }

    fn trial_end(&mut self, worker: u32) {
        let Some(w) = self.worker_mut(worker) else {
            return;
        };
        if w.phase != Phase::Running {
            return;
        }
        w.trial_running = false;
        w.trials_this_attempt += 1;
        w.consecutive_crashes = 0;
        w.trial_end_pss.push(w.memory.pss_bytes);
        let done = w.trials_this_attempt;
        if let Some(pending) = w.restart.take() {
            self.stop(worker, pending.rule, pending.reason);
        } else if let Some(every) = self.policy.restart.every_trials.filter(|&n| done >= n) {
            self.stop(
                worker,
                "every_trials",
                format!("it completed {every} trials"),
            );
        } else if self.brake_on() {
            self.hold_back(worker);
        }
        if worker == 0 && self.canary_pending {
            self.canary();
        }
    }

    fn ask(&mut self, worker: u32) {
        let Some(w) = self.worker_mut(worker) else {
            return;
        };
        w.cooperative = true;
        if w.phase != Phase::Running {
            self.act(
                Some(worker),
                ActionKind::Answer(Answer::Abort),
                "the worker is being stopped",
            );
        } else if let Some(pending) = w.restart.take() {
            self.act(
                Some(worker),
                ActionKind::Answer(Answer::Abort),
                pending.reason.clone(),
            );
            self.stop(worker, pending.rule, pending.reason);
        } else if self.brake_on() {
            self.note_brake();
            let wait = self.policy.brake.wait;
            self.act(
                Some(worker),
                ActionKind::Answer(Answer::Wait(wait)),
                "the brake is on: no new trials",
            );
            self.escalate();
        } else {
            self.act(Some(worker), ActionKind::Answer(Answer::Go), "");
        }
    }

    fn exit(&mut self, worker: u32, success: bool) {
        let restart = self.policy.restart.clone();
        let (now, shutting_down) = (self.now_ns, self.shutting_down);
        let Some(w) = self.worker_mut(worker) else {
            return;
        };
        let phase = std::mem::replace(&mut w.phase, Phase::Down);
        w.trial_running = false;
        w.paused = false;
        w.restart = None;
        w.memory = WorkerMemory::default();
        match phase {
            Phase::Stopping if !shutting_down => {
                let rule = w.stop_rule.unwrap_or("restart");
                self.start(worker, format!("stopped by the {rule} rule"));
            }
            Phase::Running if success => {
                if restart.when_finished && !shutting_down {
                    self.start(worker, "it finished its trials".into());
                } else if worker == 0 && self.canary_pending {
                    // It ran all it had without trouble: nothing more to learn by waiting.
                    self.canary_pending = false;
                    let stagger_ns = self.stagger_ns();
                    for (step, w) in self.workers.iter_mut().skip(1).enumerate() {
                        w.phase = Phase::Waiting(Some(now + stagger_ns * step as u64));
                    }
                    self.start_due();
                }
            }
            Phase::Running => {
                w.consecutive_crashes += 1;
                let crashes = w.consecutive_crashes;
                self.counters.crashes += 1;
                if crashes > restart.max_crashes {
                    let reason = format!("it crashed {crashes} times in a row: it stays down");
                    self.counters
                        .degraded
                        .push(format!("worker {worker}: {reason}"));
                    self.act(Some(worker), ActionKind::GiveUp, reason);
                } else {
                    let doubling = 2u32.saturating_pow(crashes - 1);
                    let wait = restart
                        .backoff
                        .get_ref()
                        .saturating_mul(doubling)
                        .min(*restart.backoff_max.get_ref());
                    self.workers[worker as usize].phase =
                        Phase::Backoff(now + wait.as_nanos() as u64);
                    let reason = format!(
                        "it crashed ({crashes} in a row): starting it again in {}",
                        humantime::format_duration(wait)
                    );
                    self.act(Some(worker), ActionKind::BackOff { delay: wait }, reason);
                }
            }
            Phase::Stopping => {}
            other => self.workers[worker as usize].phase = other,
        }
    }

    /// The canary has completed its trials: the others start if its peak, times the number of
    /// workers, fits under the brake's threshold, and its growth per trial is within limits.
    fn canary(&mut self) {
        let Some(needed) = self.policy.start.canary_trials else {
            return;
        };
        let canary = &self.workers[0];
        if (canary.trials_this_attempt as usize) < needed as usize {
            return;
        }
        let Some((_, whole)) = self.headroom() else {
            return;
        };
        self.canary_pending = false;
        let levels = &canary.trial_end_pss;
        let growth = match (levels.first(), levels.last()) {
            (Some(first), Some(last)) if levels.len() > 1 => {
                last.saturating_sub(*first) / (levels.len() as u64 - 1)
            }
            _ => 0,
        };
        let peak = canary.peak_pss_bytes.max(1);
        let usable = whole.saturating_sub(self.policy.brake.min_headroom.get_ref().resolve(whole));
        let total = self.workers.len() as u64;
        let fit = (usable / peak).clamp(1, total);
        let others = self.workers.len() as u32 - 1;
        if let Some(max) = self
            .policy
            .start
            .canary_max_growth
            .as_ref()
            .map(|m| *m.get_ref())
        {
            if growth > max {
                let reason = format!(
                    "the canary retained {} per trial over {needed} trials, over the limit of {}: the other {others} worker(s) stay down",
                    size(growth as f64),
                    size(max as f64)
                );
                self.give_up_waiting(1, reason);
                return;
            }
        }
        let started = fit as u32;
        let stagger_ns = self.stagger_ns();
        let now = self.now_ns;
        for (step, index) in (1..started).enumerate() {
            self.workers[index as usize].phase =
                Phase::Waiting(Some(now + stagger_ns * step as u64));
        }
        if started < total as u32 {
            let reason = format!(
                "the canary peaked at {} PSS: {started} of {total} workers fit in {}",
                size(peak as f64),
                size(usable as f64)
            );
            self.give_up_waiting(started, reason);
        }
        self.start_due();
    }

    fn give_up_waiting(&mut self, from: u32, reason: String) {
        self.counters.degraded.push(reason.clone());
        for index in from..self.workers.len() as u32 {
            self.workers[index as usize].phase = Phase::Down;
            self.act(Some(index), ActionKind::GiveUp, reason.clone());
        }
    }
}

/// `3.20 GiB (10%)`, or `1.00 GiB` for a threshold given as a size.
fn share(bytes: u64, threshold: Threshold) -> String {
    match threshold {
        Threshold::Percent(_) => format!("{} ({threshold})", size(bytes as f64)),
        Threshold::Bytes(_) => size(bytes as f64),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
