//! The brake and what backs it: the emergency floor, holding back trials (a wait answer or a
//! pause), and escalation to restarting the worker that holds the most memory.

use super::{share, ActionKind, Engine, Phase, Worker};
use crate::units::size;

impl Engine {
    pub(super) fn emergency(&mut self) {
        let Some(floor) = self.policy.restart.emergency_floor else {
            return;
        };
        let Some((headroom, ahead, whole)) = self.headroom_ahead() else {
            return;
        };
        let floor_bytes = floor.resolve(whole);
        // One at a time: the next tick sees what the last restart freed.
        let stopping = self
            .workers
            .iter()
            .any(|w| w.stop_rule == Some("emergency"));
        if ahead >= floor_bytes || stopping {
            return;
        }
        if let Some(worker) = self.largest(|_| true) {
            let under = self.under_words(
                headroom,
                floor_bytes,
                &format!("the floor of {}", share(floor_bytes, floor)),
            );
            let reason = format!("emergency: {under}; restarting the largest worker at once");
            self.stop(worker, "emergency", reason);
        }
    }

    /// The running worker with the most PSS among those `eligible`.
    pub(super) fn largest(&self, eligible: impl Fn(&Worker) -> bool) -> Option<u32> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.phase == Phase::Running && eligible(w))
            .max_by_key(|(_, w)| w.memory.pss_bytes)
            .map(|(index, _)| index as u32)
    }

    pub(super) fn brake(&mut self) {
        let Some((headroom, ahead, whole)) = self.headroom_ahead() else {
            return;
        };
        let threshold = self.policy.brake.min_headroom;
        let min_bytes = threshold.resolve(whole);
        let max_psi = self.policy.brake.max_psi_full;
        let psi = self.reading.as_ref().and_then(|r| r.psi_full_avg10);
        if self.brake_since_ns.is_none() {
            let reason = if ahead < min_bytes {
                self.under_words(headroom, min_bytes, &share(min_bytes, threshold))
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
        // Hysteresis: released a quarter above the threshold (and not while memory falls
        // towards it), and at half the pressure limit, so the brake does not flap at the edge.
        let recovered =
            ahead >= min_bytes + min_bytes / 4 && psi.is_none_or(|p| p <= max_psi / 2.0);
        if recovered {
            self.brake_since_ns = None;
            self.brakes_in_a_row = 0;
            let (what, within) = self.headroom_name();
            let reason = format!("{what} recovered to {}{within}", size(headroom as f64));
            self.act(None, ActionKind::BrakeOff, reason);
        }
    }

    /// With the brake off, the held workers go on one a reading, the longest held first: each
    /// takes its next trial's memory at once, and all of them together can take more than the
    /// margin the brake was released with (four workers resumed together at 64 MiB a trial
    /// drove a 1.5 GiB cgroup into the kernel's OOM killer). The next reading sees what the last
    /// one took, and engages the brake again before the rest go on if it must.
    pub(super) fn release_held(&mut self) {
        if self.brake_since_ns.is_some() {
            return;
        }
        let held = self.workers.iter().filter(|w| w.paused).count();
        let first = self
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.paused)
            .min_by_key(|(_, w)| w.paused_ns)
            .map(|(index, _)| index as u32);
        if let Some(worker) = first {
            self.workers[worker as usize].paused = false;
            let reason = if held > 1 {
                format!("the brake is off: the longest held of {held}, one a reading")
            } else {
                "the brake is off".to_string()
            };
            self.act(Some(worker), ActionKind::Resume, reason);
        }
    }

    /// A trial held back by the brake: a non-cooperative worker between trials is paused.
    pub(super) fn hold_back(&mut self, worker: u32) {
        let w = &self.workers[worker as usize];
        if w.cooperative || w.paused || !self.policy.brake.pause || w.restart.is_some() {
            return;
        }
        let now = self.now_ns;
        let w = &mut self.workers[worker as usize];
        w.paused = true;
        w.held_counted_ns = now;
        w.paused_ns = now;
        self.note_brake();
        self.act(
            Some(worker),
            ActionKind::Pause,
            "the brake is on: paused between trials",
        );
    }

    /// A paused worker's trial stays refused: it counts again every `brake.wait`, as a
    /// cooperative worker asking again would, so paused workers reach `after_brakes` as soon as
    /// waiting ones do. Without this a run whose workers are all paused escalated only on time.
    pub(super) fn count_held(&mut self) {
        if self.brake_since_ns.is_none() {
            return;
        }
        let wait_ns = (self.policy.brake.wait.as_nanos() as u64).max(1);
        let now = self.now_ns;
        let mut counted = 0;
        for w in self.workers.iter_mut().filter(|w| w.paused) {
            while now.saturating_sub(w.held_counted_ns) >= wait_ns {
                w.held_counted_ns += wait_ns;
                counted += 1;
            }
        }
        for _ in 0..counted {
            self.note_brake();
        }
    }

    pub(super) fn note_brake(&mut self) {
        self.counters.brakes += 1;
        self.brakes_in_a_row += 1;
    }

    /// Escalation: the brake frees nothing, a restart does. Once the brake has refused
    /// `after_brakes` trials in a row or stayed on for `after`, the running worker with the most
    /// memory is restarted: at once when it is paused or between trials, else when its trial
    /// ends, at the latest `restart.grace` later. The escalation is an action of its own, saying
    /// who, why and what it expects to free, or why no worker could be picked.
    pub(super) fn escalate(&mut self) {
        let Some(since) = self.brake_since_ns else {
            return;
        };
        let after = &self.policy.escalation;
        let long = self.now_ns.saturating_sub(since) >= after.after.as_nanos() as u64;
        if self.brakes_in_a_row < after.after_brakes && !long {
            return;
        }
        let why = if self.brakes_in_a_row >= after.after_brakes {
            format!("the brake refused {} trials in a row", self.brakes_in_a_row)
        } else {
            format!(
                "the brake has been on for {}",
                crate::units::duration(self.now_ns.saturating_sub(since) as f64 / 1e9)
            )
        };
        // Counted afresh: if memory does not recover, the next worker follows after as many.
        self.brakes_in_a_row = 0;
        self.brake_since_ns = Some(self.now_ns);
        self.counters.escalations += 1;
        // A worker whose restart is already due within the grace period is under way; one
        // waiting longer for its trial (a limit's restart.deadline) may be hurried.
        let soon = self.now_ns + self.policy.restart.grace.as_nanos() as u64;
        let Some(worker) =
            self.largest(|w| w.restart.as_ref().is_none_or(|r| r.deadline_ns > soon))
        else {
            let reason = format!(
                "escalation: {why}, but no worker can be restarted: {}",
                self.none_to_restart()
            );
            self.act(None, ActionKind::Escalate, reason);
            return;
        };
        let w = &self.workers[worker as usize];
        let (cooperative, trial_running) = (w.cooperative, w.trial_running);
        let pss = size(w.memory.pss_bytes as f64);
        let when = if w.paused {
            "at once (it is held by the brake)".to_string()
        } else if w.trial_running {
            format!(
                "when its trial ends, within {}",
                humantime::format_duration(self.policy.restart.grace)
            )
        } else {
            "at once (it is between trials)".to_string()
        };
        let reason =
            format!("escalation: {why}; worker {worker} holds the most memory ({pss} PSS)");
        self.act(
            Some(worker),
            ActionKind::Escalate,
            format!("{reason}, what its restart should free: restarting it {when}"),
        );
        if cooperative && trial_running {
            self.act(Some(worker), ActionKind::AbortTrial, reason.clone());
        }
        self.workers[worker as usize].restart = None;
        self.request_restart(worker, "escalation", reason);
    }

    /// Why no running worker could be picked, in words.
    fn none_to_restart(&self) -> String {
        let count =
            |phase: fn(&Phase) -> bool| self.workers.iter().filter(|w| phase(&w.phase)).count();
        let stopping = count(|p| *p == Phase::Stopping)
            + self
                .workers
                .iter()
                .filter(|w| w.phase == Phase::Running && w.restart.is_some())
                .count();
        let down = count(|p| *p == Phase::Down);
        let waiting = count(|p| matches!(p, Phase::Waiting(_) | Phase::Backoff(_)));
        let mut parts = Vec::new();
        if stopping > 0 {
            parts.push(format!("{stopping} already restarting"));
        }
        if waiting > 0 {
            parts.push(format!(
                "{waiting} waiting to start (canary or crash back-off)"
            ));
        }
        if down > 0 {
            parts.push(format!("{down} down (finished, or given up after crashes)"));
        }
        format!("of {} worker(s), {}", self.workers.len(), parts.join(", "))
    }
}
