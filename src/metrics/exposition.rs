//! The live status as Prometheus metrics, in the text format (0.0.4). Pure: a status in, text
//! out. Base units (bytes, seconds, ratios), counters end in `_total`, and labels stay bounded:
//! a worker's index, a memory kind, a trial's end state, a restart's reason; never a pid, a
//! trial id or a command line.

use crate::live::{LiveStatus, LiveWorker};
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

/// The metrics of `status`, as `/metrics` serves them and `memwarden.prom` holds them;
/// `active` while the run samples (false in the textfile's last write, so an alert on a stale
/// tick tells a stalled run from one that ended).
pub fn render(status: &LiveStatus, version: &str, active: bool) -> String {
    let out = Families::default();
    out.gauge(
        "memwarden_run_active",
        "1 while the run samples; 0 once it has ended.",
        &[],
    )
    .with_label_values::<&str>(&[])
    .set(f64::from(u8::from(active)));
    out.gauge(
        "memwarden_build_info",
        "memwarden's version (always 1).",
        &["version"],
    )
    .with_label_values(&[version])
    .set(1.0);
    workers(&out, status);
    run(&out, status);
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&out.registry.gather(), &mut text)
        .expect("bug: metrics built here always encode");
    String::from_utf8(text).expect("bug: the text format is UTF-8")
}

fn workers(out: &Families, status: &LiveStatus) {
    let memory = out.gauge(
        "memwarden_worker_memory_bytes",
        "Memory of the worker's process tree by kind (pss and uss: the last read, carried \
         forward; gpu where measured).",
        &["worker", "kind"],
    );
    let processes = out.gauge(
        "memwarden_worker_processes",
        "Processes in the worker's tree at the last tick.",
        &["worker"],
    );
    let up = out.gauge(
        "memwarden_worker_up",
        "1 while the worker runs (also while paused by the brake or being restarted).",
        &["worker"],
    );
    let trials = out.counter(
        "memwarden_worker_trials_total",
        "Trials ended, by end state (complete, pruned, failed, other).",
        &["worker", "state"],
    );
    let growth = out.gauge(
        "memwarden_worker_retained_growth_bytes_per_trial",
        "Theil-Sen slope of the tree's anonymous memory at trial ends since the worker last \
         started.",
        &["worker"],
    );
    let restarts = out.counter(
        "memwarden_worker_restarts_total",
        "Starts after the first: reason crash (it exited on its own) or policy (memwarden \
         stopped it).",
        &["worker", "reason"],
    );
    let oom = out.counter(
        "memwarden_worker_oom_kills_total",
        "Exits by a SIGKILL memwarden did not send that the memory cgroup's OOM-kill counter \
         accounts for.",
        &["worker"],
    );
    let oom_kills = status.oom_kills();
    for (index, w) in &status.workers {
        let worker = index.to_string();
        for (kind, bytes) in kinds(w) {
            memory.with_label_values(&[&worker, kind]).set(bytes as f64);
        }
        processes
            .with_label_values(&[&worker])
            .set(w.memory.processes as f64);
        up.with_label_values(&[&worker])
            .set(f64::from(u8::from(w.state.alive())));
        for state in ["complete", "pruned", "failed", "other"] {
            let n = w.trials_by_state.get(state).copied().unwrap_or(0);
            trials.with_label_values(&[&worker, state]).inc_by(n);
        }
        if let Some(slope) = w.trend_per_trial() {
            growth.with_label_values(&[&worker]).set(slope);
        }
        for reason in ["crash", "policy"] {
            let n = w.restarts_by_reason.get(reason).copied().unwrap_or(0);
            restarts.with_label_values(&[&worker, reason]).inc_by(n);
        }
        oom.with_label_values(&[&worker])
            .inc_by(oom_kills.get(index).copied().unwrap_or(0));
    }
}

/// A worker's memory by kind; a tree with no process left holds none.
fn kinds(w: &LiveWorker) -> Vec<(&'static str, u64)> {
    let m = &w.memory;
    let gone = m.processes == 0;
    let held = |bytes: u64| if gone { 0 } else { bytes };
    let mut kinds = vec![
        ("rss", held(m.rss_bytes)),
        ("pss", held(m.pss_bytes)),
        ("anon", held(m.anon_bytes)),
        ("file", held(m.file_bytes)),
        ("shmem", held(m.shmem_bytes)),
        ("swap", held(m.swap_bytes)),
    ];
    if let Some(uss) = m.uss_bytes.or(gone.then_some(0)) {
        kinds.push(("uss", held(uss)));
    }
    if let Some(gpu) = m.gpu_bytes {
        kinds.push(("gpu", held(gpu)));
    }
    kinds
}

fn run(out: &Families, status: &LiveStatus) {
    let one = |name: &str, help: &str, value: f64| {
        out.gauge(name, help, &[])
            .with_label_values::<&str>(&[])
            .set(value);
    };
    let count = |name: &str, help: &str, value: u64| {
        out.counter(name, help, &[])
            .with_label_values::<&str>(&[])
            .inc_by(value);
    };
    one(
        "memwarden_brake_active",
        "1 while the brake holds back new trials.",
        f64::from(u8::from(status.brake_on)),
    );
    count(
        "memwarden_brake_held_trials_total",
        "Trials the brake refused or paused a worker for.",
        status.held_back,
    );
    count(
        "memwarden_samples_dropped_total",
        "Samples the recording could not take in time (sampling never waits for the disk).",
        status.samples_dropped,
    );
    count(
        "memwarden_sampler_missed_ticks_total",
        "Ticks the sampler could not take on time.",
        status.missed_ticks,
    );
    one(
        "memwarden_run_elapsed_seconds",
        "Time since the run started.",
        status.elapsed_ns as f64 / 1e9,
    );
    if let Some(wall_ns) = status.last_tick_wall_ns {
        one(
            "memwarden_last_tick_timestamp_seconds",
            "Wall-clock time of the newest sample, seconds since the Unix epoch.",
            wall_ns as f64 / 1e9,
        );
    }
    if let Some(total) = status.oom_kills_total() {
        count(
            "memwarden_oom_kills_total",
            "OOM kills in the memory cgroup that applies, since the run started.",
            total,
        );
    }
    let Some(system) = &status.system else {
        return;
    };
    let (limit, available) = system.effective_memory();
    one(
        "memwarden_limit_bytes",
        "The memory limit that applies: the memory cgroup's where it is below the host's \
         memory, else the host's memory.",
        limit as f64,
    );
    one(
        "memwarden_headroom_bytes",
        "Memory still available under that limit.",
        available as f64,
    );
    one(
        "memwarden_host_memory_available_bytes",
        "MemAvailable of the host.",
        system.mem_available_bytes as f64,
    );
    let pressure = out.gauge(
        "memwarden_memory_pressure_ratio",
        "Share of the last 10 s in which some or all tasks stalled on memory (PSI avg10).",
        &["stall"],
    );
    for (stall, value) in [
        ("some", system.psi_some_avg10),
        ("full", system.psi_full_avg10),
    ] {
        if let Some(percent) = value {
            pressure
                .with_label_values(&[stall])
                .set(f64::from(percent) / 100.0);
        }
    }
}

/// Families registered into a registry built afresh for each rendering: the status is the
/// state, so nothing here outlives one scrape.
#[derive(Default)]
struct Families {
    registry: Registry,
}

impl Families {
    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let family = GaugeVec::new(Opts::new(name, help), labels).expect("bug: a valid name");
        self.registry
            .register(Box::new(family.clone()))
            .expect("bug: each name registered once");
        family
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let family = IntCounterVec::new(Opts::new(name, help), labels).expect("bug: a valid name");
        self.registry
            .register(Box::new(family.clone()))
            .expect("bug: each name registered once");
        family
    }
}
