//! The fold on synthetic records, the view's lines, and the tail on a log written in pieces.

use super::*;
use crate::recording::{encode, Event, EventKind, PolicyAction, ProcessSample, SystemSample, Tick};

const MIB: u64 = 1 << 20;

fn tick(t_s: u64, processes: Vec<ProcessSample>) -> Tick {
    Tick {
        t_ns: t_s * 1_000_000_000,
        wall_ns: 0,
        system: SystemSample {
            mem_total_bytes: 16 << 30,
            mem_available_bytes: 10 << 30,
            psi_some_avg10: Some(1.5),
            psi_full_avg10: Some(0.25),
            ..SystemSample::default()
        },
        processes,
        gpus: Vec::new(),
        cgroups: Vec::new(),
    }
}

fn process(worker: u32, pid: i32, anon_mib: u64, pss_mib: Option<u64>) -> ProcessSample {
    ProcessSample {
        worker,
        pid,
        rss: (anon_mib + 10) * MIB,
        anon: anon_mib * MIB,
        shmem: MIB,
        pss: pss_mib.map(|m| m * MIB),
        ..ProcessSample::default()
    }
}

fn event(t_s: u64, worker: Option<u32>, kind: EventKind) -> Event {
    Event {
        t_ns: t_s * 1_000_000_000,
        wall_ns: 0,
        worker,
        kind,
    }
}

fn start(t_s: u64, worker: u32, attempt: u32) -> Event {
    event(
        t_s,
        Some(worker),
        EventKind::WorkerStart {
            pid: 100 + worker as i32,
            pgid: 100 + worker as i32,
            attempt,
        },
    )
}

fn trial_end(t_s: u64, worker: u32) -> Event {
    event(
        t_s,
        Some(worker),
        EventKind::TrialEnd {
            trial: t_s.to_string().into(),
            state: "COMPLETE".into(),
            value: None,
            memory: None,
        },
    )
}

fn policy(t_s: u64, worker: Option<u32>, action: PolicyAction) -> Event {
    event(
        t_s,
        worker,
        EventKind::Policy {
            action,
            reason: "because".into(),
            worker_pss_bytes: None,
            available_bytes: None,
            simulated: false,
        },
    )
}

/// Worker 0 retains 8 MiB a trial, worker 1 nothing; `trials` trials each.
fn leaking_run(trials: u64) -> LiveStatus {
    let mut status = LiveStatus::default();
    status.event(&start(0, 0, 0));
    status.event(&start(0, 1, 0));
    for trial in 1..=trials {
        status.tick(&tick(
            trial,
            vec![
                process(0, 100, 50 + 8 * trial, None),
                process(1, 101, 50, None),
            ],
        ));
        status.event(&trial_end(trial, 0));
        status.event(&trial_end(trial, 1));
    }
    status
}

#[test]
fn the_trend_is_what_each_worker_retains_per_trial() {
    let status = leaking_run(10);
    let slope = |w: u32| status.workers[&w].trend_per_trial().expect("a trend");
    assert!((slope(0) - 8.0 * MIB as f64).abs() < 1.0, "{}", slope(0));
    assert!(slope(1).abs() < 1.0);
    assert_eq!(status.workers[&0].trials(), 10);
    // Two trial ends are too few for a trend.
    assert_eq!(leaking_run(2).workers[&0].trend_per_trial(), None);
}

#[test]
fn the_trend_spans_the_whole_incarnation_at_a_coarser_grain() {
    let status = leaking_run(1000);
    let w = &status.workers[&0];
    assert!(w.trial_ends.len() <= 256, "{}", w.trial_ends.len());
    assert_eq!(
        w.trial_ends.first().map(|p| p.0),
        Some(1),
        "the first trial is kept"
    );
    assert!((w.trend_per_trial().expect("a trend") - 8.0 * MIB as f64).abs() < 1.0);
}

#[test]
fn a_restart_starts_the_trend_afresh_and_is_counted() {
    let mut status = leaking_run(10);
    status.event(&policy(11, Some(0), PolicyAction::Stop));
    assert_eq!(status.workers[&0].state, WorkerState::Stopping);
    status.event(&event(
        12,
        Some(0),
        EventKind::WorkerExit {
            pid: 100,
            code: None,
            signal: Some(15),
        },
    ));
    assert_eq!(
        status.workers[&0].state,
        WorkerState::Stopping,
        "a worker the policy stopped is restarting, not crashed"
    );
    assert_eq!(status.crashes, 0);
    status.event(&start(13, 0, 1));
    let w = &status.workers[&0];
    assert_eq!(
        (w.state, w.starts, status.restarts()),
        (WorkerState::Running, 2, 1)
    );
    assert_eq!(w.trend_per_trial(), None);
    assert_eq!(w.trials(), 10, "trials count over the whole run");
}

#[test]
fn pss_is_carried_until_read_again_and_rss_stands_in_before_the_first_read() {
    let mut status = LiveStatus::default();
    status.event(&start(0, 0, 0));
    status.tick(&tick(1, vec![process(0, 100, 40, None)]));
    let m = status.workers[&0].memory;
    assert_eq!(
        (m.pss_bytes, m.pss_stale),
        (50 * MIB, true),
        "RSS stands in"
    );
    assert_eq!(
        (m.anon_bytes, m.shmem_bytes, m.gpu_bytes),
        (40 * MIB, MIB, None)
    );
    status.tick(&tick(2, vec![process(0, 100, 40, Some(30))]));
    status.tick(&tick(3, vec![process(0, 100, 41, None)]));
    let m = status.workers[&0].memory;
    assert_eq!((m.pss_bytes, m.pss_stale), (30 * MIB, false), "carried");
    // After an exec the old program's PSS never stands in.
    status.event(&event(
        4,
        Some(0),
        EventKind::Exec {
            pid: 100,
            start_ticks: 1,
            command: "python3 train.py".into(),
        },
    ));
    status.tick(&tick(5, vec![process(0, 100, 41, None)]));
    assert!(status.workers[&0].memory.pss_stale);
}

#[test]
fn the_brake_pauses_and_crashes_are_counted_but_not_the_runs_own_stop() {
    let mut status = leaking_run(3);
    status.event(&policy(4, None, PolicyAction::BrakeOn));
    status.event(&policy(4, Some(1), PolicyAction::Pause));
    status.event(&policy(4, Some(0), PolicyAction::Refuse));
    assert!(status.brake_on);
    assert_eq!(status.held_back, 2);
    assert_eq!(status.workers[&1].state, WorkerState::Paused);
    status.event(&policy(5, None, PolicyAction::BrakeOff));
    status.event(&policy(5, Some(1), PolicyAction::Resume));
    assert_eq!(status.workers[&1].state, WorkerState::Running);
    let exit = |code| EventKind::WorkerExit {
        pid: 100,
        code: Some(code),
        signal: None,
    };
    status.event(&event(6, Some(0), exit(3)));
    assert_eq!(status.workers[&0].state, WorkerState::Exited(3));
    assert_eq!(status.crashes, 1);
    status.event(&event(
        7,
        None,
        EventKind::Stop {
            reason: "stop requested (signal)".into(),
        },
    ));
    status.event(&event(8, Some(1), exit(143)));
    assert_eq!(status.workers[&1].state, WorkerState::Stopped);
    assert_eq!(status.crashes, 1, "the run's own stop is no crash");
    let lines: Vec<&String> = status.notes_since(0).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.as_str() == "worker 1: pause: because"),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains("refuse")),
        "routine answers are not notes: {lines:?}"
    );
    assert_eq!(status.notes_since(status.notes_total).count(), 0);
}

#[test]
fn a_trial_end_before_any_sample_places_no_level() {
    // `watch` joined late: the events since the start come before the segment's ticks.
    let mut status = LiveStatus::default();
    status.event(&start(0, 0, 0));
    for trial in 1..=5 {
        status.event(&trial_end(trial, 0));
    }
    let w = &status.workers[&0];
    assert_eq!((w.trials(), w.trial_ends.len()), (5, 0));
}

#[test]
fn the_frame_says_headroom_pressure_state_memory_and_trend() {
    let mut status = leaking_run(10);
    status.event(&event(
        11,
        None,
        EventKind::Note {
            message: "GPU data unavailable".into(),
        },
    ));
    let text = frame(&status);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("memwarden · 11s · 2 worker(s) · brake off"),
        "{text}"
    );
    assert_eq!(
        lines[1],
        "  memory: headroom 10.00 GiB of 16.00 GiB (the host) · PSI some 1.5% full 0.2%"
    );
    assert!(
        lines[2].starts_with("  worker 0  running  PSS~ 140.0 MiB  anon 130.0 MiB"),
        "{text}"
    );
    assert!(
        lines[2].ends_with("10 trial(s)  trend +8.0 MiB/trial"),
        "{text}"
    );
    assert!(
        lines[3].ends_with("10 trial(s)  trend +0.0 MiB/trial"),
        "{text}"
    );
    assert_eq!(lines[4], "  last note: GPU data unavailable");
    // A cgroup limit below the host's memory is the one that applies.
    let mut limited = tick(12, Vec::new());
    limited.system.cgroup_limit_bytes = Some(4 << 30);
    limited.system.cgroup_working_set_bytes = Some(3 << 30);
    status.tick(&limited);
    assert!(
        frame(&status).contains("headroom 1.00 GiB of 4.00 GiB (the cgroup limit)"),
        "{}",
        frame(&status)
    );
    assert!(frame(&status).contains("worker 0  running  last PSS~"));
}

#[test]
fn the_tail_reads_complete_records_as_they_are_appended_and_follows_new_segments() {
    use std::io::Write;
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    let append = |name: &str, bytes: &[u8]| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .expect("open");
        file.write_all(bytes).expect("write");
    };
    let framed = |tick: &Tick| {
        let mut out = Vec::new();
        encode(tick, &mut out).expect("encode");
        out
    };
    let mut tail = Tail::open(dir);
    assert_eq!(tail.read().1.len(), 0, "nothing there yet");
    let one = framed(&tick(1, vec![process(0, 100, 1, None)]));
    let two = framed(&tick(2, vec![process(0, 100, 2, None)]));
    append("samples-000001.log", &one);
    append("samples-000001.log", &two[..10]);
    let ticks = tail.read().1;
    assert_eq!(
        ticks.iter().map(|t| t.t_ns).collect::<Vec<_>>(),
        [1_000_000_000]
    );
    append("samples-000001.log", &two[10..]);
    let mut events = Vec::new();
    encode(&start(2, 0, 0), &mut events).expect("encode");
    append("events.log", &events);
    let (events, ticks) = tail.read();
    assert_eq!(
        (events.len(), ticks.len()),
        (1, 1),
        "the torn line once whole"
    );
    // A new segment: the rest of the old one first, then the new one.
    append("samples-000001.log", &framed(&tick(3, Vec::new())));
    append("samples-000002.log", &framed(&tick(4, Vec::new())));
    let ticks = tail.read().1;
    assert_eq!(
        ticks
            .iter()
            .map(|t| t.t_ns / 1_000_000_000)
            .collect::<Vec<_>>(),
        [3, 4]
    );
    assert_eq!(tail.read().1.len(), 0);
}
