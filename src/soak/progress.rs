//! Live progress of a soak on stderr: the live view on a terminal, with the time left; plain
//! lines for CI logs every tenth of the run (at most a minute apart).

use super::progress_line;
use crate::console::{say, View};
use crate::live::{body_lines, SharedStatus};
use crate::stop_token::StopToken;
use std::time::{Duration, Instant};

/// The view on a terminal; plain lines (for CI logs) every tenth of the run, at most a minute
/// apart.
pub fn show_progress(live: &SharedStatus, done: &StopToken, total: Duration) {
    let snapshot = || live.lock().map(|s| s.clone()).unwrap_or_default();
    let total_s = total.as_secs_f64();
    let lines = |status: &crate::live::LiveStatus| {
        let mut lines = vec![progress_line(status, total_s)];
        lines.extend(body_lines(status));
        lines
    };
    if let Some(view) = View::start() {
        let frame = || format!("memwarden: soak: {}", lines(&snapshot()).join("\n"));
        loop {
            view.show(frame());
            if done.sleep_or_stop(Duration::from_millis(250)) {
                break;
            }
        }
        view.show(frame());
        return;
    }
    let every = (total / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut next = Instant::now() + every;
    while !done.sleep_until_or_stop(next) {
        for line in lines(&snapshot()) {
            say(format!("soak: {line}"));
        }
        next += every;
    }
}
