//! The exposition of a status folded from synthetic records: names, labels and values.

use super::render;
use crate::live::LiveStatus;
use crate::recording::{Event, EventKind, PolicyAction, ProcessSample, SystemSample, Tick};
use std::collections::BTreeMap;

const MIB: u64 = 1 << 20;

fn tick(t_s: u64, oom_kill: u64, processes: Vec<ProcessSample>) -> Tick {
    Tick {
        t_ns: t_s * 1_000_000_000,
        wall_ns: 1_800_000_000_000_000_000 + t_s * 1_000_000_000,
        system: SystemSample {
            mem_total_bytes: 16 << 30,
            mem_available_bytes: 10 << 30,
            psi_some_avg10: Some(1.5),
            cgroup_limit_bytes: Some(4 << 30),
            cgroup_working_set_bytes: Some(1 << 30),
            cgroup_oom_kill: Some(oom_kill),
            ..SystemSample::default()
        },
        processes,
        gpus: Vec::new(),
        cgroups: Vec::new(),
    }
}

fn process(worker: u32, pid: i32, anon_mib: u64) -> ProcessSample {
    ProcessSample {
        worker,
        pid,
        rss: (anon_mib + 10) * MIB,
        anon: anon_mib * MIB,
        file: 10 * MIB,
        shmem: MIB,
        pss: Some((anon_mib + 5) * MIB),
        uss: Some(anon_mib * MIB),
        ..ProcessSample::default()
    }
}

fn event(t_s: u64, worker: u32, kind: EventKind) -> Event {
    Event {
        t_ns: t_s * 1_000_000_000,
        wall_ns: 0,
        worker: Some(worker),
        kind,
    }
}

fn start(t_s: u64, worker: u32, attempt: u32) -> Event {
    let pid = 100 + worker as i32;
    event(
        t_s,
        worker,
        EventKind::WorkerStart {
            pid,
            pgid: pid,
            attempt,
        },
    )
}

fn trial_end(t_s: u64, worker: u32, state: &str) -> Event {
    event(
        t_s,
        worker,
        EventKind::TrialEnd {
            trial: format!("{t_s}").into(),
            state: state.into(),
            value: None,
            memory: None,
        },
    )
}

fn killed(t_s: u64, worker: u32) -> Event {
    event(
        t_s,
        worker,
        EventKind::WorkerExit {
            pid: 100 + worker as i32,
            code: None,
            signal: Some(9),
        },
    )
}

/// `name{labels}` → value, from the text format.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("a sample line");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// Worker 0 leaks 8 MiB a trial, is OOM-killed and started again; worker 1 is flat and was
/// killed by someone else's SIGKILL, which the cgroup's counter does not show.
fn status() -> LiveStatus {
    let mut s = LiveStatus::default();
    s.event(&start(0, 0, 0));
    s.event(&start(0, 1, 0));
    for t in 1..=10 {
        s.tick(&tick(
            t,
            0,
            vec![process(0, 100, 100 + 8 * t), process(1, 101, 50)],
        ));
        s.event(&trial_end(t, 0, if t == 3 { "PRUNED" } else { "COMPLETE" }));
        s.event(&trial_end(t, 1, "FAIL"));
    }
    s.event(&killed(11, 1));
    s.tick(&tick(20, 0, vec![process(0, 100, 190)]));
    s.event(&killed(21, 0));
    s.tick(&tick(22, 1, vec![]));
    s.event(&start(23, 0, 1));
    let brake = Event {
        worker: None,
        ..event(
            24,
            0,
            EventKind::Policy {
                action: PolicyAction::BrakeOn,
                reason: "low".into(),
                worker_pss_bytes: None,
                available_bytes: None,
                simulated: false,
            },
        )
    };
    s.event(&brake);
    s.event(&event(24, 0, EventKind::SamplesDropped { count: 3 }));
    s
}

#[test]
fn a_status_becomes_metrics_in_base_units_with_bounded_labels() {
    let text = render(&status(), "9.9.9", true);
    let m = samples(&text);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
    assert_eq!(get("memwarden_build_info{version=\"9.9.9\"}"), 1.0);
    // Worker 0's tree is gone after its kill and not sampled since its restart: it holds none.
    assert_eq!(
        get("memwarden_worker_memory_bytes{kind=\"anon\",worker=\"0\"}"),
        0.0
    );
    assert_eq!(get("memwarden_worker_processes{worker=\"0\"}"), 0.0);
    assert_eq!(get("memwarden_worker_up{worker=\"0\"}"), 1.0);
    assert_eq!(get("memwarden_worker_up{worker=\"1\"}"), 0.0);
    assert_eq!(
        get("memwarden_worker_trials_total{state=\"complete\",worker=\"0\"}"),
        9.0
    );
    assert_eq!(
        get("memwarden_worker_trials_total{state=\"pruned\",worker=\"0\"}"),
        1.0
    );
    assert_eq!(
        get("memwarden_worker_trials_total{state=\"failed\",worker=\"1\"}"),
        10.0
    );
    assert_eq!(
        get("memwarden_worker_restarts_total{reason=\"crash\",worker=\"0\"}"),
        1.0
    );
    assert_eq!(
        get("memwarden_worker_restarts_total{reason=\"policy\",worker=\"0\"}"),
        0.0
    );
    // The counter rose with worker 0's SIGKILL, not with worker 1's ten seconds before it.
    assert_eq!(get("memwarden_worker_oom_kills_total{worker=\"0\"}"), 1.0);
    assert_eq!(get("memwarden_worker_oom_kills_total{worker=\"1\"}"), 0.0);
    assert_eq!(get("memwarden_oom_kills_total"), 1.0);
    assert_eq!(get("memwarden_brake_active"), 1.0);
    assert_eq!(get("memwarden_samples_dropped_total"), 3.0);
    assert_eq!(get("memwarden_limit_bytes"), (4u64 << 30) as f64);
    assert_eq!(get("memwarden_headroom_bytes"), (3u64 << 30) as f64);
    assert_eq!(
        get("memwarden_memory_pressure_ratio{stall=\"some\"}"),
        0.015
    );
    assert_eq!(get("memwarden_last_tick_timestamp_seconds"), 1.8e9 + 22.0);
    // Every family says what it is; no label can grow without bound.
    for name in m.keys() {
        let family = name.split('{').next().expect("a name");
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        for forbidden in ["pid=", "trial=", "command="] {
            assert!(!name.contains(forbidden), "{name}");
        }
    }
}

#[test]
fn a_running_worker_shows_its_memory_by_kind_and_its_trend() {
    let mut s = LiveStatus::default();
    s.event(&start(0, 0, 0));
    for t in 1..=10 {
        s.tick(&tick(t, 0, vec![process(0, 100, 100 + 8 * t)]));
        s.event(&trial_end(t, 0, "COMPLETE"));
    }
    let m = samples(&render(&s, "v", true));
    let mib = |k: &str| {
        m[&format!("memwarden_worker_memory_bytes{{kind=\"{k}\",worker=\"0\"}}")] / MIB as f64
    };
    assert_eq!(mib("anon"), 180.0);
    assert_eq!(mib("rss"), 190.0);
    assert_eq!(mib("pss"), 185.0);
    assert_eq!(mib("uss"), 180.0);
    assert_eq!(mib("file"), 10.0);
    assert_eq!(mib("shmem"), 1.0);
    assert!(!m.contains_key("memwarden_worker_memory_bytes{kind=\"gpu\",worker=\"0\"}"));
    let trend = m["memwarden_worker_retained_growth_bytes_per_trial{worker=\"0\"}"];
    assert_eq!(trend, 8.0 * MIB as f64);
    assert_eq!(m["memwarden_worker_up{worker=\"0\"}"], 1.0);
}

#[test]
fn a_bare_port_binds_loopback_only() {
    let listener = super::export::bind("0").expect("a free port");
    let address = listener.local_addr().expect("bound");
    assert!(address.ip().is_loopback(), "{address}");
    assert!(matches!(
        super::export::bind("not a host:1"),
        Err(super::MetricsError::BadAddress(_))
    ));
}
