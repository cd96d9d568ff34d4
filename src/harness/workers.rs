//! The workers of one session: started (or adopted), watched for exits, and stopped as whole
//! process groups, with the guardian told which groups to kill should the harness die.

use super::output::{boundary_sink, spawn_pump, worker_output};
use super::{HarnessConfig, Workload};
use crate::clock::RunClock;
use crate::probe::ProcessHandle;
use crate::recording::{EventKind, RecordSender};
use crate::sampler::Control;
use crate::supervisor::{
    group_alive, signal_group, spawn_worker, try_reap, Exit, Guardian, StopRequest, Tail,
};
use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Worker {
    index: u32,
    pid: i32,
    pgid: i32,
    exited: Option<Exit>,
    /// The guardian no longer watches the group (it emptied and its id may be reused).
    released: bool,
    /// Attach mode: the adopted process (its handle fails once it exits). Not ours to stop.
    adopted: Option<ProcessHandle>,
}

pub(super) struct Workers<'a> {
    config: &'a HarnessConfig,
    clock: RunClock,
    records: RecordSender,
    sampler: Sender<Control>,
    logs_dir: PathBuf,
    workers: Vec<Worker>,
    guardian: Option<Guardian>,
    pumps: usize,
    pumps_done: (Sender<()>, Receiver<()>),
}

impl<'a> Workers<'a> {
    pub(super) fn new(
        config: &'a HarnessConfig,
        clock: RunClock,
        records: RecordSender,
        sampler: Sender<Control>,
    ) -> anyhow::Result<Self> {
        let logs_dir = config.run_dir.join("logs");
        std::fs::create_dir_all(&logs_dir)
            .with_context(|| format!("cannot create {}", logs_dir.display()))?;
        Ok(Self {
            config,
            clock,
            records,
            sampler,
            logs_dir,
            workers: Vec::new(),
            guardian: None,
            pumps: 0,
            pumps_done: mpsc::channel(),
        })
    }

    fn event(&self, worker: Option<u32>, kind: EventKind) {
        self.records.event_now(&self.clock, worker, kind);
    }

    pub(super) fn start(
        &mut self,
        workload: &Workload,
        stop: &Arc<StopRequest>,
    ) -> anyhow::Result<()> {
        let sink = boundary_sink(self.records.clone(), self.sampler.clone(), self.clock);
        match workload {
            Workload::Spawn { argv, workers } => {
                self.guardian = match Guardian::start() {
                    Ok(guardian) => Some(guardian),
                    Err(error) => {
                        let message = format!("no guardian ({error}): if memwarden is killed, only the workers' direct processes die with it");
                        eprintln!("memwarden: warning: {message}");
                        self.event(None, EventKind::Note { message });
                        None
                    }
                };
                for index in 0..*workers {
                    let mut child = spawn_worker(argv, index, &self.config.run_dir, &[])?;
                    let pid = child.id() as i32;
                    if let Some(guardian) = self.guardian.as_mut() {
                        guardian.watch(pid);
                    }
                    self.event(
                        Some(index),
                        EventKind::WorkerStart {
                            pid,
                            pgid: pid,
                            attempt: 0,
                        },
                    );
                    let _ = self.sampler.send(Control::Adopt { worker: index, pid });
                    let output =
                        worker_output(&self.logs_dir, index, self.config, self.clock, &sink)?;
                    let done = &self.pumps_done.0;
                    if let Some(stdout) = child.stdout.take() {
                        self.pumps += spawn_pump(output.clone(), stdout, "out", done.clone());
                    }
                    if let Some(stderr) = child.stderr.take() {
                        self.pumps += spawn_pump(output, stderr, "err", done.clone());
                    }
                    self.workers.push(Worker {
                        index,
                        pid,
                        pgid: pid,
                        exited: None,
                        released: false,
                        adopted: None,
                    });
                }
            }
            Workload::Attach { pids, logs } => {
                for (index, &pid) in (0u32..).zip(pids) {
                    let Some(handle) = ProcessHandle::try_open(&self.config.root, pid) else {
                        bail!("no process with pid {pid}");
                    };
                    let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
                        .map_or(pid, |p| p.as_raw());
                    self.event(
                        Some(index),
                        EventKind::WorkerStart {
                            pid,
                            pgid,
                            attempt: 0,
                        },
                    );
                    let _ = self.sampler.send(Control::Adopt { worker: index, pid });
                    if let Some(log) = logs.get(index as usize) {
                        let output =
                            worker_output(&self.logs_dir, index, self.config, self.clock, &sink)?;
                        let file = std::fs::File::open(log)
                            .with_context(|| format!("cannot read {}", log.display()))?;
                        let tail = Tail::new(file, stop.clone());
                        std::thread::spawn(move || output.pump(tail, "log"));
                    }
                    self.workers.push(Worker {
                        index,
                        pid,
                        pgid,
                        exited: None,
                        released: true,
                        adopted: Some(handle),
                    });
                }
            }
        }
        Ok(())
    }

    /// Reaps (or, for adopted processes, notices) the exits since the last call and records
    /// them; returns `(worker, exit, ours)`.
    fn collect_exits(&mut self) -> Vec<(u32, Exit, bool)> {
        let mut exits = Vec::new();
        for worker in self.workers.iter_mut().filter(|w| w.exited.is_none()) {
            let exit = match &mut worker.adopted {
                None => try_reap(worker.pid),
                Some(handle) => handle.try_cheap().is_none().then_some(Exit {
                    code: None,
                    signal: None,
                }),
            };
            if let Some(exit) = exit {
                worker.exited = Some(exit);
                exits.push((worker.index, worker.pid, exit, worker.adopted.is_none()));
            }
        }
        for &(index, pid, exit, _) in &exits {
            self.event(
                Some(index),
                EventKind::WorkerExit {
                    pid,
                    code: exit.code,
                    signal: exit.signal,
                },
            );
        }
        exits
            .into_iter()
            .map(|(index, _, exit, ours)| (index, exit, ours))
            .collect()
    }

    /// Records the exits since the last call and returns those of our workers that were not
    /// clean; releases groups that have emptied.
    pub(super) fn poll(&mut self) -> Vec<(u32, Exit)> {
        let failed = self
            .collect_exits()
            .into_iter()
            .filter(|(_, exit, ours)| *ours && !exit.success())
            .map(|(index, exit, _)| (index, exit))
            .collect();
        for worker in self
            .workers
            .iter_mut()
            .filter(|w| w.exited.is_some() && !w.released)
        {
            if !group_alive(worker.pgid) {
                worker.released = true;
                if let Some(guardian) = self.guardian.as_mut() {
                    guardian.release(worker.pgid);
                }
            }
        }
        failed
    }

    pub(super) fn all_exited(&self) -> bool {
        self.workers.iter().all(|w| w.exited.is_some())
    }

    /// SIGTERM to every group still alive, the grace period (cut short by a second stop
    /// request), then SIGKILL; then a bounded wait for the output pumps. Attached processes are
    /// not ours to stop.
    pub(super) fn stop(mut self, request: &StopRequest) {
        let ours = |w: &&mut Worker| w.adopted.is_none();
        for worker in self
            .workers
            .iter_mut()
            .filter(ours)
            .filter(|w| group_alive(w.pgid))
        {
            signal_group(worker.pgid, Signal::SIGTERM);
        }
        let grace_end = Instant::now() + self.config.grace;
        let hard_end = grace_end + Duration::from_secs(5);
        let mut killed = false;
        loop {
            self.collect_exits();
            let alive: Vec<i32> = self
                .workers
                .iter_mut()
                .filter(ours)
                .filter(|w| w.exited.is_none() || group_alive(w.pgid))
                .map(|w| w.pgid)
                .collect();
            if alive.is_empty() || Instant::now() >= hard_end {
                break;
            }
            if !killed && (Instant::now() >= grace_end || request.urgent()) {
                alive
                    .into_iter()
                    .for_each(|pgid| signal_group(pgid, Signal::SIGKILL));
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(guardian) = self.guardian.take() {
            guardian.finish();
        }
        // Pumps end when the last writer of each pipe is gone; a process that escaped its group
        // could hold one open forever, so they get a bounded wait.
        let (done, pumps_done) = self.pumps_done;
        drop(done);
        let deadline = Instant::now() + Duration::from_secs(2);
        for _ in 0..self.pumps {
            if pumps_done
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_err()
            {
                break;
            }
        }
    }
}
