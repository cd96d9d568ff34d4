//! Workers' lives: restart rules and their deadlines, stops, trial ends and questions, exits
//! (restarts, crash back-off, giving up) and the canary's verdict on the others.

use super::{ActionKind, Answer, Engine, PendingRestart, Phase, WorkerMemory};
use crate::units::size;

impl Engine {
    /// A GPU with too little free memory: the worker holding the most GPU memory is restarted
    /// (at its trial's end, as for a limit), one at a time.
    pub(super) fn device_floor(&mut self) {
        let Some(floor) = self.policy.restart.min_device_free else {
            return;
        };
        let busy = self.workers.iter().any(|w| {
            w.stop_rule == Some("gpu_device")
                || w.restart.as_ref().is_some_and(|r| r.rule == "gpu_device")
        });
        let devices = self
            .reading
            .as_ref()
            .map(|r| r.devices.clone())
            .unwrap_or_default();
        for (device, used, total) in devices {
            let free = total.saturating_sub(used);
            let floor_bytes = floor.resolve(total);
            if free >= floor_bytes || busy {
                continue;
            }
            let holder = self
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| w.phase == Phase::Running && w.restart.is_none())
                .filter_map(|(i, w)| Some((i as u32, w.memory.gpu_bytes.filter(|&g| g > 0)?)))
                .max_by_key(|&(_, gpu)| gpu);
            if let Some((worker, gpu)) = holder {
                let reason = format!(
                    "GPU {device} has {} free, under {}; worker {worker} holds the most GPU memory ({})",
                    size(free as f64),
                    super::share(floor_bytes, floor),
                    size(gpu as f64)
                );
                self.request_restart(worker, "gpu_device", reason);
                return;
            }
        }
    }

    pub(super) fn limits(&mut self) {
        let restart = self.policy.restart.clone();
        for index in 0..self.workers.len() as u32 {
            let w = &self.workers[index as usize];
            if w.phase != Phase::Running || w.restart.is_some() {
                continue;
            }
            let uptime_ns = self.now_ns.saturating_sub(w.started_ns);
            let (rule, reason) = if let Some(max) =
                restart.max_worker_pss.filter(|&m| w.memory.pss_bytes > m)
            {
                (
                    "pss_limit",
                    format!(
                        "PSS {} passed the limit of {}",
                        size(w.memory.pss_bytes as f64),
                        size(max as f64)
                    ),
                )
            } else if let Some((held, line)) = w
                .memory
                .cgroup_bytes
                .zip(restart.soft_line)
                .filter(|(held, line)| held >= line)
            {
                (
                    "soft_line",
                    format!(
                        "its cgroup holds {} of anonymous and shared memory, at its soft line of {}",
                        size(held as f64),
                        size(line as f64)
                    ),
                )
            } else if let Some((gpu, max)) = w
                .memory
                .gpu_bytes
                .zip(restart.max_worker_gpu)
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
            } else if let Some(every) = restart.every.filter(|e| uptime_ns >= e.as_nanos() as u64) {
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

    pub(super) fn deadlines(&mut self) {
        for index in 0..self.workers.len() as u32 {
            let w = &self.workers[index as usize];
            let Some(pending) = w.restart.clone() else {
                continue;
            };
            if w.phase == Phase::Running && self.now_ns >= pending.deadline_ns {
                let reason = format!(
                    "{}; its trial did not end within {}{}",
                    pending.reason,
                    humantime::format_duration(pending.wait),
                    lost(w)
                );
                self.stop(index, pending.rule, reason);
            }
        }
    }

    /// Restarts wait for the running trial to end (up to `restart.deadline`, or
    /// `restart.grace` for an escalation), so its work is kept. A worker the brake holds is
    /// restarted at once: paused, it would never end its trial (the stall of issue 29), and a
    /// restart is what frees memory.
    pub(super) fn request_restart(&mut self, worker: u32, rule: &'static str, reason: String) {
        let wait = if rule == "escalation" {
            self.policy.restart.grace
        } else {
            self.policy.restart.deadline
        };
        let deadline_ns = self.now_ns + wait.as_nanos() as u64;
        let w = &mut self.workers[worker as usize];
        if w.phase != Phase::Running || w.restart.is_some() {
            return;
        }
        if w.paused {
            let reason = format!("{reason}; restarted while held by the brake{}", lost(w));
            self.stop(worker, rule, reason);
        } else if w.trial_running {
            w.restart = Some(PendingRestart {
                rule,
                reason,
                deadline_ns,
                wait,
            });
        } else {
            self.stop(worker, rule, reason);
        }
    }

    pub(super) fn stop(&mut self, worker: u32, rule: &'static str, reason: String) {
        let w = &mut self.workers[worker as usize];
        w.phase = Phase::Stopping;
        w.stop_rule = Some(rule);
        w.restart = None;
        w.paused = false;
        *self.counters.restarts.entry(rule.to_string()).or_default() += 1;
        self.act(Some(worker), ActionKind::Stop, reason);
    }

    pub(super) fn trial_end(&mut self, worker: u32) {
        // Only the canary's wait reads trial-end levels: kept for every trial of every worker,
        // they would grow with the run.
        let keep_level = worker == 0 && self.canary_pending;
        let Some(w) = self.worker_mut(worker) else {
            return;
        };
        if w.phase != Phase::Running {
            return;
        }
        w.trial_running = false;
        w.trial = None;
        w.trials_this_attempt += 1;
        w.consecutive_crashes = 0;
        if keep_level {
            w.trial_end_pss.push(w.memory.pss_bytes);
        }
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

    pub(super) fn ask(&mut self, worker: u32) {
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

    pub(super) fn exit(&mut self, worker: u32, success: bool) {
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
                let more = restart.max_starts.is_none_or(|m| w.attempt + 1 < m);
                if restart.when_finished && more && !shutting_down {
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
            // Stopped with the run (the harness's own stop): no crash, nothing to start.
            Phase::Running if shutting_down => {}
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
                        .saturating_mul(doubling)
                        .min(restart.backoff_max);
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
    pub(super) fn canary(&mut self) {
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
        let usable = whole.saturating_sub(self.policy.brake.min_headroom.resolve(whole));
        let total = self.workers.len() as u64;
        let fit = (usable / peak).clamp(1, total);
        let others = self.workers.len() as u32 - 1;
        if let Some(max) = self.policy.start.canary_max_growth {
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

    pub(super) fn give_up_waiting(&mut self, from: u32, reason: String) {
        self.counters.degraded.push(reason.clone());
        for index in from..self.workers.len() as u32 {
            self.workers[index as usize].phase = Phase::Down;
            self.act(Some(index), ActionKind::GiveUp, reason.clone());
        }
    }
}

/// `; trial 17, which it had started, is lost`, for a stop that cuts a trial short.
fn lost(w: &super::Worker) -> String {
    match (&w.trial, w.trial_running) {
        (Some(trial), true) => format!("; trial {trial}, which it had started, is lost"),
        (None, true) => "; the trial it had started is lost".into(),
        _ => String::new(),
    }
}
