//! Stopping process groups, one way for every caller: SIGTERM with SIGCONT (a paused group would
//! hold SIGTERM pending for ever), then SIGKILL to a group that outlives its grace period. A
//! worker restarted by the policy and the whole run's end go through the same stopper. It never
//! blocks: the harness polls it, and learns which groups emptied so the guardian can let them go
//! (an emptied group's id may be reused).

use super::spawn::{group_alive, signal_group};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct GroupStopper {
    stopping: Vec<Stopping>,
}

#[derive(Debug)]
struct Stopping {
    pgid: i32,
    kill_at: Instant,
    killed: bool,
}

impl GroupStopper {
    /// Asks the group to stop; it is killed if still there `grace` after `now`.
    pub fn stop(&mut self, pgid: i32, grace: Duration, now: Instant) {
        signal_group(pgid, Signal::SIGTERM);
        signal_group(pgid, Signal::SIGCONT);
        if self.stopping.iter().all(|s| s.pgid != pgid) {
            self.stopping.push(Stopping {
                pgid,
                kill_at: now + grace,
                killed: false,
            });
        }
    }

    /// Kills every group being stopped at once (a second stop request).
    pub fn kill_now(&mut self) {
        for s in self.stopping.iter_mut().filter(|s| !s.killed) {
            signal_group(s.pgid, Signal::SIGKILL);
            s.killed = true;
        }
    }

    /// Kills the groups past their grace period and forgets the ones that emptied, which it
    /// returns.
    pub fn poll(&mut self, now: Instant) -> Vec<i32> {
        let mut emptied = Vec::new();
        self.stopping.retain_mut(|s| {
            if !group_alive(s.pgid) {
                emptied.push(s.pgid);
                return false;
            }
            if now >= s.kill_at && !s.killed {
                signal_group(s.pgid, Signal::SIGKILL);
                s.killed = true;
            }
            true
        });
        emptied
    }

    pub fn is_empty(&self) -> bool {
        self.stopping.is_empty()
    }
}
