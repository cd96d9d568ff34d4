//! A recording session from start to end: creates the run directory, starts the writer, the
//! sampler and the workers (or adopts running processes), waits for the end (all workers
//! exited, a signal, or the duration), stops the workers and closes the recording in an order
//! that loses nothing: workers, then output pumps, then the sampler, then the writer, then
//! compaction, and last the manifest that says the run finished.

use crate::clock::RunClock;
use crate::probe::{host_facts, ProcRoot, ProcessHandle};
use crate::recording::{
    write_manifest, Boundary, Compactor, Event, EventKind, Manifest, RecordSender, RecordingWriter,
    RunStatus, WriterConfig, WriterStats, FORMAT_VERSION,
};
use crate::sampler::{Control, Sampler, SamplerConfig, SamplerStats};
use crate::supervisor::{
    group_alive, signal_group, spawn_worker, try_reap, BoundarySink, Exit, Guardian, TrialBoundary,
    TrialParser, WorkerOutput,
};
use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use regex::Regex;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct HarnessConfig {
    pub run_dir: PathBuf,
    pub interval: Duration,
    pub rollup_cpu_fraction: f64,
    /// Between SIGTERM and SIGKILL when stopping workers.
    pub grace: Duration,
    /// Stop the run after this long.
    pub duration: Option<Duration>,
    pub trial_regex: Option<Regex>,
    pub segment_duration: Duration,
    pub root: ProcRoot,
}

pub enum Workload {
    /// Start `workers` copies of `argv`.
    Spawn { argv: Vec<String>, workers: u32 },
    /// Record running processes; `logs[i]` is tailed for worker i's trial lines.
    Attach { pids: Vec<i32>, logs: Vec<PathBuf> },
}

#[derive(Debug)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub stop_reason: String,
    /// Worker exits that memwarden did not cause.
    pub failed_workers: Vec<(u32, Exit)>,
    pub writer: WriterStats,
    pub sampler: SamplerStats,
}

struct Worker {
    index: u32,
    pid: i32,
    pgid: i32,
    exited: Option<Exit>,
    /// The guardian no longer watches the group (it emptied and its id may be reused).
    released: bool,
    /// Attach mode: the adopted process (its handle fails once it exits).
    adopted: Option<ProcessHandle>,
}

impl Worker {
    fn record_exit(&mut self, exit: Exit, event: &dyn Fn(Option<u32>, EventKind)) {
        self.exited = Some(exit);
        let kind = EventKind::WorkerExit {
            pid: self.pid,
            code: exit.code,
            signal: exit.signal,
        };
        event(Some(self.index), kind);
    }
}

/// Secrets never reach the manifest: `--api-key=x`, `TOKEN=x`, `--password x` are masked.
pub fn redact(argv: &[String]) -> Vec<String> {
    const SECRET: [&str; 4] = ["KEY", "TOKEN", "SECRET", "PASSWORD"];
    let secret = |s: &str| SECRET.iter().any(|w| s.to_ascii_uppercase().contains(w));
    let mut out = Vec::with_capacity(argv.len());
    let mut mask_next = false;
    for arg in argv {
        if mask_next {
            out.push("***".to_string());
            mask_next = false;
        } else if let Some((name, _)) = arg.split_once('=').filter(|(name, _)| secret(name)) {
            out.push(format!("{name}=***"));
        } else {
            mask_next = arg.starts_with('-') && secret(arg);
            out.push(arg.clone());
        }
    }
    out
}

pub fn record(
    config: HarnessConfig,
    workload: Workload,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<RunSummary> {
    prepare_run_dir(&config.run_dir)?;
    let clock = RunClock::start();
    let facts = host_facts(&config.root);
    let (mode, command, count) = match &workload {
        Workload::Spawn { argv, workers } => ("run", redact(argv), *workers),
        Workload::Attach { pids, .. } => (
            "attach",
            pids.iter().map(|p| p.to_string()).collect(),
            pids.len() as u32,
        ),
    };
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        memwarden_version: env!("CARGO_PKG_VERSION").into(),
        mode: mode.into(),
        command,
        workers: count,
        host: facts.host,
        boot_id: facts.boot_id,
        kernel: facts.kernel,
        start_wall_ns: clock.start_wall_ns(),
        start_rfc3339: humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_nanos(clock.start_wall_ns()),
        )
        .to_string(),
        interval_ns: config.interval.as_nanos() as u64,
        page_size: procfs::page_size(),
        status: RunStatus::Running,
        end_wall_ns: None,
        end_reason: None,
    };
    write_manifest(&config.run_dir, &manifest)?;

    let compactor = Compactor::start();
    let writer = RecordingWriter::start(
        &config.run_dir,
        WriterConfig {
            segment_duration: config.segment_duration,
            ..WriterConfig::default()
        },
        compactor.queue(),
    )?;
    let records = writer.sender();
    let sampler = Sampler::start(
        SamplerConfig {
            interval: config.interval,
            rollup_cpu_fraction: config.rollup_cpu_fraction,
            root: config.root.clone(),
        },
        clock,
        records.clone(),
    )
    .context("cannot start the sampler")?;
    let sink = boundary_sink(records.clone(), sampler.control(), clock);
    let (pumps_done_tx, pumps_done) = std::sync::mpsc::channel::<()>();
    let mut pumps = 0;
    let event = |worker: Option<u32>, kind: EventKind| {
        let (t_ns, wall_ns) = clock.now();
        records.event(Event {
            t_ns,
            wall_ns,
            worker,
            kind,
        });
    };

    let mut guardian = match &workload {
        Workload::Spawn { .. } => match Guardian::start() {
            Ok(guardian) => Some(guardian),
            Err(error) => {
                let message = format!("no guardian ({error}): if memwarden is killed, only the workers' direct processes die with it");
                eprintln!("memwarden: warning: {message}");
                event(None, EventKind::Note { message });
                None
            }
        },
        Workload::Attach { .. } => None,
    };
    let mut workers = Vec::new();
    let logs_dir = config.run_dir.join("logs");
    std::fs::create_dir_all(&logs_dir)
        .with_context(|| format!("cannot create {}", logs_dir.display()))?;
    let started = (|| -> anyhow::Result<()> {
        match &workload {
            Workload::Spawn { argv, workers: n } => {
                for index in 0..*n {
                    let mut child = spawn_worker(argv, index, &config.run_dir, &[])?;
                    let pid = child.id() as i32;
                    if let Some(guardian) = guardian.as_mut() {
                        guardian.watch(pid);
                    }
                    event(
                        Some(index),
                        EventKind::WorkerStart {
                            pid,
                            pgid: pid,
                            attempt: 0,
                        },
                    );
                    let _ = sampler
                        .control()
                        .send(Control::Adopt { worker: index, pid });
                    let output = worker_output(&logs_dir, index, &config, clock, &sink)?;
                    if let Some(stdout) = child.stdout.take() {
                        pumps += spawn_pump(output.clone(), stdout, "out", pumps_done_tx.clone());
                    }
                    if let Some(stderr) = child.stderr.take() {
                        pumps += spawn_pump(output, stderr, "err", pumps_done_tx.clone());
                    }
                    workers.push(Worker {
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
                for (index, &pid) in pids.iter().enumerate() {
                    let index = index as u32;
                    let Some(handle) = ProcessHandle::try_open(&config.root, pid) else {
                        bail!("no process with pid {pid}");
                    };
                    let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
                        .map_or(pid, |p| p.as_raw());
                    event(
                        Some(index),
                        EventKind::WorkerStart {
                            pid,
                            pgid,
                            attempt: 0,
                        },
                    );
                    let _ = sampler
                        .control()
                        .send(Control::Adopt { worker: index, pid });
                    if let Some(log) = logs.get(index as usize) {
                        let output = worker_output(&logs_dir, index, &config, clock, &sink)?;
                        let file = std::fs::File::open(log)
                            .with_context(|| format!("cannot read {}", log.display()))?;
                        let stop = stop.clone();
                        std::thread::spawn(move || {
                            output.pump(crate::supervisor::Tail::new(file, stop), "log")
                        });
                    }
                    workers.push(Worker {
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
    })();
    drop(pumps_done_tx);

    let deadline = config.duration.map(|d| Instant::now() + d);
    let mut failed_workers = Vec::new();
    let stop_reason = match started {
        Err(error) => {
            event(
                None,
                EventKind::Note {
                    message: format!("start failed: {error:#}"),
                },
            );
            stop_workers(&mut workers, &config, &event);
            if let Some(guardian) = guardian {
                guardian.finish();
            }
            finish(
                writer,
                compactor,
                sampler,
                &config.run_dir,
                &mut manifest,
                "start failed",
            )?;
            return Err(error);
        }
        Ok(()) => loop {
            for worker in workers.iter_mut().filter(|w| w.exited.is_none()) {
                if let Some(exit) = poll_exit(worker) {
                    worker.record_exit(exit, &event);
                    if !exit.success() && worker.adopted.is_none() {
                        failed_workers.push((worker.index, exit));
                    }
                }
            }
            for worker in workers
                .iter_mut()
                .filter(|w| w.exited.is_some() && !w.released)
            {
                if !group_alive(worker.pgid) {
                    worker.released = true;
                    if let Some(guardian) = guardian.as_mut() {
                        guardian.release(worker.pgid);
                    }
                }
            }
            if stop.load(Ordering::Relaxed) {
                break "stop requested (signal)".to_string();
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break "duration reached".to_string();
            }
            if workers.iter().all(|w| w.exited.is_some()) {
                break "all workers exited".to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        },
    };
    event(
        None,
        EventKind::Stop {
            reason: stop_reason.clone(),
        },
    );
    stop_workers(&mut workers, &config, &event);
    if let Some(guardian) = guardian {
        guardian.finish();
    }
    // Pumps end when the last writer of each pipe is gone; a process that escaped its group
    // could hold one open forever, so they get a bounded wait.
    let pump_deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..pumps {
        let left = pump_deadline.saturating_duration_since(Instant::now());
        if pumps_done.recv_timeout(left).is_err() {
            break;
        }
    }
    let (writer_stats, sampler_stats) = finish(
        writer,
        compactor,
        sampler,
        &config.run_dir,
        &mut manifest,
        &stop_reason,
    )?;
    Ok(RunSummary {
        run_dir: config.run_dir,
        stop_reason,
        failed_workers,
        writer: writer_stats,
        sampler: sampler_stats,
    })
}

fn prepare_run_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.join(crate::recording::MANIFEST_FILE).exists() {
        bail!(
            "{}: already holds a recording; choose another --out",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))
}

fn poll_exit(worker: &mut Worker) -> Option<Exit> {
    match &mut worker.adopted {
        None => try_reap(worker.pid),
        Some(handle) => handle.try_cheap().is_none().then_some(Exit {
            code: None,
            signal: None,
        }),
    }
}

/// SIGTERM to every group still alive, the grace period, then SIGKILL; attached processes are
/// not ours to stop.
fn stop_workers(
    workers: &mut [Worker],
    config: &HarnessConfig,
    event: &dyn Fn(Option<u32>, EventKind),
) {
    let ours: Vec<&mut Worker> = workers.iter_mut().filter(|w| w.adopted.is_none()).collect();
    let mut ours = ours;
    for worker in ours.iter().filter(|w| group_alive(w.pgid)) {
        signal_group(worker.pgid, Signal::SIGTERM);
    }
    let grace_end = Instant::now() + config.grace;
    let mut killed = false;
    let hard_end = grace_end + Duration::from_secs(5);
    loop {
        for worker in ours.iter_mut().filter(|w| w.exited.is_none()) {
            if let Some(exit) = try_reap(worker.pid) {
                worker.record_exit(exit, event);
            }
        }
        let alive: Vec<i32> = ours
            .iter()
            .filter(|w| w.exited.is_none() || group_alive(w.pgid))
            .map(|w| w.pgid)
            .collect();
        if alive.is_empty() || Instant::now() >= hard_end {
            break;
        }
        if !killed && Instant::now() >= grace_end {
            for pgid in alive {
                signal_group(pgid, Signal::SIGKILL);
            }
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn finish(
    writer: RecordingWriter,
    compactor: Compactor,
    sampler: Sampler,
    dir: &Path,
    manifest: &mut Manifest,
    reason: &str,
) -> anyhow::Result<(WriterStats, SamplerStats)> {
    let sampler_stats = sampler.stop();
    let writer_stats = writer.finish()?;
    for error in compactor.finish(writer_stats.open_segments.clone()) {
        // The log stays in place and is read instead: nothing is lost, so warn and go on.
        eprintln!("memwarden: warning: compaction failed: {error}");
    }
    manifest.status = RunStatus::Finished;
    manifest.end_wall_ns = Some(crate::clock::wall_ns());
    manifest.end_reason = Some(reason.to_string());
    write_manifest(dir, manifest)?;
    Ok((writer_stats, sampler_stats))
}

fn worker_output(
    logs_dir: &Path,
    index: u32,
    config: &HarnessConfig,
    clock: RunClock,
    sink: &BoundarySink,
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
    }))
}

fn spawn_pump(
    output: Arc<WorkerOutput>,
    source: impl std::io::Read + Send + 'static,
    stream: &'static str,
    done: Sender<()>,
) -> usize {
    let spawned = std::thread::Builder::new()
        .name(format!("memwarden-{stream}-{}", output.worker))
        .spawn(move || {
            output.pump(source, stream);
            let _ = done.send(());
        });
    usize::from(spawned.is_ok())
}

/// Turns parsed boundaries into events and tells the sampler to take PSS and smaps now.
fn boundary_sink(records: RecordSender, control: Sender<Control>, clock: RunClock) -> BoundarySink {
    let control = Mutex::new(control);
    Arc::new(move |worker, boundaries: Vec<TrialBoundary>| {
        let wall = |t_ns: u64| {
            let (now_ns, now_wall) = clock.now();
            now_wall.saturating_sub(now_ns.saturating_sub(t_ns))
        };
        // A start reported together with its end (Optuna) happened earlier; its smaps are the
        // previous end's, so only boundaries that happen now get a snapshot.
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
                    let snap =
                        (!ended.contains(&trial)).then(|| (trial.clone(), Boundary::TrialStart));
                    (
                        t_ns,
                        EventKind::TrialStart {
                            trial,
                            params,
                            source,
                        },
                        snap,
                    )
                }
                TrialBoundary::End {
                    t_ns,
                    trial,
                    state,
                    value,
                } => (
                    t_ns,
                    EventKind::TrialEnd {
                        trial: trial.clone(),
                        state,
                        value,
                    },
                    Some((trial, Boundary::TrialEnd)),
                ),
            };
            records.event(Event {
                t_ns,
                wall_ns: wall(t_ns),
                worker: Some(worker),
                kind,
            });
            if let Some((trial, boundary)) = snapshot {
                let control = control.lock().unwrap_or_else(|p| p.into_inner());
                let _ = control.send(Control::Boundary {
                    worker,
                    trial,
                    boundary,
                });
            }
        }
    })
}
