//! The thin shells around the fold: feeding it from the writer (`observer`), drawing it while a
//! run records (`draw_until`), and following a recording someone else writes (`follow`) until
//! it finishes, ends abruptly or the watcher leaves.

use super::status::{LiveStatus, SharedStatus};
use super::tail::Tail;
use super::view::frame;
use crate::console::{say, View};
use crate::recording::{read_manifest, Event, Observer, Record, RunStatus, Tick};
use crate::stop_token::StopToken;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the view is redrawn, and `watch` reads the recording.
const REDRAW: Duration = Duration::from_millis(250);

/// Folds each batch the writer writes into `live` (on the writer's thread: one lock a batch).
pub fn observer(live: SharedStatus) -> Observer {
    Box::new(move |batch: &[Record]| {
        let mut status = live.lock().unwrap_or_else(|p| p.into_inner());
        for record in batch {
            match record {
                Record::Tick(tick) => status.tick(tick),
                Record::Event(event) => status.event(event),
                Record::Smaps(_) => {}
            }
        }
    })
}

/// Redraws `view` from `live` until `done`.
pub fn draw_until(view: &View, live: &SharedStatus, done: &StopToken) {
    loop {
        view.show(frame(&live.lock().unwrap_or_else(|p| p.into_inner())));
        if done.sleep_or_stop(REDRAW) {
            break;
        }
    }
    view.show(frame(&live.lock().unwrap_or_else(|p| p.into_inner())));
}

/// How following a recording ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// The harness finished the recording (its end reason).
    Finished(String),
    /// The manifest still says running, but its harness is gone.
    EndedAbruptly,
    /// The watcher asked to stop; the run goes on.
    Left,
}

/// Follows the recording in `dir` until it ends or `stop` is set: the view on a terminal,
/// else the frame as plain lines every `plain_every`; new notes above either.
pub fn follow(
    dir: &Path,
    view: Option<&View>,
    plain_every: Duration,
    stop: &AtomicBool,
) -> (Followed, LiveStatus) {
    let mut tail = Tail::open(dir);
    let mut status = LiveStatus::default();
    let mut notes_shown = 0;
    let mut next_plain = Instant::now();
    loop {
        // The manifest first: what it says was written before the records read after it.
        let ended = ending(dir);
        let (events, ticks) = tail.read();
        fold(&mut status, events, ticks);
        for note in status.notes_since(notes_shown) {
            say(note);
        }
        notes_shown = status.notes_total;
        match view {
            Some(view) => view.show(frame(&status)),
            None if Instant::now() >= next_plain || ended.is_some() => {
                for line in frame(&status).lines() {
                    say(line);
                }
                next_plain = Instant::now() + plain_every;
            }
            None => {}
        }
        if let Some(ended) = ended {
            return (ended, status);
        }
        if stop.load(Ordering::Relaxed) {
            return (Followed::Left, status);
        }
        std::thread::sleep(REDRAW);
    }
}

/// `Some` once the recording is over.
fn ending(dir: &Path) -> Option<Followed> {
    let manifest = read_manifest(dir).ok()?;
    if manifest.status == RunStatus::Finished {
        return Some(Followed::Finished(manifest.end_reason.unwrap_or_default()));
    }
    if manifest.still_recording() {
        return None;
    }
    // The harness may have finished between the two reads.
    match read_manifest(dir) {
        Ok(m) if m.status == RunStatus::Finished => {
            Some(Followed::Finished(m.end_reason.unwrap_or_default()))
        }
        _ => Some(Followed::EndedAbruptly),
    }
}

/// Folds events and ticks together in time order.
fn fold(status: &mut LiveStatus, events: Vec<Event>, ticks: Vec<Tick>) {
    let mut events = events.into_iter().peekable();
    for tick in ticks {
        while let Some(event) = events.next_if(|e| e.t_ns <= tick.t_ns) {
            status.event(&event);
        }
        status.tick(&tick);
    }
    for event in events {
        status.event(&event);
    }
}
