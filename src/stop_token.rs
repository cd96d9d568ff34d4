//! One way for a loop to wait: `sleep_or_stop` sleeps until its time is up or the token is
//! stopped, whichever comes first. A loop of memwarden's own threads (the soak's checkpoints
//! and progress, the metrics textfile) waits on a token rather than on a flag it polls between
//! fixed sleeps, so a stop is seen at once and no loop picks its own poll interval.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Cloned to every thread that waits on it; `stop` wakes them all.
#[derive(Debug, Clone, Default)]
pub struct StopToken(Arc<(Mutex<bool>, Condvar)>);

impl StopToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop(&self) {
        let (stopped, wake) = &*self.0;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }

    pub fn stopped(&self) -> bool {
        *self.0 .0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `time` unless stopped first; true when stopped (before or while it slept).
    pub fn sleep_or_stop(&self, time: Duration) -> bool {
        self.sleep_until_or_stop(Instant::now() + time)
    }

    /// Sleeps until `deadline` unless stopped first; true when stopped.
    pub fn sleep_until_or_stop(&self, deadline: Instant) -> bool {
        let (stopped, wake) = &*self.0;
        let mut guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
        // A wake-up may come early (spurious, or another token's notify): wait out the rest.
        while !*guard {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            guard = wake
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_lasts_its_time_when_nothing_stops_it() {
        let token = StopToken::new();
        let started = Instant::now();
        assert!(!token.sleep_or_stop(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(!token.stopped());
    }

    #[test]
    fn a_stop_wakes_every_sleeper_at_once() {
        let token = StopToken::new();
        let sleepers: Vec<_> = (0..3)
            .map(|_| {
                let token = token.clone();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    (
                        token.sleep_or_stop(Duration::from_secs(60)),
                        started.elapsed(),
                    )
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        token.stop();
        for sleeper in sleepers {
            let (stopped, slept) = sleeper.join().expect("bug: sleeper");
            assert!(stopped);
            assert!(slept < Duration::from_secs(10), "woke after {slept:?}");
        }
        // Once stopped, a sleep does not sleep.
        assert!(token.sleep_or_stop(Duration::from_secs(60)));
    }
}
