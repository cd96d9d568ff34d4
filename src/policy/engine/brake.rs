//! The brake and what backs it: the emergency floor, holding back trials (a wait answer or a
//! pause), and escalation to restarting the worker that holds the most memory.

use super::{share, ActionKind, Engine, Phase, Worker};
use crate::units::size;

impl Engine {
    pub(super) fn emergency(&mut self) {
        let Some(floor) = self.policy.restart.emergency_floor else {
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
                "emergency: {} is under the floor of {}; restarting the largest worker at once",
                self.headroom_words(headroom),
                share(floor_bytes, floor)
            );
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
        let Some((headroom, whole)) = self.headroom() else {
            return;
        };
        let threshold = self.policy.brake.min_headroom;
        let min_bytes = threshold.resolve(whole);
        let max_psi = self.policy.brake.max_psi_full;
        let psi = self.reading.as_ref().and_then(|r| r.psi_full_avg10);
        if self.brake_since_ns.is_none() {
            let reason = if headroom < min_bytes {
                format!(
                    "{} is under {}",
                    self.headroom_words(headroom),
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
            let (what, within) = self.headroom_name();
            let reason = format!("{what} recovered to {}{within}", size(headroom as f64));
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
    pub(super) fn hold_back(&mut self, worker: u32) {
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

    pub(super) fn note_brake(&mut self) {
        self.counters.brakes += 1;
        self.brakes_in_a_row += 1;
    }

    pub(super) fn escalate(&mut self) {
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
                crate::units::duration(self.now_ns.saturating_sub(since) as f64 / 1e9)
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
}
