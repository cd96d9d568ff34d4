//! The run's clock: monotonic nanoseconds since the run started, paired with wall-clock time.
//! Durations come from the monotonic clock, so a wall-clock step (NTP, a suspended VM) never
//! bends a rate; the wall time is kept beside it to place events on a calendar.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start: Instant,
    start_wall_ns: u64,
}

impl RunClock {
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
            start_wall_ns: wall_ns(),
        }
    }

    pub fn start_wall_ns(&self) -> u64 {
        self.start_wall_ns
    }

    /// `(monotonic ns since start, wall ns since the epoch)`.
    pub fn now(&self) -> (u64, u64) {
        (self.since_start(Instant::now()), wall_ns())
    }

    pub fn since_start(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }

    pub fn instant_at(&self, t_ns: u64) -> Instant {
        self.start + std::time::Duration::from_nanos(t_ns)
    }
}

pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
