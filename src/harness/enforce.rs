//! The live side of the policy: feeds the engine the sampler's readings, the trial boundaries,
//! the gate's questions and the workers' exits, and carries out what it decides. Every action
//! but a plain "go" is recorded as a `policy` event and said on stderr.

use super::output::Feed;
use super::workers::{Ended, Workers};
use crate::clock::RunClock;
use crate::live::{LiveStatus, SharedStatus};
use crate::policy::{Action, ActionKind, Answer, Counters, Engine, Input, Policy, Reading};
use crate::recording::{EventKind, RecordSender};
use crate::supervisor::GateQuestion;
use crossbeam_channel::{Receiver, Select};
use nix::sys::signal::Signal;
use std::collections::VecDeque;
use std::time::Duration;

/// Where the engine's inputs arrive from the sampler, the output pumps and the gates.
pub(super) struct Inputs {
    pub readings: Receiver<(u64, Reading)>,
    /// How often the readings come.
    pub interval: Duration,
    pub feed: Receiver<Feed>,
    pub questions: Receiver<GateQuestion>,
}

pub(super) struct Enforcer {
    engine: Engine,
    grace: Duration,
    clock: RunClock,
    records: RecordSender,
    readings: Receiver<(u64, Reading)>,
    feed: Receiver<Feed>,
    questions: Receiver<GateQuestion>,
    live: Option<SharedStatus>,
    quiet_starts: bool,
    /// Inputs whose senders are gone (a sampler that ended): no longer waited on.
    closed: [bool; 3],
}

impl Enforcer {
    pub(super) fn new(
        policy: Policy,
        workers: u32,
        (clock, records): (RunClock, RecordSender),
        inputs: Inputs,
        (live, quiet_starts): (Option<SharedStatus>, bool),
    ) -> Self {
        Self {
            grace: policy.restart.grace,
            engine: Engine::new(policy, workers).reading_every(inputs.interval),
            clock,
            records,
            readings: inputs.readings,
            feed: inputs.feed,
            questions: inputs.questions,
            quiet_starts,
            live,
            closed: [false; 3],
        }
    }

    /// Waits until an input arrives, at most `at_most`. A trial's end must meet the brake's
    /// pause while the worker is still between trials, and a gate's question is a worker
    /// waiting: polling at the run loop's pace would let a fast worker start (and allocate)
    /// its next trial first.
    pub(super) fn wait(&mut self, at_most: Duration) {
        let deadline = std::time::Instant::now() + at_most;
        loop {
            let mut select = Select::new();
            let mut which = Vec::new();
            for (index, closed) in self.closed.iter().enumerate() {
                if *closed {
                    continue;
                }
                which.push(index);
                match index {
                    0 => select.recv(&self.feed),
                    1 => select.recv(&self.questions),
                    _ => select.recv(&self.readings),
                };
            }
            let Ok(ready) = select.ready_deadline(deadline) else {
                return;
            };
            let index = which[ready];
            let empty = match index {
                0 => self.feed.is_empty(),
                1 => self.questions.is_empty(),
                _ => self.readings.is_empty(),
            };
            // Ready but empty: its senders are gone, and it would wake us at once from now on.
            if !empty {
                return;
            }
            self.closed[index] = true;
        }
    }

    /// Applies `update` to the live status, if anyone watches it.
    fn live(&self, update: impl FnOnce(&mut LiveStatus)) {
        if let Some(live) = &self.live {
            update(&mut live.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    pub(super) fn begin(&mut self, workers: &mut Workers) {
        let actions = self.engine.begin(self.clock.now().0);
        self.carry_out(actions, workers);
    }

    /// Everything that arrived since the last call, in a causal order: trial boundaries (which
    /// happened before the question or exit that follows them), questions, readings, exits.
    pub(super) fn pump(&mut self, workers: &mut Workers, ended: &[Ended]) {
        while let Ok(feed) = self.feed.try_recv() {
            let input = match feed {
                Feed::TrialStart(worker, trial) => Input::TrialStart { worker, trial },
                Feed::TrialEnd(worker) => Input::TrialEnd { worker },
            };
            self.step(input, workers);
        }
        while let Ok(question) = self.questions.try_recv() {
            let actions = self.engine.step(
                self.clock.now().0,
                Input::Ask {
                    worker: question.worker,
                },
            );
            let answer = actions.iter().find_map(|a| match a.kind {
                ActionKind::Answer(answer) if a.worker == Some(question.worker) => Some(answer),
                _ => None,
            });
            let _ = question.reply.send(match answer {
                Some(Answer::Wait(after)) => format!("wait {}", after.as_secs_f64()),
                Some(Answer::Abort) => "abort".into(),
                Some(Answer::Go) | None => "go".into(),
            });
            self.carry_out(actions, workers);
        }
        let mut latest = None;
        while let Ok(reading) = self.readings.try_recv() {
            latest = Some(reading);
        }
        if let Some((t_ns, reading)) = latest {
            let actions = self.engine.step(t_ns, Input::Tick(reading));
            self.carry_out(actions, workers);
        }
        for end in ended.iter().filter(|e| e.ours) {
            self.step(
                Input::WorkerExit {
                    worker: end.index,
                    success: end.exit.success(),
                },
                workers,
            );
        }
    }

    fn step(&mut self, input: Input, workers: &mut Workers) {
        let actions = self.engine.step(self.clock.now().0, input);
        self.carry_out(actions, workers);
    }

    fn carry_out(&mut self, actions: Vec<Action>, workers: &mut Workers) {
        if actions
            .iter()
            .any(|a| a.kind != ActionKind::Answer(Answer::Go))
        {
            // The rest of the live status comes from the records (`live::observer`).
            let counters = self.engine.counters().clone();
            self.live(|s| s.engine = Some(counters));
        }
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            if action.kind != ActionKind::Answer(Answer::Go) {
                self.record(&action);
            }
            let Some(worker) = action.worker else {
                continue;
            };
            match action.kind {
                ActionKind::Start { attempt } => {
                    if let Err(error) = workers.spawn(worker, attempt) {
                        let message = format!(
                            "worker {worker} could not start: {}",
                            crate::exit::describe(&error)
                        );
                        crate::console::say(&message);
                        self.records.event_now(
                            &self.clock,
                            Some(worker),
                            EventKind::Note { message },
                        );
                        let failed = Input::WorkerExit {
                            worker,
                            success: false,
                        };
                        queue.extend(self.engine.step(self.clock.now().0, failed));
                    }
                }
                ActionKind::Stop => workers.stop_worker(worker, self.grace),
                ActionKind::Pause => workers.signal(worker, Signal::SIGSTOP),
                ActionKind::Resume => workers.signal(worker, Signal::SIGCONT),
                ActionKind::AbortTrial => workers.signal(worker, Signal::SIGUSR1),
                ActionKind::Answer(_)
                | ActionKind::Escalate
                | ActionKind::BrakeOn
                | ActionKind::BrakeOff
                | ActionKind::BackOff { .. }
                | ActionKind::GiveUp => {}
            }
        }
    }

    fn record(&self, action: &Action) {
        // Answers come before every trial; starts are routine where workers are started again
        // whenever they finish (soak), and the progress display counts them.
        let noisy = matches!(action.kind, ActionKind::Answer(_))
            || (self.quiet_starts && matches!(action.kind, ActionKind::Start { .. }));
        if !noisy {
            let who = action
                .worker
                .map_or(String::new(), |w| format!("worker {w}: "));
            crate::console::say(format!("{who}{}: {}", action.name(), action.reason));
        }
        self.records.event_now(
            &self.clock,
            action.worker,
            EventKind::Policy {
                action: action.name(),
                reason: action.reason.clone(),
                worker_pss_bytes: action.worker_pss_bytes,
                available_bytes: action.available_bytes,
                simulated: false,
            },
        );
    }

    /// Every worker is down for good (finished, or given up).
    pub(super) fn finished(&self) -> bool {
        self.engine.finished()
    }

    pub(super) fn shut_down(&mut self) {
        self.engine.shut_down();
    }

    pub(super) fn counters(&self) -> Counters {
        self.engine.counters().clone()
    }
}
