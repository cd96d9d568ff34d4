//! The sampler's thread and its tick: what is read when, and what goes to the writer and the
//! policy engine. The module header of `sampler` says the tiers.

use super::hold_budget::HoldLimits;
use super::rollup_budget::{Candidate, RollupBudget};
use super::snapshots::{snapshot_worker, SnapshotJob};
use super::tree::{self, WorkerTree};
use super::worker_cgroup::{Plan, Watches};
use crate::clock::RunClock;
use crate::freshness::PssHealth;
use crate::policy::{Reading, WorkerMemory};
use crate::probe::{ProcRoot, SystemProbe};
use crate::recording::{
    Boundary, Event, EventKind, GpuDeviceSample, ProcessSample, RecordSender, SystemSample, Tick,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct SamplerConfig {
    pub interval: Duration,
    /// Each tick's memory, condensed for the policy engine (none: no policy).
    pub readings: Option<crossbeam_channel::Sender<(u64, Reading)>>,
    /// Sample GPU memory (NVML) too.
    pub gpu: bool,
    /// Share of one core that smaps_rollup reads may use, all together.
    pub rollup_cpu_fraction: f64,
    /// What reads may cost each target (see `hold_budget`).
    pub hold: HoldLimits,
    pub root: ProcRoot,
    /// Where POSIX shared memory lives (`/dev/shm`): listed every few seconds. `None`: not.
    pub shm_dir: Option<std::path::PathBuf>,
    /// Each worker's own memory cgroup, where the harness made one.
    pub worker_cgroups: BTreeMap<u32, crate::supervisor::cgroup::WorkerCgroup>,
}

pub enum Control {
    /// Track `pid` (and its descendants) as worker `worker`.
    Adopt {
        worker: u32,
        pid: i32,
    },
    /// A trial boundary: read PSS for the worker's tree and snapshot its smaps.
    Boundary {
        worker: u32,
        trial: String,
        boundary: Boundary,
    },
    Stop,
}

#[derive(Debug, Default, Clone)]
pub struct SamplerStats {
    pub ticks: u64,
    pub overrun_ticks: u64,
    pub rollups: u64,
    pub longest_tick_ns: u64,
    /// Per worker, how often its tree's PSS was read and fresh.
    pub health: BTreeMap<u32, PssHealth>,
}

pub struct Sampler {
    control: Sender<Control>,
    handle: JoinHandle<SamplerStats>,
    /// Monotonic ns (run clock) of the last finished tick: the systemd watchdog's evidence that
    /// sampling is alive.
    last_tick_ns: Arc<AtomicU64>,
}

impl Sampler {
    pub fn start(
        config: SamplerConfig,
        clock: RunClock,
        records: RecordSender,
    ) -> std::io::Result<Self> {
        let (control, rx) = mpsc::channel();
        let system = SystemProbe::open(&config.root)?;
        if !system.has_pressure() {
            let message =
                "this kernel has no memory PSI (/proc/pressure/memory): pressure is not recorded";
            records.event_now(
                &clock,
                None,
                EventKind::Note {
                    message: message.into(),
                },
            );
        }
        let last_tick_ns = Arc::new(AtomicU64::new(0));
        let beat = last_tick_ns.clone();
        let handle = std::thread::Builder::new()
            .name("memwarden-sampler".into())
            .spawn(move || SamplerLoop::new(config, clock, records, system, beat).run(rx))?;
        Ok(Self {
            control,
            handle,
            last_tick_ns,
        })
    }

    pub fn last_tick_ns(&self) -> u64 {
        self.last_tick_ns.load(Ordering::Relaxed)
    }

    pub fn control(&self) -> Sender<Control> {
        self.control.clone()
    }

    /// Ends sampling; `None` when the sampling thread had crashed.
    pub fn stop(self) -> Option<SamplerStats> {
        let _ = self.control.send(Control::Stop);
        self.handle.join().ok()
    }
}

struct SamplerLoop {
    config: SamplerConfig,
    clock: RunClock,
    records: RecordSender,
    system: SystemProbe,
    workers: BTreeMap<u32, WorkerTree>,
    budget: RollupBudget,
    pending_boundaries: Vec<(u32, String, Boundary)>,
    snapshots: Option<Sender<SnapshotJob>>,
    snapshot_thread: Option<JoinHandle<()>>,
    stats: SamplerStats,
    unreported_overruns: u64,
    last_overrun_report: Instant,
    beat: Arc<AtomicU64>,
    gpu: Option<super::gpu::GpuThread>,
    shm: Option<super::shm::ShmWatch>,
    /// Per costly process of a worker with trials: its reads at trial ends.
    placed: BTreeMap<(u32, i32), Placed>,
    /// The workers' own cgroups that still read.
    cgroups: Watches,
}

impl SamplerLoop {
    fn new(
        config: SamplerConfig,
        clock: RunClock,
        records: RecordSender,
        system: SystemProbe,
        beat: Arc<AtomicU64>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<SnapshotJob>();
        let snapshot_records = records.clone();
        let root = config.root.clone();
        let gpu = config
            .gpu
            .then(|| super::gpu::GpuThread::start(config.interval));
        let snapshot_thread = std::thread::Builder::new()
            .name("memwarden-smaps".into())
            .spawn(move || snapshot_worker(root, rx, snapshot_records))
            .ok();
        let shm = config.shm_dir.clone().map(super::shm::ShmWatch::new);
        let (cgroups, lost) = Watches::open(&config.worker_cgroups);
        for (worker, message) in lost {
            crate::console::say(&message);
            records.event_now(&clock, Some(worker), EventKind::Note { message });
        }
        Self {
            budget: RollupBudget::new(config.rollup_cpu_fraction),
            config,
            clock,
            records,
            system,
            workers: BTreeMap::new(),
            pending_boundaries: Vec::new(),
            snapshots: snapshot_thread.as_ref().map(|_| tx),
            snapshot_thread,
            stats: SamplerStats::default(),
            unreported_overruns: 0,
            last_overrun_report: Instant::now(),
            beat,
            gpu,
            shm,
            placed: BTreeMap::new(),
            cgroups,
        }
    }

    fn run(mut self, control: Receiver<Control>) -> SamplerStats {
        let interval = self.config.interval;
        let mut next = Instant::now();
        // One unscheduled tick is allowed between scheduled ones, taken as soon as a trial
        // boundary arrives: back-to-back trials (Optuna) have no gap, and a sample taken at the
        // next scheduled tick would already hold the next trial's first allocations.
        let mut extra_tick_allowed = true;
        'outer: loop {
            loop {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                match control.recv_timeout(next - now) {
                    Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => break 'outer,
                    Ok(message @ Control::Boundary { .. }) if extra_tick_allowed => {
                        self.handle(message);
                        extra_tick_allowed = false;
                        self.tick(Instant::now());
                    }
                    Ok(message) => self.handle(message),
                    Err(RecvTimeoutError::Timeout) => break,
                }
            }
            extra_tick_allowed = true;
            // Messages that arrived exactly at the deadline still count for this tick.
            while let Ok(message) = control.try_recv() {
                match message {
                    Control::Stop => break 'outer,
                    message => self.handle(message),
                }
            }
            let started = Instant::now();
            self.tick(started);
            let took = started.elapsed();
            self.stats.longest_tick_ns = self.stats.longest_tick_ns.max(took.as_nanos() as u64);
            next += interval;
            let now = Instant::now();
            if now > next {
                let missed = ((now - next).as_nanos() / interval.as_nanos().max(1)) as u64 + 1;
                next += interval * missed as u32;
                self.stats.overrun_ticks += missed;
                self.unreported_overruns += missed;
            }
            self.report_overruns();
        }
        // A closing reading after the workers stopped: a kill the kernel made during their
        // grace period still reaches the cgroup's counter in the recording, and what a worker
        // left behind in /dev/shm is listed.
        if let Some(shm) = self.shm.as_mut() {
            shm.due_now();
        }
        self.tick(Instant::now());
        self.say_put_off();
        self.report_overruns_now();
        drop(self.snapshots.take());
        if let Some(thread) = self.snapshot_thread.take() {
            let _ = thread.join();
        }
        self.stats
    }

    fn handle(&mut self, message: Control) {
        match message {
            Control::Adopt { worker, pid } => {
                let mut events = Vec::new();
                let t_ns = self.clock.now().0;
                let tree = self
                    .workers
                    .entry(worker)
                    .or_insert_with(|| WorkerTree::new(worker));
                tree.adopt(&self.config.root, pid, t_ns, &mut events);
                self.emit(events);
            }
            Control::Boundary {
                worker,
                trial,
                boundary,
            } => {
                if let Some(tree) = self.workers.get_mut(&worker) {
                    tree.reports_trials = true;
                }
                self.pending_boundaries.push((worker, trial, boundary));
            }
            Control::Stop => {}
        }
    }

    fn emit(&self, events: Vec<(u32, EventKind)>) {
        if events.is_empty() {
            return;
        }
        for (worker, kind) in events {
            self.records.event_now(&self.clock, Some(worker), kind);
        }
    }

    fn tick(&mut self, at: Instant) {
        self.stats.ticks += 1;
        let t_ns = self.clock.since_start(at);
        let wall_ns = crate::clock::wall_ns();
        let mut system = self.system.sample().unwrap_or_default();
        if let Some(message) = self.system.cgroup_trouble() {
            crate::console::say(&message);
            self.records
                .event_now(&self.clock, None, EventKind::Note { message });
        }
        let mut events = Vec::new();
        let mut processes = Vec::new();
        let ticks_per_second =
            (1_000_000_000 / self.config.interval.as_nanos().max(1)).max(1) as u64;
        let all_threads = self.stats.ticks % ticks_per_second == 1 % ticks_per_second;
        let boundaries = std::mem::take(&mut self.pending_boundaries);
        let forced: BTreeSet<u32> = boundaries.iter().map(|(w, _, _)| *w).collect();
        let workers = &self.workers;
        let tracked = |w: u32| workers.get(&w).map_or(0, |t| t.processes.len());
        let before = events.len();
        let (cgroups, plans) =
            self.cgroups
                .read(t_ns, ticks_per_second, &forced, &tracked, &mut events);
        // A kill at a worker's limit, a cgroup given up: said on the terminal as well.
        for (_, event) in &events[before..] {
            if let EventKind::Note { message } = event {
                crate::console::say(message);
            }
        }
        for tree in self.workers.values_mut() {
            let thorough = match plans.get(&tree.worker) {
                Some(Plan::Skip) => continue,
                Some(Plan::All) => true,
                Some(Plan::EveryTick) | None => all_threads,
            };
            for (pid, cheap) in tree.sample(&self.config.root, thorough, t_ns, &mut events) {
                processes.push(ProcessSample {
                    worker: tree.worker,
                    pid,
                    rss: cheap.rss,
                    anon: cheap.anon,
                    file: cheap.file,
                    shmem: cheap.shmem,
                    swap: cheap.swap,
                    ..ProcessSample::default()
                });
            }
        }
        let gpus = self.read_gpu(&mut processes);
        let ends: BTreeSet<u32> = boundaries
            .iter()
            .filter(|(_, _, b)| *b == Boundary::TrialEnd)
            .map(|(w, _, _)| *w)
            .collect();
        let placed = self.read_rollups(t_ns, &forced, &ends, &mut processes, &mut events);
        // Several boundaries of one worker in one tick (tests of a few ms, fast trials) get one
        // snapshot each way, under the latest trial: the others would be the same reading again,
        // each holding the map, and stamped with the same tick they were counted as many times.
        let mut latest: BTreeMap<(u32, Boundary), String> = BTreeMap::new();
        for (worker, trial, boundary) in boundaries {
            latest.insert((worker, boundary), trial);
        }
        for ((worker, boundary), trial) in latest {
            self.request_snapshot(t_ns, worker, trial, boundary, &placed);
        }
        let mut memory = self.tree_memory(t_ns, &processes, &mut events);
        self.cgroups.memory(&cgroups, &plans, &mut memory);
        self.outside_trees(t_ns, &mut system, &memory);
        // Stamped with the tick that observed them: analysis lines an exec up with its samples.
        for (worker, kind) in events {
            self.records.event(Event {
                t_ns,
                wall_ns,
                worker: Some(worker),
                kind,
            });
        }
        if let Some(readings) = &self.config.readings {
            let _ = readings.send((t_ns, reading(&system, memory, &gpus)));
        }
        self.beat.store(t_ns.max(1), Ordering::Relaxed);
        self.records.send_tick(Tick {
            t_ns,
            wall_ns,
            system,
            processes,
            gpus,
            cgroups,
        });
    }

    fn read_gpu(&mut self, processes: &mut [ProcessSample]) -> Vec<GpuDeviceSample> {
        let Some(gpu) = self.gpu.as_mut() else {
            return Vec::new();
        };
        let tracked: BTreeMap<i32, Vec<i32>> = self
            .workers
            .values()
            .flat_map(|w| w.processes.values())
            .map(|t| (t.handle.pid, t.handle.ns_pids.clone()))
            .collect();
        let mut notes = Vec::new();
        let devices = gpu.apply(&self.config.root, &tracked, processes, &mut notes);
        for message in notes {
            self.records
                .event_now(&self.clock, None, EventKind::Note { message });
        }
        devices
    }

    /// Snapshots the mappings of the worker's processes, leaving out the costly ones not read
    /// at this trial end (`placed`: the ones that were).
    fn request_snapshot(
        &self,
        t_ns: u64,
        worker: u32,
        trial: String,
        boundary: Boundary,
        placed: &BTreeSet<(u32, i32)>,
    ) {
        let Some(tree) = self.workers.get(&worker) else {
            return;
        };
        let processes = tree
            .processes
            .values()
            .filter(|t| {
                !self.config.hold.is_costly(t.expected_hold_ns())
                    || placed.contains(&(worker, t.handle.pid))
            })
            .map(|t| (t.handle.pid, t.handle.start_ticks))
            .collect();
        if let Some(snapshots) = &self.snapshots {
            let _ = snapshots.send(SnapshotJob {
                t_ns,
                worker,
                processes,
                trial,
                boundary,
            });
        }
    }

    fn report_overruns(&mut self) {
        if self.unreported_overruns > 0
            && self.last_overrun_report.elapsed() >= Duration::from_secs(1)
        {
            self.report_overruns_now();
        }
    }

    fn report_overruns_now(&mut self) {
        if self.unreported_overruns == 0 {
            return;
        }
        let kind = EventKind::SamplerOverrun {
            missed_ticks: self.unreported_overruns,
        };
        self.records.event_now(&self.clock, None, kind);
        self.unreported_overruns = 0;
        self.last_overrun_report = Instant::now();
    }
}

/// What the policy engine reads at one tick.
fn reading(
    system: &SystemSample,
    workers: BTreeMap<u32, WorkerMemory>,
    gpus: &[GpuDeviceSample],
) -> Reading {
    // Inside a cgroup with a limit, the brake, escalation and floors work against the limit.
    let (mem_total_bytes, mem_available_bytes) = system.effective_memory();
    Reading {
        mem_total_bytes,
        mem_available_bytes,
        psi_full_avg10: system.psi_full_avg10.map(f64::from),
        limit_bytes: system
            .cgroup_limit_bytes
            .filter(|&limit| limit < system.mem_total_bytes),
        workers,
        devices: gpus
            .iter()
            .map(|g| (g.device, g.used_bytes, g.total_bytes))
            .collect(),
    }
}

mod memory;
use memory::Placed;
