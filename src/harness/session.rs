//! One recording session, start to end: the run directory, the writer, the sampler, the
//! workers and the policy, and the order of closing that loses nothing (see the module header).

use super::enforce::Enforcer;
use super::workers::Workers;
use crate::clock::RunClock;
use crate::exit::own_work;
use crate::policy::{Counters, IoPriority, Policy};
use crate::probe::{host_facts, ProcRoot};
use crate::recording::{
    write_manifest, Compactor, EventKind, Manifest, RecordingWriter, RunStatus, WriterConfig,
    WriterStats, FORMAT_VERSION,
};
use crate::sampler::{HoldLimits, Sampler, SamplerConfig, SamplerStats};
use crate::supervisor::systemd::Notifier;
use crate::supervisor::{Exit, SpawnOptions, StopRequest};
use anyhow::{bail, Context};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct HarnessConfig {
    pub run_dir: PathBuf,
    pub interval: Duration,
    pub rollup_cpu_fraction: f64,
    /// What reads may cost each target (see `sampler::hold_budget`).
    pub hold: HoldLimits,
    /// Between SIGTERM and SIGKILL when stopping workers.
    pub grace: Duration,
    /// Stop the run after this long.
    pub duration: Option<Duration>,
    pub trial_regex: Option<Regex>,
    pub segment_duration: Duration,
    pub root: ProcRoot,
    /// The policy to enforce (`run` only); `None` records without acting.
    pub policy: Option<Policy>,
    /// The policy as the user wrote it, kept in the run directory as `policy.toml`.
    pub policy_text: Option<String>,
    /// The manifest's mode for spawned workers: `run`, `soak`, `replay`.
    pub mode: String,
    /// More environment for the workers (replay's trial parameters).
    pub env: Vec<(String, String)>,
    /// Where the writer folds the records it writes, for the live view (and soak's progress).
    pub live: Option<crate::live::SharedStatus>,
    /// Start the allocation tracer in the workers' Python processes (`--trace-python`).
    pub trace_python: bool,
    /// Replay Optuna studies without a script (`replay`): the workers' first `optimize()` runs
    /// the trial parameters in `env` instead (python/memwarden/_replay.py).
    pub replay_optuna: bool,
    /// Bytes of a worker's output kept in its log files (its start and its end).
    pub log_cap: u64,
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
    /// What the policy engine did, when there was one.
    pub policy: Option<Counters>,
}

pub fn record(
    config: HarnessConfig,
    workload: Workload,
    stop: Arc<StopRequest>,
) -> anyhow::Result<RunSummary> {
    prepare_run_dir(&config.run_dir)?;
    let clock = RunClock::start();
    let mut manifest = new_manifest(&config, &workload, &clock);
    own_work(write_manifest(&config.run_dir, &manifest))?;

    let compactor = Compactor::start();
    let writer_config = WriterConfig {
        segment_duration: config.segment_duration,
        ..WriterConfig::default()
    };
    let writer = own_work(RecordingWriter::start(
        &config.run_dir,
        writer_config,
        compactor.queue(),
        config.live.clone().map(crate::live::observer),
    ))?;
    let records = writer.sender();
    let (readings_tx, readings_rx) = crossbeam_channel::unbounded();
    let (feed_tx, feed_rx) = crossbeam_channel::unbounded();
    let (questions_tx, questions_rx) = crossbeam_channel::unbounded();
    let enforcing = config.policy.is_some() && matches!(workload, Workload::Spawn { .. });
    let mut policy = config.policy.clone().filter(|_| enforcing);
    let mut cgroup_notes = Vec::new();
    let mut own_cgroups = match &workload {
        Workload::Spawn { workers: n, .. } => {
            worker_cgroups(policy.as_mut(), *n, &mut cgroup_notes)
        }
        Workload::Attach { .. } => None,
    };
    let sampler_config = SamplerConfig {
        interval: config.interval,
        readings: enforcing.then_some(readings_tx),
        gpu: true,
        rollup_cpu_fraction: config.rollup_cpu_fraction,
        hold: config.hold,
        root: config.root.clone(),
        shm_dir: Some("/dev/shm".into()),
        worker_cgroups: own_cgroups
            .as_ref()
            .map(|made| (0u32..).zip(made.workers.iter().cloned()).collect())
            .unwrap_or_default(),
    };
    let sampler = own_work(
        Sampler::start(sampler_config, clock, records.clone()).context("cannot start the sampler"),
    )?;
    let mut workers = Workers::new(
        &config,
        clock,
        records.clone(),
        sampler.control(),
        enforcing.then_some(feed_tx),
        enforcing.then_some(questions_tx),
    )?;
    let note = |message: String| {
        crate::console::say(&message);
        records.event_now(&clock, None, EventKind::Note { message });
    };
    protect_harness(&note);
    for message in cgroup_notes {
        note(message);
    }
    if let Some(made) = &own_cgroups {
        workers.cgroups = (0u32..)
            .zip(made.workers.iter().map(|w| w.procs()))
            .collect();
    }
    if matches!(workload, Workload::Spawn { .. }) {
        match crate::supervisor::reaper::become_subreaper() {
            Ok(()) => workers.subreaper = true,
            Err(why) => note(format!(
                "{why}: a process whose parent dies leaves its worker's tree for init"
            )),
        }
        if std::process::id() == 1 {
            note("memwarden runs as PID 1: it passes SIGTERM and SIGINT on to the workers (a second one kills them) and reaps every orphan, so no init such as tini is needed".into());
        }
    }
    if let Some(limit) = manifest
        .memory_cgroup
        .as_ref()
        .filter(|c| c.limit_bytes.is_some())
    {
        note(format!(
            "the memory limit in force is the cgroup's: {} (cgroup {} {})",
            crate::units::size(limit.limit_bytes.unwrap_or(0) as f64),
            limit.version,
            limit.path
        ));
    }
    workers.options = spawn_options(policy.as_ref());
    workers.options.env = config.env.clone();
    let mut tracer = python_for_workers(&config, &workload, &mut workers, &note)?;
    if policy.is_some() {
        if let Some(text) = &config.policy_text {
            crate::recording::write_atomically(
                &config.run_dir.join("policy.toml"),
                text.as_bytes(),
            )
            .context("cannot keep the policy in the run directory")?;
        }
    }
    let mut enforcer = match (policy, &workload) {
        (Some(policy), Workload::Spawn { workers: n, .. }) => Some(Enforcer::new(
            policy,
            *n,
            (clock, records.clone()),
            super::enforce::Inputs {
                readings: readings_rx,
                interval: config.interval,
                feed: feed_rx,
                questions: questions_rx,
            },
            // Starts are routine where finished workers start again (soak); its view counts them.
            (config.live.clone(), config.mode == "soak"),
        )),
        _ => None,
    };

    let started = workers.start(&workload, &stop, enforcer.is_some());
    if let (Ok(()), Some(enforcer)) = (&started, enforcer.as_mut()) {
        enforcer.begin(&mut workers);
    }
    if let Err(error) = started {
        let message = format!("start failed: {}", crate::exit::describe(&error));
        records.event_now(&clock, None, EventKind::Note { message });
        workers.stop(&stop);
        finish(
            writer,
            compactor,
            sampler,
            (&config.run_dir, &mut manifest),
            "start failed",
            || {},
        )?;
        return Err(error);
    }
    let notifier = Notifier::from_env();
    if let Some(notifier) = &notifier {
        notifier.notify("READY=1");
    }
    let mut last_watchdog = Instant::now();
    let deadline = config.duration.map(|d| Instant::now() + d);
    let mut failed_workers = Vec::new();
    let stop_reason = loop {
        let ended = workers.poll();
        failed_workers.extend(
            ended
                .iter()
                .filter(|e| e.ours && !e.requested && !e.exit.success())
                .map(|e| (e.index, e.exit)),
        );
        if let Some(enforcer) = enforcer.as_mut() {
            enforcer.pump(&mut workers, &ended);
        }
        if let Some(tracer) = tracer.as_mut() {
            tracer.pump(&records, &clock, false);
        }
        if let Some(every) = notifier.as_ref().and_then(|n| n.watchdog_every) {
            if last_watchdog.elapsed() >= every
                && sampling_healthy(&sampler, &clock, config.interval)
            {
                if let Some(notifier) = &notifier {
                    notifier.notify("WATCHDOG=1");
                }
                last_watchdog = Instant::now();
            }
        }
        if stop.requested() {
            break "stop requested (signal)";
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break "duration reached";
        }
        let done = match &enforcer {
            Some(enforcer) => enforcer.finished() && workers.all_exited(),
            None => workers.all_exited(),
        };
        if done {
            break "all workers exited";
        }
        // Exits, signals and orphans wait at most this long; at 10 ms the wake-ups alone cost
        // a fifth of memwarden's CPU at 100 Hz sampling. The policy's inputs wake us at once.
        match enforcer.as_mut() {
            Some(enforcer) => enforcer.wait(Duration::from_millis(50)),
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let policy_counters = enforcer.as_mut().map(|e| {
        e.shut_down();
        e.counters()
    });
    // A degraded run says so where every reader looks: the manifest's end reason.
    let stop_reason = match policy_counters.as_ref().filter(|c| !c.degraded.is_empty()) {
        Some(counters) => format!("{stop_reason}; degraded: {}", counters.degraded.join("; ")),
        None => stop_reason.to_string(),
    };
    records.event_now(
        &clock,
        None,
        EventKind::Stop {
            reason: stop_reason.clone(),
        },
    );
    workers.stop(&stop);
    if let Some(tracer) = tracer.as_mut() {
        tracer.pump(&records, &clock, true);
        for (worker, message) in tracer.closing_notes() {
            crate::console::say(&message);
            records.event_now(&clock, worker, EventKind::Note { message });
        }
    }
    // The workers' cgroups go once the sampler's closing tick has read them.
    let remove_cgroups = || {
        for message in own_cgroups.as_mut().map(|m| m.remove()).unwrap_or_default() {
            note(message);
        }
    };
    let (writer_stats, sampler_stats) = finish(
        writer,
        compactor,
        sampler,
        (&config.run_dir, &mut manifest),
        &stop_reason,
        remove_cgroups,
    )?;
    // Every run says how well it knew each worker's PSS: a gap (reads failing after an exec,
    // a starved budget) is visible at once instead of hiding behind carried-forward values.
    for (worker, health) in &sampler_stats.health {
        crate::console::say(format!(
            "sampler health: worker {worker}: {}",
            health.describe()
        ));
    }
    Ok(RunSummary {
        run_dir: config.run_dir,
        stop_reason,
        failed_workers,
        writer: writer_stats,
        sampler: sampler_stats,
        policy: policy_counters,
    })
}

/// The helper package on the workers' PYTHONPATH, and with `--trace-python` the tracer too;
/// returns the feed that records what the tracers report.
fn python_for_workers(
    config: &HarnessConfig,
    workload: &Workload,
    workers: &mut Workers,
    note: &dyn Fn(String),
) -> anyhow::Result<Option<crate::pytrace::Feed>> {
    let Workload::Spawn { workers: n, .. } = workload else {
        if config.trace_python {
            note(
                "--trace-python needs workers memwarden starts; attached processes are not traced"
                    .into(),
            );
        }
        return Ok(None);
    };
    let installed = own_work(crate::pytrace::install(
        &config.run_dir,
        config.trace_python,
        config.replay_optuna,
        &crate::pytrace::Inherited::from_env(),
    ))
    .context("cannot write the Python helper into the run directory")?;
    workers.options.env.extend(installed.env);
    Ok(installed
        .trace_dir
        .map(|dir| crate::pytrace::Feed::new(&dir, *n)))
}

/// The sampler finished a tick recently: what the systemd watchdog vouches for.
fn sampling_healthy(sampler: &Sampler, clock: &RunClock, interval: Duration) -> bool {
    let last = sampler.last_tick_ns();
    let allowed = (interval * 3).max(Duration::from_secs(2)).as_nanos() as u64;
    last > 0 && clock.now().0.saturating_sub(last) <= allowed
}

/// The kernel's OOM killer should pick a worker, never the harness that records why.
fn protect_harness(note: &dyn Fn(String)) {
    if std::fs::write("/proc/self/oom_score_adj", "-900").is_err() {
        note("cannot lower memwarden's own oom_score_adj (needs CAP_SYS_RESOURCE); the workers' raised score still makes them the OOM killer's first choice".into());
    }
}

/// Containment from the policy; without one the workers still get the default raised
/// oom_score_adj, since they would otherwise inherit the harness's lowered one.
fn spawn_options(policy: Option<&Policy>) -> SpawnOptions {
    let containment = policy.map(|p| p.containment.clone()).unwrap_or_default();
    SpawnOptions {
        nice: containment.nice,
        ionice: containment.ionice.map(|priority| match priority {
            IoPriority::Idle => (3, 0),
            IoPriority::BestEffort(level) => (2, u32::from(level)),
        }),
        oom_score_adj: Some(containment.oom_score_adj),
        ..SpawnOptions::default()
    }
}

/// Each worker's own memory cgroup, where memwarden may make one (root on a cgroup v1 host, a
/// delegated v2 subtree), with the policy's per-worker limit and soft line; a worker that reaches
/// its soft line is restarted at its next trial boundary. Elsewhere one line says why not, and an
/// explicit `memory_max` is enforced by sampling instead, as a PSS restart limit.
fn worker_cgroups(
    mut policy: Option<&mut Policy>,
    workers: u32,
    notes: &mut Vec<String>,
) -> Option<crate::supervisor::cgroup::WorkerCgroups> {
    let size = |bytes: u64| crate::units::size(bytes as f64);
    let wanted = policy.as_ref().is_none_or(|p| p.containment.worker_cgroups);
    let made = if wanted {
        notes.extend(crate::supervisor::cgroup::sweep_here());
        let limits = policy
            .as_ref()
            .map(|p| p.worker_limits(workers))
            .unwrap_or_default();
        crate::supervisor::cgroup::prepare_here(workers, limits)
    } else {
        Err("containment.worker_cgroups is false".into())
    };
    let made = match made {
        Ok(made) => made,
        Err(why) => {
            let mut line = format!(
                "no per-worker cgroups: {why}; each worker's memory is read process by process"
            );
            if let Some(policy) = policy.as_mut() {
                if let Some(max) = policy.containment.memory_max {
                    let limit = policy.restart.max_worker_pss.map_or(max, |m| m.min(max));
                    policy.restart.max_worker_pss = Some(limit);
                    line.push_str(&format!(
                        ", and memory_max is enforced by sampling instead (restart over {} PSS)",
                        size(limit)
                    ));
                }
            }
            notes.push(line);
            return None;
        }
    };
    let first = &made.workers[0];
    let mut line = format!(
        "each worker runs in a memory cgroup of its own (cgroup {} {}), read at every tick",
        first.version.name(),
        first.dir.with_file_name("worker-N").display()
    );
    let limits = first.limits;
    if let Some(max) = limits.max {
        line.push_str(&format!("; limit {}", size(max)));
    }
    if let Some(high) = limits.high {
        line.push_str(&format!(
            "; soft line {}: a worker that reaches it is restarted at its next trial boundary",
            size(high)
        ));
        if let Some(policy) = policy {
            policy.restart.soft_line = Some(high);
        }
    }
    notes.push(line);
    Some(made)
}

fn new_manifest(config: &HarnessConfig, workload: &Workload, clock: &RunClock) -> Manifest {
    let facts = host_facts(&config.root);
    let (mode, command, workers) = match workload {
        Workload::Spawn { argv, workers } => {
            (config.mode.as_str(), crate::redact::argv(argv), *workers)
        }
        Workload::Attach { pids, .. } => (
            "attach",
            pids.iter().map(|p| p.to_string()).collect(),
            pids.len() as u32,
        ),
    };
    let start = std::time::UNIX_EPOCH + Duration::from_nanos(clock.start_wall_ns());
    Manifest {
        format_version: FORMAT_VERSION,
        memwarden_version: env!("CARGO_PKG_VERSION").into(),
        mode: mode.into(),
        command,
        workers,
        host: facts.host,
        boot_id: facts.boot_id,
        kernel: facts.kernel,
        start_wall_ns: clock.start_wall_ns(),
        start_rfc3339: humantime::format_rfc3339_millis(start).to_string(),
        interval_ns: config.interval.as_nanos() as u64,
        page_size: procfs::page_size(),
        status: RunStatus::Running,
        end_wall_ns: None,
        end_reason: None,
        // The limit that applies to memwarden applies to the workers it starts.
        harness: crate::recording::HarnessProcess::this_process(),
        orchestrator: crate::recording::Orchestrator::from_env(|name| std::env::var(name).ok()),
        memory_cgroup: crate::probe::cgroup::own(&config.root).ok().map(|c| {
            crate::recording::MemoryCgroupInfo {
                version: c.version.name().into(),
                path: c.path,
                limit_bytes: c.limit_bytes,
            }
        }),
    }
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

fn finish(
    writer: RecordingWriter,
    compactor: Compactor,
    sampler: Sampler,
    (dir, manifest): (&Path, &mut Manifest),
    reason: &str,
    after_sampling: impl FnOnce(),
) -> anyhow::Result<(WriterStats, SamplerStats)> {
    // A crashed sampler still lets the writer, compaction and the manifest close what it
    // sampled; the failure is reported after that.
    let sampler_stats = sampler.stop();
    after_sampling();
    let writer_stats = own_work(writer.finish())?;
    for error in compactor.finish(writer_stats.open_segments.clone()) {
        // The log stays in place and is read instead: nothing is lost, so warn and go on.
        crate::console::say(format!("warning: compaction failed: {error}"));
    }
    manifest.status = RunStatus::Finished;
    manifest.end_wall_ns = Some(crate::clock::wall_ns());
    manifest.end_reason = Some(reason.to_string());
    own_work(write_manifest(dir, manifest))?;
    let sampler_stats = own_work(sampler_stats.ok_or_else(|| {
        anyhow::anyhow!(
            "the sampling thread crashed; the recording holds what it sampled until then"
        )
    }))?;
    Ok((writer_stats, sampler_stats))
}
