//! Where worker output goes: a log file per worker, pumped on threads of their own, and the
//! trial boundaries found in it, turned into events and into requests for the sampler.

use super::HarnessConfig;
use crate::clock::RunClock;
use crate::recording::{Boundary, Event, EventKind, RecordSender};
use crate::sampler::Control;
use crate::supervisor::{BoundarySink, LogFile, TrialBoundary, TrialParser, WorkerOutput};
use anyhow::Context;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

pub(super) fn worker_output(
    logs_dir: &Path,
    index: u32,
    config: &HarnessConfig,
    clock: RunClock,
    sink: &BoundarySink,
    records: &RecordSender,
    pid: Option<i32>,
) -> anyhow::Result<Arc<WorkerOutput>> {
    let path = logs_dir.join(format!("worker-{index}.log"));
    let log = LogFile::create(&path, config.log_cap)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let records = records.clone();
    Ok(Arc::new(WorkerOutput {
        worker: index,
        clock,
        log: Mutex::new(log),
        on_note: Arc::new(move |worker, message| {
            records.event_now(&clock, Some(worker), EventKind::Note { message })
        }),
        parser: Mutex::new(TrialParser::new(config.trial_regex.clone(), clock.now().0)),
        on_boundaries: sink.clone(),
        pid,
        root: config.root.clone(),
    }))
}

/// Pumps `source` on a new thread and signals `done` at its end; returns how many threads
/// started (0 or 1).
pub(super) fn spawn_pump(
    output: Arc<WorkerOutput>,
    source: impl std::io::Read + Send + 'static,
    stream: &'static str,
    done: Sender<()>,
) -> usize {
    let name = format!("memwarden-{stream}-{}", output.worker);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        raise_priority();
        output.pump(source, stream);
        let _ = done.send(());
    });
    usize::from(spawned.is_ok())
}

/// Trial boundaries for the policy engine.
#[derive(Debug, Clone)]
pub(super) enum Feed {
    TrialStart(u32, String),
    TrialEnd(u32),
}

/// Trial events waiting for room in the writer's channel: the output pump never waits for the
/// writer, or a worker that prints markers faster than the disk takes them would block on its
/// own stdout. At most [`BACKLOG`] wait; beyond that they are dropped, counted and said.
#[derive(Default)]
struct Backlog {
    waiting: std::collections::VecDeque<Event>,
    dropped: u64,
}

/// Trial events held for the writer, at most.
pub(super) const BACKLOG: usize = 65_536;

impl Backlog {
    /// Sends what waits, in order, until the channel is full.
    fn drain(&mut self, records: &RecordSender) {
        while let Some(event) = self.waiting.pop_front() {
            if let Some(event) = records.try_event(event) {
                self.waiting.push_front(event);
                return;
            }
        }
    }

    fn send(&mut self, records: &RecordSender, worker: u32, event: Event) {
        self.drain(records);
        let event = match self.waiting.is_empty() {
            true => match records.try_event(event) {
                None => return,
                Some(event) => event,
            },
            false => event,
        };
        if self.waiting.len() < BACKLOG {
            self.waiting.push_back(event);
            return;
        }
        self.dropped += 1;
        if self.dropped == 1 {
            // Waits for room: this is said once, and is worth it.
            self.waiting.push_back(Event {
                worker: Some(worker),
                kind: EventKind::Note {
                    message: format!("worker {worker} printed trial lines faster than they could be recorded; beyond {BACKLOG} waiting, trial boundaries are dropped"),
                },
                ..event
            });
        }
    }
}

/// Turns parsed boundaries into events, tells the sampler to take PSS and smaps now, and
/// passes them to the policy engine (`feed`). It never waits: see [`Backlog`]. A call with no
/// boundaries is a stream's end: what still waits is sent, waiting for room (the worker no
/// longer writes to that stream).
pub(super) fn boundary_sink(
    records: RecordSender,
    control: Sender<Control>,
    clock: RunClock,
    feed: Option<crossbeam_channel::Sender<Feed>>,
) -> BoundarySink {
    let backlog = Mutex::new(Backlog::default());
    Arc::new(move |worker, boundaries: Vec<TrialBoundary>| {
        let mut backlog = backlog.lock().unwrap_or_else(|p| p.into_inner());
        if boundaries.is_empty() {
            for event in backlog.waiting.drain(..) {
                records.event(event);
            }
            return;
        }
        let wall = |t_ns: u64| {
            let (now_ns, now_wall) = clock.now();
            now_wall.saturating_sub(now_ns.saturating_sub(t_ns))
        };
        // A start reported together with its own end (Optuna) happened earlier: its smaps are
        // the previous end's, so only boundaries that happen now get a snapshot.
        let ended: Vec<String> = boundaries
            .iter()
            .filter_map(|b| match b {
                TrialBoundary::End { trial, .. } => Some(trial.clone()),
                TrialBoundary::Start { .. } => None,
            })
            .collect();
        for boundary in boundaries {
            let (t_ns, kind, snapshot) = match boundary {
                TrialBoundary::Start {
                    t_ns,
                    trial,
                    params,
                    source,
                } => {
                    let snapshot =
                        (!ended.contains(&trial)).then(|| (trial.clone(), Boundary::TrialStart));
                    (
                        t_ns,
                        EventKind::TrialStart {
                            trial: trial.into(),
                            params: std::sync::Arc::new(
                                params.into_iter().map(|(k, v)| (k.into(), v)).collect(),
                            ),
                            source,
                        },
                        snapshot,
                    )
                }
                TrialBoundary::End {
                    t_ns,
                    trial,
                    state,
                    value,
                    memory,
                } => {
                    let snapshot = Some((trial.clone(), Boundary::TrialEnd));
                    (
                        t_ns,
                        EventKind::TrialEnd {
                            trial: trial.into(),
                            state: state.into(),
                            value,
                            memory,
                        },
                        snapshot,
                    )
                }
            };
            if let Some(feed) = &feed {
                let _ = feed.send(match &kind {
                    EventKind::TrialStart { trial, .. } => {
                        Feed::TrialStart(worker, trial.to_string())
                    }
                    _ => Feed::TrialEnd(worker),
                });
            }
            let event = Event {
                t_ns,
                wall_ns: wall(t_ns),
                worker: Some(worker),
                kind,
            };
            backlog.send(&records, worker, event);
            if let Some((trial, boundary)) = snapshot {
                let _ = control.send(Control::Boundary {
                    worker,
                    trial,
                    boundary,
                });
            }
        }
    })
}

/// The pump reads each end line and then the worker's memory: a pump that waits for a core
/// behind busy workers reads the next trial's memory (a few MiB per millisecond of delay, with
/// the workers filling the cores; nice -10 did not help on Linux 6.18: 8–17% of readings were
/// still late with 3 workers on 2 cores). So its thread takes the lowest real-time priority
/// (SCHED_FIFO 1) where memwarden may (root or CAP_SYS_NICE), which runs it as soon as a line
/// arrives, else nice -10, else the default; the boundary reads' health line shows what that
/// cost. A pump only reads and parses what the worker writes, so it cannot take more CPU than
/// the worker spends writing, and the kernel's real-time throttling bounds it besides.
fn raise_priority() {
    // SAFETY: plain syscalls on this thread's own id, with a valid parameter struct.
    unsafe {
        let param = libc::sched_param { sched_priority: 1 };
        if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 {
            return;
        }
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::TrialSource;

    #[test]
    fn a_marker_flood_never_waits_for_the_writer() {
        // A channel of one record that nothing reads: a sink that waited would hang here.
        let records = RecordSender::unread(1);
        let (control, _control_rx) = std::sync::mpsc::channel();
        let sink = boundary_sink(records, control, RunClock::start(), None);
        for i in 0..BACKLOG + 10 {
            let start = TrialBoundary::Start {
                t_ns: i as u64,
                trial: i.to_string(),
                params: Default::default(),
                source: TrialSource::Marker,
            };
            sink(0, vec![start]);
        }
    }
}
