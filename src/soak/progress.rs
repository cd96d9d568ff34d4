//! Live progress of a soak on stderr: bars on a terminal, plain lines for CI logs every tenth
//! of the run (at most a minute apart).

use super::{progress_line, worker_lines};
use crate::harness::SharedStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bars on a terminal; plain lines (for CI logs) every tenth of the run, at most a minute apart.
pub fn show_progress(live: &SharedStatus, done: &AtomicBool, total: Duration) {
    let snapshot = || live.lock().map(|s| s.clone()).unwrap_or_default();
    let total_s = total.as_secs_f64();
    if std::io::stderr().is_terminal() {
        let multi = MultiProgress::new();
        let header = multi.add(ProgressBar::new(total.as_secs().max(1)));
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {msg}") {
            header.set_style(style);
        }
        let mut bars: Vec<ProgressBar> = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let status = snapshot();
            header.set_position(status.elapsed_ns / 1_000_000_000);
            header.set_message(progress_line(&status, total_s));
            for (index, line) in worker_lines(&status).into_iter().enumerate() {
                if bars.len() <= index {
                    let bar = multi.add(ProgressBar::new_spinner());
                    if let Ok(style) = ProgressStyle::with_template("  {msg}") {
                        bar.set_style(style);
                    }
                    bars.push(bar);
                }
                bars[index].set_message(line);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        header.finish();
        bars.iter().for_each(ProgressBar::finish);
        return;
    }
    let every = (total / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut next = Instant::now() + every;
    while !done.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            let status = snapshot();
            eprintln!("memwarden: soak: {}", progress_line(&status, total_s));
            for line in worker_lines(&status) {
                eprintln!("memwarden: soak:   {line}");
            }
            next += every;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
