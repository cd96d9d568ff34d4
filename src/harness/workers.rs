//! The workers of one session: started (or adopted), restarted on the policy's orders, watched
//! for exits, and stopped as whole process groups (SIGTERM, the grace period, SIGKILL), with the
//! guardian told which groups to kill should the harness die.

use super::output::{boundary_sink, spawn_pump, worker_output, Feed};
use super::{HarnessConfig, Workload};
use crate::clock::RunClock;
use crate::probe::ProcessHandle;
use crate::recording::{EventKind, RecordSender};
use crate::sampler::Control;
use crate::supervisor::{
    group_alive, reaper, signal_group, signal_process, spawn_worker, try_reap, BoundarySink, Exit,
    Gate, GateQuestion, GroupStopper, Guardian, SpawnOptions, StopRequest, Tail,
};
use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Worker {
    index: u32,
    pid: i32,
    pgid: i32,
    exited: Option<Exit>,
    /// We asked it to stop: its exit is no failure.
    stop_requested: bool,
    /// The guardian no longer watches the group (it emptied and its id may be reused).
    released: bool,
    /// Attach mode: the adopted process (its handle fails once it exits). Not ours to stop.
    adopted: Option<ProcessHandle>,
}

/// A worker's main process ended.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ended {
    pub index: u32,
    pub exit: Exit,
    /// Started by us (not attached).
    pub ours: bool,
    /// Ended because we stopped it.
    pub requested: bool,
}

pub(super) struct Workers<'a> {
    config: &'a HarnessConfig,
    clock: RunClock,
    records: RecordSender,
    sampler: Sender<Control>,
    logs_dir: PathBuf,
    workers: BTreeMap<u32, Worker>,
    guardian: Option<Guardian>,
    pumps: usize,
    pumps_done: (Sender<()>, Receiver<()>),
    sink: BoundarySink,
    argv: Vec<String>,
    pub(super) options: SpawnOptions,
    /// Per-worker cgroup.procs files, where each worker has a memory cgroup of its own.
    pub(super) cgroups: BTreeMap<u32, PathBuf>,
    /// Per worker with a cgroup: its members at the last escapee walk, and when that was.
    walked: BTreeMap<u32, (Vec<i32>, Instant)>,
    questions: Option<crossbeam_channel::Sender<GateQuestion>>,
    gates: BTreeMap<u32, Gate>,
    /// Groups being stopped (a restart or the run's end).
    stopper: GroupStopper,
    /// We are the workers' child subreaper: orphans come to us to be attributed and reaped.
    pub(super) subreaper: bool,
    /// The orphans reparented to us, by pid.
    orphans: BTreeMap<i32, reaper::Orphan>,
    /// Orphans' process groups of their own (a daemon's `setsid`) that the guardian watches.
    orphan_groups: BTreeSet<i32>,
    /// Groups that processes of a worker's tree moved to (a `setsid` child whose parent lives
    /// on), with their worker: the guardian watches them and they are stopped with the worker.
    escaped: BTreeMap<i32, u32>,
    last_orphan_scan: Option<Instant>,
}

/// How often our children are looked through for orphans: a zombie waits at most this long.
const ORPHAN_SCAN: Duration = Duration::from_millis(200);

impl<'a> Workers<'a> {
    pub(super) fn new(
        config: &'a HarnessConfig,
        clock: RunClock,
        records: RecordSender,
        sampler: Sender<Control>,
        feed: Option<crossbeam_channel::Sender<Feed>>,
        questions: Option<crossbeam_channel::Sender<GateQuestion>>,
    ) -> anyhow::Result<Self> {
        let logs_dir = config.run_dir.join("logs");
        std::fs::create_dir_all(&logs_dir)
            .with_context(|| format!("cannot create {}", logs_dir.display()))?;
        let sink = boundary_sink(records.clone(), sampler.clone(), clock, feed);
        Ok(Self {
            config,
            clock,
            records,
            sampler,
            logs_dir,
            workers: BTreeMap::new(),
            guardian: None,
            pumps: 0,
            pumps_done: mpsc::channel(),
            sink,
            argv: Vec::new(),
            options: SpawnOptions::default(),
            cgroups: BTreeMap::new(),
            walked: BTreeMap::new(),
            questions,
            gates: BTreeMap::new(),
            stopper: GroupStopper::default(),
            subreaper: false,
            orphans: BTreeMap::new(),
            orphan_groups: BTreeSet::new(),
            escaped: BTreeMap::new(),
            last_orphan_scan: None,
        })
    }

    fn event(&self, worker: Option<u32>, kind: EventKind) {
        self.records.event_now(&self.clock, worker, kind);
    }

    /// Starts every worker unless `deferred` (the policy engine starts them), or adopts the
    /// processes to attach.
    pub(super) fn start(
        &mut self,
        workload: &Workload,
        stop: &Arc<StopRequest>,
        deferred: bool,
    ) -> anyhow::Result<()> {
        match workload {
            Workload::Spawn { argv, workers } => {
                self.argv = argv.clone();
                self.guardian = match Guardian::start() {
                    Ok(guardian) => Some(guardian),
                    Err(error) => {
                        let message = format!("no guardian ({error}): if memwarden is killed, only the workers' direct processes die with it");
                        crate::console::say(format!("warning: {message}"));
                        self.event(None, EventKind::Note { message });
                        None
                    }
                };
                if !deferred {
                    for index in 0..*workers {
                        self.spawn(index, 0)?;
                    }
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
                        let output = worker_output(
                            &self.logs_dir,
                            index,
                            self.config,
                            self.clock,
                            &self.sink,
                            &self.records,
                            Some(pid),
                        )?;
                        let file = std::fs::File::open(log)
                            .with_context(|| format!("cannot read {}", log.display()))?;
                        let tail = Tail::new(file, stop.clone());
                        std::thread::spawn(move || output.pump(tail, "log"));
                    }
                    self.workers.insert(
                        index,
                        Worker {
                            index,
                            pid,
                            pgid,
                            exited: None,
                            stop_requested: false,
                            released: true,
                            adopted: Some(handle),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Starts worker `index` (again, when `attempt` > 0) in a new process group.
    pub(super) fn spawn(&mut self, index: u32, attempt: u32) -> anyhow::Result<()> {
        let mut options = self.options.clone();
        if let Some(questions) = &self.questions {
            if !self.gates.contains_key(&index) {
                let gate = Gate::open(&self.gate_path(index), index, questions.clone())
                    .context("cannot open the trial gate socket")?;
                self.gates.insert(index, gate);
            }
            let path = &self.gates[&index].path;
            options
                .env
                .push(("MEMWARDEN_GATE".into(), path.display().to_string()));
        }
        options.cgroup_procs = self.cgroups.get(&index).cloned();
        let mut child = spawn_worker(&self.argv, index, &self.config.run_dir, &options)?;
        let pid = child.id() as i32;
        if let Some(guardian) = self.guardian.as_mut() {
            guardian.watch(pid);
        }
        self.event(
            Some(index),
            EventKind::WorkerStart {
                pid,
                pgid: pid,
                attempt,
            },
        );
        let _ = self.sampler.send(Control::Adopt { worker: index, pid });
        let output = worker_output(
            &self.logs_dir,
            index,
            self.config,
            self.clock,
            &self.sink,
            &self.records,
            Some(pid),
        )?;
        let done = &self.pumps_done.0;
        if let Some(stdout) = child.stdout.take() {
            self.pumps += spawn_pump(output.clone(), stdout, "out", done.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            self.pumps += spawn_pump(output, stderr, "err", done.clone());
        }
        self.workers.insert(
            index,
            Worker {
                index,
                pid,
                pgid: pid,
                exited: None,
                stop_requested: false,
                released: false,
                adopted: None,
            },
        );
        Ok(())
    }

    /// In the run directory, unless that path is too long for a socket address (108 bytes).
    fn gate_path(&self, index: u32) -> PathBuf {
        let path = self.config.run_dir.join(format!("gate-{index}.sock"));
        if path.as_os_str().len() < 100 {
            return path;
        }
        std::env::temp_dir().join(format!(
            "memwarden-{}-gate-{index}.sock",
            std::process::id()
        ))
    }

    /// SIGTERM (and SIGCONT, should it be paused) to the worker's group; SIGKILL follows after
    /// the grace period if the group is still there.
    pub(super) fn stop_worker(&mut self, index: u32, grace: Duration) {
        let Some(worker) = self.workers.get_mut(&index) else {
            return;
        };
        if worker.adopted.is_some() || worker.exited.is_some() {
            return;
        }
        worker.stop_requested = true;
        self.stopper.stop(worker.pgid, grace, Instant::now());
        self.stop_orphans(Some(index), grace, Instant::now());
    }

    /// SIGSTOP / SIGCONT to the whole group; SIGUSR1 to the main process only.
    pub(super) fn signal(&self, index: u32, signal: Signal) {
        let Some(worker) = self.workers.get(&index) else {
            return;
        };
        if worker.adopted.is_some() || worker.exited.is_some() {
            return;
        }
        match signal {
            Signal::SIGUSR1 => signal_process(worker.pid, signal),
            _ => signal_group(worker.pgid, signal),
        }
    }

    /// Reaps (or, for adopted processes, notices) the exits since the last call and records
    /// them.
    fn collect_exits(&mut self) -> Vec<Ended> {
        let mut exits = Vec::new();
        for worker in self.workers.values_mut().filter(|w| w.exited.is_none()) {
            let exit = match &mut worker.adopted {
                None => try_reap(worker.pid),
                Some(handle) => handle.try_cheap(true).is_none().then_some(Exit {
                    code: None,
                    signal: None,
                }),
            };
            if let Some(exit) = exit {
                worker.exited = Some(exit);
                exits.push((
                    worker.pid,
                    Ended {
                        index: worker.index,
                        exit,
                        ours: worker.adopted.is_none(),
                        requested: worker.stop_requested,
                    },
                ));
            }
        }
        for (pid, ended) in &exits {
            self.event(
                Some(ended.index),
                EventKind::WorkerExit {
                    pid: *pid,
                    code: ended.exit.code,
                    signal: ended.exit.signal,
                },
            );
        }
        exits.into_iter().map(|(_, ended)| ended).collect()
    }

    /// Records and returns the exits since the last call; kills stopped groups that outlived
    /// their grace period and releases groups that have emptied.
    pub(super) fn poll(&mut self) -> Vec<Ended> {
        let ended = self.collect_exits();
        self.tend_orphans();
        let mut emptied = self.stopper.poll(Instant::now());
        self.orphan_groups.retain(|&pgid| {
            let alive = group_alive(pgid);
            if !alive {
                emptied.push(pgid);
            }
            alive
        });
        for worker in self
            .workers
            .values_mut()
            .filter(|w| w.exited.is_some() && !w.released)
        {
            if !group_alive(worker.pgid) {
                worker.released = true;
                emptied.push(worker.pgid);
            }
        }
        if let Some(guardian) = self.guardian.as_mut() {
            for pgid in emptied {
                guardian.release(pgid);
            }
        }
        ended
    }

    /// Every worker has exited and no stopped group is left.
    pub(super) fn all_exited(&self) -> bool {
        self.workers.values().all(|w| w.exited.is_some()) && self.stopper.is_empty()
    }

    /// SIGTERM to every group still alive, the grace period (cut short by a second stop
    /// request), then SIGKILL; then a bounded wait for the output pumps. Attached processes are
    /// not ours to stop.
    pub(super) fn stop(mut self, request: &StopRequest) {
        let started = Instant::now();
        let grace = self.config.grace;
        for worker in self.workers.values().filter(|w| w.adopted.is_none()) {
            if group_alive(worker.pgid) {
                self.stopper.stop(worker.pgid, grace, started);
            }
        }
        self.stop_orphans(None, grace, started);
        let hard_end = started + grace + Duration::from_secs(5);
        let mut final_scan = false;
        loop {
            self.collect_exits();
            self.tend_orphans();
            if request.urgent() {
                self.stopper.kill_now();
            }
            let _ = self.stopper.poll(Instant::now());
            // A main process not yet reaped keeps its group: wait for both.
            let unreaped = self
                .workers
                .values()
                .any(|w| w.adopted.is_none() && w.exited.is_none());
            if (self.stopper.is_empty() && !unreaped) || Instant::now() >= hard_end {
                // One more look for orphans the workers' ends left (the periodic scan may not
                // have run since), which are stopped like the rest before the harness leaves.
                if !std::mem::replace(&mut final_scan, true) && Instant::now() < hard_end {
                    self.last_orphan_scan = None;
                    self.tend_orphans();
                    self.stop_orphans(None, grace, Instant::now());
                    continue;
                }
                break;
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

mod orphans;
