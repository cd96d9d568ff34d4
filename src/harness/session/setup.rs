//! What a session sets up before its workers start: the run directory and its manifest, the
//! workers' own cgroups and the limits in them, their spawn options, the Python helper and
//! tracer, and memwarden's own protection from the OOM killer.

use super::*;

/// The helper package on the workers' PYTHONPATH, and with `--trace-python` the tracer too;
/// returns the feed that records what the tracers report.
pub(super) fn python_for_workers(
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

/// The kernel's OOM killer should pick a worker, never the harness that records why.
pub(super) fn protect_harness(note: &dyn Fn(String)) {
    if std::fs::write("/proc/self/oom_score_adj", "-900").is_err() {
        note("cannot lower memwarden's own oom_score_adj (needs CAP_SYS_RESOURCE); the workers' raised score still makes them the OOM killer's first choice".into());
    }
}

/// Containment from the policy; without one the workers still get the default raised
/// oom_score_adj, since they would otherwise inherit the harness's lowered one.
pub(super) fn spawn_options(policy: Option<&Policy>) -> SpawnOptions {
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
pub(super) fn worker_cgroups(
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

pub(super) fn new_manifest(
    config: &HarnessConfig,
    workload: &Workload,
    clock: &RunClock,
) -> Manifest {
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

pub(super) fn prepare_run_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.join(crate::recording::MANIFEST_FILE).exists() {
        bail!(
            "{}: already holds a recording; choose another --out",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))
}
