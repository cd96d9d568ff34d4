//! How a run is asked to end. The first Ctrl-C (or SIGTERM, SIGHUP) stops it cleanly: workers
//! get SIGTERM and the grace period. A second one means "now": the grace period is cut short and
//! the process groups get SIGKILL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct StopRequest {
    requests: AtomicUsize,
}

impl StopRequest {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn requested(&self) -> bool {
        self.requests.load(Ordering::Relaxed) >= 1
    }

    /// Asked twice: skip the grace period.
    pub fn urgent(&self) -> bool {
        self.requests.load(Ordering::Relaxed) >= 2
    }
}

/// Counts SIGINT, SIGTERM and SIGHUP on a thread of its own.
pub fn stop_on_signals() -> std::io::Result<Arc<StopRequest>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let stop = Arc::new(StopRequest::default());
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let counter = stop.clone();
    std::thread::Builder::new().name("memwarden-signals".into()).spawn(move || {
        for _ in signals.forever() {
            counter.request();
            if counter.urgent() {
                crate::console::say("stopping now: killing the workers' process groups");
            } else {
                crate::console::say("stopping: workers get SIGTERM and the grace period (again to kill them now)");
            }
        }
    })?;
    Ok(stop)
}
