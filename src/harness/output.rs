//! Where worker output goes: a log file per worker, pumped on threads of their own, and the
//! trial boundaries found in it, turned into events and into requests for the sampler.

use super::HarnessConfig;
use crate::clock::RunClock;
use crate::recording::{Boundary, Event, EventKind, RecordSender};
use crate::sampler::Control;
use crate::supervisor::{BoundarySink, TrialBoundary, TrialParser, WorkerOutput};
use anyhow::Context;
use std::io::BufWriter;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

pub(super) fn worker_output(
    logs_dir: &Path,
    index: u32,
    config: &HarnessConfig,
    clock: RunClock,
    sink: &BoundarySink,
    pid: Option<i32>,
) -> anyhow::Result<Arc<WorkerOutput>> {
    let path = logs_dir.join(format!("worker-{index}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Arc::new(WorkerOutput {
        worker: index,
        clock,
        log: Mutex::new(BufWriter::new(file)),
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

/// Turns parsed boundaries into events, tells the sampler to take PSS and smaps now, and
/// passes them to the policy engine (`feed`).
pub(super) fn boundary_sink(
    records: RecordSender,
    control: Sender<Control>,
    clock: RunClock,
    feed: Option<crossbeam_channel::Sender<Feed>>,
) -> BoundarySink {
    Arc::new(move |worker, boundaries: Vec<TrialBoundary>| {
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
                            trial,
                            params,
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
                            trial,
                            state,
                            value,
                            memory,
                        },
                        snapshot,
                    )
                }
            };
            if let Some(feed) = &feed {
                let _ = feed.send(match &kind {
                    EventKind::TrialStart { trial, .. } => Feed::TrialStart(worker, trial.clone()),
                    _ => Feed::TrialEnd(worker),
                });
            }
            records.event(Event {
                t_ns,
                wall_ns: wall(t_ns),
                worker: Some(worker),
                kind,
            });
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
