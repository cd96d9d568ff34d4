//! Restarts: limits, the soft line, deadlines, schedules, the floor and crash loops.

use super::*;

#[test]
fn a_pss_limit_restarts_at_the_trial_boundary() {
    let mut engine = started("[restart]\nmax_worker_pss = \"200MiB\"\n", 1);
    engine.step(
        0,
        Input::TrialStart {
            worker: 0,
            trial: "t".into(),
        },
    );
    assert!(engine.step(S, reading(20 * GIB, &[150 * MIB])).is_empty());
    assert!(
        engine
            .step(2 * S, reading(20 * GIB, &[210 * MIB]))
            .is_empty(),
        "waits for the trial"
    );
    let stop = engine.step(3 * S, Input::TrialEnd { worker: 0 });
    assert_eq!(kinds(&stop), [(Some(0), "stop")]);
    assert_eq!(
        stop[0].reason,
        "PSS 210.0 MiB passed the limit of 200.0 MiB"
    );
    assert_eq!(engine.counters().restarts.get("pss_limit"), Some(&1));
}

/// A worker's own cgroup at its soft line: restarted when its trial ends, before the kernel's
/// limit above the line kills it; below the line, or without a cgroup reading, nothing.
#[test]
fn a_worker_at_its_soft_line_restarts_at_the_trial_boundary() {
    let mut policy = policy("");
    policy.restart.soft_line = Some(270 * MIB);
    let mut engine = Engine::new(policy, 2);
    assert_eq!(engine.begin(0).len(), 2);
    engine.step(
        0,
        Input::TrialStart {
            worker: 1,
            trial: "t".into(),
        },
    );
    let with_cgroups = |held: [Option<u64>; 2]| {
        let Input::Tick(mut reading) = reading(20 * GIB, &[300 * MIB, 300 * MIB]) else {
            unreachable!()
        };
        for (worker, held) in (0u32..).zip(held) {
            reading
                .workers
                .get_mut(&worker)
                .expect("worker")
                .cgroup_bytes = held;
        }
        Input::Tick(reading)
    };
    assert!(
        engine
            .step(S, with_cgroups([None, Some(269 * MIB)]))
            .is_empty(),
        "PSS over the line is not the cgroup's count; the cgroup under it"
    );
    assert!(
        engine
            .step(2 * S, with_cgroups([None, Some(270 * MIB)]))
            .is_empty(),
        "waits for the trial"
    );
    let stop = engine.step(3 * S, Input::TrialEnd { worker: 1 });
    assert_eq!(kinds(&stop), [(Some(1), "stop")]);
    assert_eq!(
        stop[0].reason,
        "its cgroup holds 270.0 MiB of anonymous and shared memory, at its soft line of 270.0 MiB"
    );
    assert_eq!(engine.counters().restarts.get("soft_line"), Some(&1));
}

#[test]
fn a_restart_stops_a_trial_that_outlives_the_deadline() {
    let mut engine = started(
        "[restart]\nmax_worker_pss = \"200MiB\"\ndeadline = \"10s\"\n",
        1,
    );
    engine.step(
        0,
        Input::TrialStart {
            worker: 0,
            trial: "t".into(),
        },
    );
    engine.step(S, reading(20 * GIB, &[300 * MIB]));
    assert!(engine
        .step(10 * S, reading(20 * GIB, &[300 * MIB]))
        .is_empty());
    let stop = engine.step(11 * S, reading(20 * GIB, &[300 * MIB]));
    assert_eq!(kinds(&stop), [(Some(0), "stop")]);
    assert!(
        stop[0]
            .reason
            .ends_with("its trial did not end within 10s; trial t, which it had started, is lost"),
        "{}",
        stop[0].reason
    );
}

#[test]
fn every_n_trials_and_every_t_restart() {
    let mut engine = started("[restart]\nevery_trials = 5\n", 1);
    for k in 0..4 {
        engine.step(
            k * S,
            Input::TrialStart {
                worker: 0,
                trial: "t".into(),
            },
        );
        assert!(engine
            .step(k * S + 1, Input::TrialEnd { worker: 0 })
            .is_empty());
    }
    engine.step(
        5 * S,
        Input::TrialStart {
            worker: 0,
            trial: "t".into(),
        },
    );
    let stop = engine.step(6 * S, Input::TrialEnd { worker: 0 });
    assert_eq!(stop[0].reason, "it completed 5 trials");
    engine.step(
        7 * S,
        Input::WorkerExit {
            worker: 0,
            success: true,
        },
    );
    // The count starts again with the new process.
    engine.step(
        8 * S,
        Input::TrialStart {
            worker: 0,
            trial: "t".into(),
        },
    );
    assert!(engine.step(9 * S, Input::TrialEnd { worker: 0 }).is_empty());

    let mut engine = started("[restart]\nevery = \"30m\"\n", 1);
    assert!(engine.step(1799 * S, reading(20 * GIB, &[GIB])).is_empty());
    let stop = engine.step(1800 * S, reading(20 * GIB, &[GIB]));
    assert_eq!(stop[0].reason, "it has run for 30m");
}

#[test]
fn the_emergency_floor_restarts_the_largest_at_once_and_one_at_a_time() {
    let mut engine = started("", 3);
    for w in 0..3 {
        engine.step(
            0,
            Input::TrialStart {
                worker: w,
                trial: "t".into(),
            },
        );
    }
    // 5% of 32 GiB is 1.6 GiB.
    let actions = engine.step(S, reading(GIB, &[3 * GIB, 5 * GIB, 4 * GIB]));
    let stops: Vec<_> = actions
        .iter()
        .filter(|a| a.kind == ActionKind::Stop)
        .collect();
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].worker, Some(1));
    assert!(
        stops[0]
            .reason
            .starts_with("emergency: available memory 1.00 GiB is under the floor"),
        "{}",
        stops[0].reason
    );
    let next = engine.step(2 * S, reading(GIB, &[3 * GIB, 5 * GIB, 4 * GIB]));
    assert!(
        next.iter().all(|a| a.kind != ActionKind::Stop),
        "waits for the first to exit"
    );
}

#[test]
fn memory_falling_fast_meets_the_brake_and_the_floor_a_reading_early() {
    // Issue 29's 64 MiB-a-trial run: four workers take 256 MiB between two readings, more than
    // the brake's 10% and the floor's 5% of a 1.5 GiB limit together. Acting on the reading
    // alone, the brake engaged once the kernel had already killed.
    let mut engine = started("", 2);
    let avail = |a| reading(a, &[600 * MIB, 400 * MIB]);
    assert!(engine.step(S / 10, avail(8 * GIB)).is_empty());
    // Down 2.63 GiB in one reading with 5.37 GiB left: above 3.2 GiB (10%) now, not by the next.
    let on = engine.step(2 * S / 10, avail(5500 * MIB));
    assert_eq!(kinds(&on)[0], (None, "brake_on"), "{on:?}");
    assert!(
        on[0].reason.contains(
            "available memory 5.37 GiB is falling 26.29 GiB/s, so under 3.20 GiB (10%) by the \
             next reading"
        ),
        "{}",
        on[0].reason
    );
    // The sampler reads again at a trial boundary, 4 ms later: 10 MiB in 4 ms is no sign that
    // the fall has stopped (a rate from the last two readings alone would release the brake).
    assert!(engine.step(204 * S / 1000, avail(5490 * MIB)).is_empty());
    // Above the release margin (4 GiB) but still falling towards it: not released.
    assert!(engine.step(3 * S / 10, avail(4700 * MIB)).is_empty());
    // Falling 1.59 GiB a reading with 3 GiB left: under the 1.6 GiB floor by the next reading.
    let floor = engine.step(4 * S / 10, avail(3 * GIB));
    let stop = floor
        .iter()
        .find(|a| a.kind == ActionKind::Stop)
        .expect("a stop");
    assert_eq!(stop.worker, Some(0), "the largest");
    assert!(
        stop.reason.contains(
            "is falling 15.90 GiB/s, so under the floor of 1.60 GiB (5%) by the next reading"
        ),
        "{}",
        stop.reason
    );
    // Risen, but under the margin: on; above it and not falling: off.
    assert!(engine.step(5 * S / 10, avail(3900 * MIB)).is_empty());
    let off = engine.step(6 * S / 10, avail(5 * GIB));
    assert_eq!(kinds(&off)[0], (None, "brake_off"));
}

#[test]
fn a_crash_loop_backs_off_exponentially_then_gives_up() {
    let mut engine = started(
        "[restart]\nmax_crashes = 3\nbackoff = \"2s\"\nbackoff_max = \"5s\"\n",
        1,
    );
    let mut t = 0;
    let mut delays = Vec::new();
    for _ in 0..3 {
        let backoff = engine.step(
            t,
            Input::WorkerExit {
                worker: 0,
                success: false,
            },
        );
        let ActionKind::BackOff { delay } = backoff[0].kind else {
            panic!("expected a back-off, got {backoff:?}");
        };
        delays.push(delay.as_secs());
        assert!(engine
            .step(t + delay.as_nanos() as u64 - 1, reading(20 * GIB, &[]))
            .is_empty());
        t += delay.as_nanos() as u64;
        let start = engine.step(t, reading(20 * GIB, &[]));
        assert!(
            matches!(start[0].kind, ActionKind::Start { .. }),
            "{start:?}"
        );
    }
    assert_eq!(delays, [2, 4, 5], "doubling, capped");
    let give_up = engine.step(
        t,
        Input::WorkerExit {
            worker: 0,
            success: false,
        },
    );
    assert_eq!(give_up[0].kind, ActionKind::GiveUp);
    assert_eq!(engine.counters().degraded.len(), 1);
    assert!(
        engine.step(t + 3600 * S, reading(20 * GIB, &[])).is_empty(),
        "stays down"
    );
}

#[test]
fn a_completed_trial_resets_the_crash_count() {
    let mut engine = started("[restart]\nmax_crashes = 1\nbackoff = \"1s\"\n", 1);
    engine.step(
        0,
        Input::WorkerExit {
            worker: 0,
            success: false,
        },
    );
    engine.step(S, reading(20 * GIB, &[]));
    engine.step(
        2 * S,
        Input::TrialStart {
            worker: 0,
            trial: "t".into(),
        },
    );
    engine.step(3 * S, Input::TrialEnd { worker: 0 });
    let again = engine.step(
        4 * S,
        Input::WorkerExit {
            worker: 0,
            success: false,
        },
    );
    assert!(
        matches!(again[0].kind, ActionKind::BackOff { .. }),
        "{again:?}"
    );
}

#[test]
fn finished_workers_stay_down_unless_soak_mode_restarts_them() {
    let mut engine = started("", 1);
    assert!(engine
        .step(
            S,
            Input::WorkerExit {
                worker: 0,
                success: true
            }
        )
        .is_empty());
    let mut engine = started("[restart]\nwhen_finished = true\n", 1);
    let start = engine.step(
        S,
        Input::WorkerExit {
            worker: 0,
            success: true,
        },
    );
    assert_eq!(start[0].kind, ActionKind::Start { attempt: 1 });
}
