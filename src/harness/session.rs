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
    let writer = open_writer(&config, &compactor)?;
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
    let sampler = start_sampler(
        &config,
        (clock, records.clone()),
        enforcing.then_some(readings_tx),
        own_cgroups.as_ref(),
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
    prepare_workers(&mut workers, own_cgroups.as_ref(), &config, policy.as_ref());
    announce(&workload, &manifest, &mut workers, (&note, cgroup_notes));
    let tracer = python_for_workers(&config, &workload, &mut workers, &note)?;
    let inputs = super::enforce::Inputs {
        readings: readings_rx,
        interval: config.interval,
        feed: feed_rx,
        questions: questions_rx,
    };
    let enforcer = enforcer(&config, policy, &workload, (clock, records.clone()), inputs)?;

    let mut running = Running {
        workers,
        enforcer,
        tracer,
        records: records.clone(),
        clock,
    };
    let started = running
        .workers
        .start(&workload, &stop, running.enforcer.is_some());
    if let (Ok(()), Some(enforcer)) = (&started, running.enforcer.as_mut()) {
        enforcer.begin(&mut running.workers);
    }
    if let Err(error) = started {
        let message = format!("start failed: {}", crate::exit::describe(&error));
        records.event_now(&clock, None, EventKind::Note { message });
        running.workers.stop(&stop);
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
    let (stop_reason, failed_workers) = running.supervise(&sampler, &config, &stop);
    let policy_counters = running.enforcer.as_mut().map(|e| {
        e.shut_down();
        e.counters()
    });
    // A degraded run says so where every reader looks: the manifest's end reason.
    let stop_reason = match policy_counters.as_ref().filter(|c| !c.degraded.is_empty()) {
        Some(counters) => format!("{stop_reason}; degraded: {}", counters.degraded.join("; ")),
        None => stop_reason.to_string(),
    };
    running.stop(&stop_reason, &stop);
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

/// The recording's writer, folding what it writes into the live view where there is one.
fn open_writer(config: &HarnessConfig, compactor: &Compactor) -> anyhow::Result<RecordingWriter> {
    let writer_config = WriterConfig {
        segment_duration: config.segment_duration,
        ..WriterConfig::default()
    };
    own_work(RecordingWriter::start(
        &config.run_dir,
        writer_config,
        compactor.queue(),
        config.live.clone().map(crate::live::observer),
    ))
}

/// The sampling thread, reading each worker's own cgroup where it has one; `readings` go to
/// the policy where one is enforced.
fn start_sampler(
    config: &HarnessConfig,
    (clock, records): (RunClock, crate::recording::RecordSender),
    readings: Option<crossbeam_channel::Sender<(u64, crate::policy::Reading)>>,
    own_cgroups: Option<&crate::supervisor::cgroup::WorkerCgroups>,
) -> anyhow::Result<Sampler> {
    let sampler_config = SamplerConfig {
        interval: config.interval,
        readings,
        gpu: true,
        rollup_cpu_fraction: config.rollup_cpu_fraction,
        hold: config.hold,
        root: config.root.clone(),
        shm_dir: Some("/dev/shm".into()),
        worker_cgroups: own_cgroups
            .map(|made| (0u32..).zip(made.workers.iter().cloned()).collect())
            .unwrap_or_default(),
    };
    own_work(Sampler::start(sampler_config, clock, records).context("cannot start the sampler"))
}

/// What the session tends once its workers run: them, the policy and the tracer's reports.
struct Running<'a> {
    workers: Workers<'a>,
    enforcer: Option<Enforcer>,
    tracer: Option<crate::pytrace::Feed>,
    records: crate::recording::RecordSender,
    clock: RunClock,
}

impl Running<'_> {
    /// Tends the workers until a stop is asked, the duration is reached or all have exited;
    /// returns why it ended and the worker exits that memwarden did not cause. Tells systemd's
    /// watchdog the run is alive while the sampler is.
    fn supervise(
        &mut self,
        sampler: &Sampler,
        config: &HarnessConfig,
        stop: &StopRequest,
    ) -> (&'static str, Vec<(u32, Exit)>) {
        let notifier = Notifier::from_env();
        if let Some(notifier) = &notifier {
            notifier.notify("READY=1");
        }
        let mut last_watchdog = Instant::now();
        let deadline = config.duration.map(|d| Instant::now() + d);
        let mut failed_workers = Vec::new();
        let reason = loop {
            let ended = self.workers.poll();
            failed_workers.extend(
                ended
                    .iter()
                    .filter(|e| e.ours && !e.requested && !e.exit.success())
                    .map(|e| (e.index, e.exit)),
            );
            if let Some(enforcer) = self.enforcer.as_mut() {
                enforcer.pump(&mut self.workers, &ended);
            }
            if let Some(tracer) = self.tracer.as_mut() {
                tracer.pump(&self.records, &self.clock, false);
            }
            if let Some((notifier, every)) = notifier
                .as_ref()
                .and_then(|n| n.watchdog_every.map(|every| (n, every)))
            {
                if last_watchdog.elapsed() >= every
                    && sampling_healthy(sampler, &self.clock, config.interval)
                {
                    notifier.notify("WATCHDOG=1");
                    last_watchdog = Instant::now();
                }
            }
            if stop.requested() {
                break "stop requested (signal)";
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break "duration reached";
            }
            let done = match &self.enforcer {
                Some(enforcer) => enforcer.finished() && self.workers.all_exited(),
                None => self.workers.all_exited(),
            };
            if done {
                break "all workers exited";
            }
            // Exits, signals and orphans wait at most this long; at 10 ms the wake-ups alone
            // cost a fifth of memwarden's CPU at 100 Hz sampling. The policy's inputs wake us
            // at once.
            match self.enforcer.as_mut() {
                Some(enforcer) => enforcer.wait(Duration::from_millis(50)),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        (reason, failed_workers)
    }

    /// Records why the run ends, stops the workers and takes the tracer's last reports.
    fn stop(mut self, reason: &str, stop: &StopRequest) {
        self.records.event_now(
            &self.clock,
            None,
            EventKind::Stop {
                reason: reason.to_string(),
            },
        );
        self.workers.stop(stop);
        if let Some(tracer) = self.tracer.as_mut() {
            tracer.pump(&self.records, &self.clock, true);
            for (worker, message) in tracer.closing_notes() {
                crate::console::say(&message);
                self.records
                    .event_now(&self.clock, worker, EventKind::Note { message });
            }
        }
    }
}

/// Each worker's own cgroup (where it has one), and how workers are spawned under the policy.
fn prepare_workers(
    workers: &mut Workers,
    own_cgroups: Option<&crate::supervisor::cgroup::WorkerCgroups>,
    config: &HarnessConfig,
    policy: Option<&Policy>,
) {
    if let Some(made) = own_cgroups {
        workers.cgroups = (0u32..)
            .zip(made.workers.iter().map(|w| w.procs()))
            .collect();
    }
    workers.options = spawn_options(policy);
    workers.options.env = config.env.clone();
}

/// What a run says at its start: memwarden's own protection, the workers' cgroups
/// (`cgroup_notes`), whether orphans stay in their trees, that memwarden is PID 1, and which
/// memory limit is in force.
fn announce(
    workload: &Workload,
    manifest: &Manifest,
    workers: &mut Workers,
    (note, cgroup_notes): (&dyn Fn(String), Vec<String>),
) {
    protect_harness(note);
    for message in cgroup_notes {
        note(message);
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
}

/// The policy's enforcer for spawned workers (none for attached ones or without a policy);
/// the policy as written is kept in the run directory.
fn enforcer(
    config: &HarnessConfig,
    policy: Option<Policy>,
    workload: &Workload,
    output: (RunClock, crate::recording::RecordSender),
    inputs: super::enforce::Inputs,
) -> anyhow::Result<Option<Enforcer>> {
    let (Some(policy), Workload::Spawn { workers: n, .. }) = (policy, workload) else {
        return Ok(None);
    };
    if let Some(text) = &config.policy_text {
        crate::recording::write_atomically(&config.run_dir.join("policy.toml"), text.as_bytes())
            .context("cannot keep the policy in the run directory")?;
    }
    Ok(Some(Enforcer::new(
        policy,
        *n,
        output,
        inputs,
        // Starts are routine where finished workers start again (soak); its view counts them.
        (config.live.clone(), config.mode == "soak"),
    )))
}

/// The sampler finished a tick recently: what the systemd watchdog vouches for.
fn sampling_healthy(sampler: &Sampler, clock: &RunClock, interval: Duration) -> bool {
    let last = sampler.last_tick_ns();
    let allowed = (interval * 3).max(Duration::from_secs(2)).as_nanos() as u64;
    last > 0 && clock.now().0.saturating_sub(last) <= allowed
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

mod setup;
use setup::{
    new_manifest, prepare_run_dir, protect_harness, python_for_workers, spawn_options,
    worker_cgroups,
};
