//! The engine's state, and its entry points: each input updates what the engine knows and then
//! runs the rules (in `brake` and `lifecycle`) in a fixed order, collecting their actions.

use super::vocabulary::{Action, ActionKind, Counters, Input, Reading, WorkerMemory};
use crate::policy::{Policy, Threshold};
use crate::units::size;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
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
pub(super) struct PendingRestart {
    pub(super) rule: &'static str,
    pub(super) reason: String,
    pub(super) deadline_ns: u64,
    /// How long it waits for the trial's end (`restart.deadline`, or `restart.grace` for an
    /// escalation), for the words when it runs out.
    pub(super) wait: std::time::Duration,
}

#[derive(Debug, Clone)]
pub(super) struct Worker {
    pub(super) phase: Phase,
    pub(super) attempt: u32,
    pub(super) started_ns: u64,
    pub(super) trial_running: bool,
    /// The id of the trial it started last.
    pub(super) trial: Option<String>,
    pub(super) trials_this_attempt: u32,
    pub(super) cooperative: bool,
    pub(super) paused: bool,
    /// While paused: when its held trial was last counted as refused (a paused worker counts
    /// as one refusal per `brake.wait`, as a cooperative worker that asks again would).
    pub(super) held_counted_ns: u64,
    /// While paused: since when (the brake releases the longest held first).
    pub(super) paused_ns: u64,
    pub(super) restart: Option<PendingRestart>,
    pub(super) stop_rule: Option<&'static str>,
    pub(super) consecutive_crashes: u32,
    pub(super) memory: WorkerMemory,
    /// Highest PSS of this attempt, and PSS at each trial end (the canary's evidence).
    pub(super) peak_pss_bytes: u64,
    pub(super) trial_end_pss: Vec<u64>,
}

impl Worker {
    fn new(phase: Phase) -> Self {
        Self {
            phase,
            attempt: 0,
            started_ns: 0,
            trial_running: false,
            trial: None,
            trials_this_attempt: 0,
            cooperative: false,
            paused: false,
            held_counted_ns: 0,
            paused_ns: 0,
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
    pub(super) policy: Policy,
    pub(super) workers: Vec<Worker>,
    pub(super) reading: Option<Reading>,
    /// The headroom at recent ticks (t_ns, bytes), back to the latest one a reading interval
    /// old; how fast it falls over that stretch (bytes/s); and the reading interval.
    pub(super) recent: std::collections::VecDeque<(u64, u64)>,
    pub(super) falling_per_s: f64,
    pub(super) interval_ns: u64,
    pub(super) brake_since_ns: Option<u64>,
    pub(super) brakes_in_a_row: u32,
    pub(super) canary_pending: bool,
    pub(super) shutting_down: bool,
    pub(super) counters: Counters,
    pub(super) out: Vec<Action>,
    pub(super) now_ns: u64,
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
            recent: std::collections::VecDeque::new(),
            falling_per_s: 0.0,
            interval_ns: 100_000_000,
            brake_since_ns: None,
            brakes_in_a_row: 0,
            canary_pending: false,
            shutting_down: false,
            counters: Counters::default(),
            out: Vec::new(),
            now_ns: 0,
        }
    }

    /// Readings come this often (100 ms unless told): the brake and the floor look this far
    /// ahead.
    pub fn reading_every(mut self, interval: std::time::Duration) -> Self {
        self.interval_ns = (interval.as_nanos() as u64).max(1);
        self
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
            Input::TrialStart { worker, trial } => {
                if let Some(w) = self.worker_mut(worker) {
                    w.trial_running = true;
                    w.trial = Some(trial);
                }
            }
            Input::TrialEnd { worker } => self.trial_end(worker),
            Input::Ask { worker } => self.ask(worker),
            Input::WorkerExit { worker, success } => self.exit(worker, success),
        }
        std::mem::take(&mut self.out)
    }

    pub(super) fn worker_mut(&mut self, worker: u32) -> Option<&mut Worker> {
        self.workers.get_mut(worker as usize)
    }

    pub(super) fn stagger_ns(&self) -> u64 {
        self.policy.start.stagger.map_or(0, |s| s.as_nanos() as u64)
    }

    pub(super) fn act(&mut self, worker: Option<u32>, kind: ActionKind, reason: impl Into<String>) {
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
    pub(super) fn headroom(&self) -> Option<(u64, u64)> {
        let reading = self.reading.as_ref()?;
        Some(match self.policy.budget {
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

    /// The headroom now, what it will be at the next tick if it falls as fast as over the last
    /// one, and the whole. The brake and the floor act on the second: memory that falls
    /// hundreds of MiB between two readings passes a threshold and the limit between them, and
    /// a brake that engages one reading late engages after the kernel's OOM killer.
    pub(super) fn headroom_ahead(&self) -> Option<(u64, u64, u64)> {
        let (now, whole) = self.headroom()?;
        let fall = self.falling_per_s * self.interval_ns as f64 / 1e9;
        Some((now, now.saturating_sub(fall as u64), whole))
    }

    /// Keeps the headroom's recent history and how fast it falls. The rate spans at least one
    /// reading interval: the sampler also reads at trial boundaries, and the fall over a few
    /// milliseconds (or a jump as a worker's PSS replaces its RSS) is no rate to project.
    fn track_fall(&mut self) {
        let Some((headroom, _)) = self.headroom() else {
            return;
        };
        let now = self.now_ns;
        self.recent.push_back((now, headroom));
        let window_start = now.saturating_sub(self.interval_ns);
        while self.recent.len() > 1 && self.recent[1].0 <= window_start {
            self.recent.pop_front();
        }
        let (then, before) = self.recent[0];
        let span = now.saturating_sub(then);
        self.falling_per_s = if span >= self.interval_ns / 2 && before > headroom {
            (before - headroom) as f64 / (span as f64 / 1e9)
        } else {
            0.0
        };
    }

    /// Why the headroom ahead is under a threshold of `bytes` (`words`): the headroom now is,
    /// or it falls fast enough to be by the next reading.
    pub(super) fn under_words(&self, now: u64, bytes: u64, words: &str) -> String {
        if now < bytes {
            return format!("{} is under {words}", self.headroom_words(now));
        }
        format!(
            "{} is falling {}/s, so under {words} by the next reading",
            self.headroom_words(now),
            size(self.falling_per_s)
        )
    }

    /// The figure a rule compares, in words, naming the cgroup's limit where one applies (a
    /// brake inside a container is about the container's limit, not the host's memory).
    pub(super) fn headroom_words(&self, bytes: u64) -> String {
        let (what, within) = self.headroom_name();
        format!("{what} {}{within}", crate::units::size(bytes as f64))
    }

    /// What the headroom is, and where a cgroup's limit applies, ` (within …)` to follow its
    /// figure.
    pub(super) fn headroom_name(&self) -> (&'static str, String) {
        let what = if self.policy.budget.is_some() {
            "headroom"
        } else {
            "available memory"
        };
        let within =
            self.reading
                .as_ref()
                .and_then(|r| r.limit_bytes)
                .map_or(String::new(), |limit| {
                    format!(
                        " (within the memory cgroup's limit of {})",
                        crate::units::size(limit as f64)
                    )
                });
        (what, within)
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
        self.track_fall();
        self.start_due();
        self.emergency();
        self.brake();
        self.release_held();
        self.count_held();
        self.escalate();
        self.limits();
        self.device_floor();
        self.deadlines();
    }

    pub(super) fn start_due(&mut self) {
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

    pub(super) fn start(&mut self, worker: u32, reason: String) {
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
        w.trial = None;
        w.trials_this_attempt = 0;
        w.paused = false;
        w.restart = None;
        w.stop_rule = None;
        w.peak_pss_bytes = 0;
        w.trial_end_pss.clear();
        let attempt = w.attempt;
        self.act(Some(worker), ActionKind::Start { attempt }, reason);
    }
}

/// `3.20 GiB (10%)`, or `1.00 GiB` for a threshold given as a size.
pub(super) fn share(bytes: u64, threshold: Threshold) -> String {
    match threshold {
        Threshold::Percent(_) => format!("{} ({threshold})", size(bytes as f64)),
        Threshold::Bytes(_) => size(bytes as f64),
    }
}
