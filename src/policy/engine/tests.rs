//! The engine on synthetic streams: one test per rule, each asserting what happens and when.

use super::*;
use crate::policy::Policy;
use std::time::Duration;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const S: u64 = 1_000_000_000;

fn policy(text: &str) -> Policy {
    Policy::parse(text, "test.toml").expect("valid policy")
}

/// 32 GiB machine; `available` and each worker's PSS.
fn reading(available: u64, pss: &[u64]) -> Input {
    Input::Tick(Reading {
        mem_total_bytes: 32 * GIB,
        mem_available_bytes: available,
        psi_full_avg10: Some(0.0),
        limit_bytes: None,
        devices: Vec::new(),
        workers: (0u32..)
            .zip(pss)
            .map(|(w, &p)| {
                (
                    w,
                    WorkerMemory {
                        pss_bytes: p,
                        gpu_bytes: None,
                        pss_stale: false,
                        cgroup_bytes: None,
                    },
                )
            })
            .collect(),
    })
}

fn started(policy_text: &str, workers: u32) -> Engine {
    let mut engine = Engine::new(policy(policy_text), workers);
    let starts = engine.begin(0);
    assert_eq!(
        starts.len(),
        workers as usize,
        "all start at once by default"
    );
    engine
}

fn kinds(actions: &[Action]) -> Vec<(Option<u32>, &'static str)> {
    actions
        .iter()
        .map(|a| (a.worker, a.name().as_str()))
        .collect()
}

#[test]
fn the_brake_engages_under_the_threshold_and_releases_with_hysteresis() {
    let mut engine = started("", 2);
    assert!(engine.step(S, reading(3500 * MIB, &[GIB, GIB])).is_empty());
    // 10% of 32 GiB is 3.2 GiB.
    let on = engine.step(2 * S, reading(3 * GIB, &[GIB, GIB]));
    assert_eq!(
        kinds(&on),
        [(None, "brake_on"), (Some(0), "pause"), (Some(1), "pause")]
    );
    assert!(
        on[0]
            .reason
            .contains("available memory 3.00 GiB is under 3.20 GiB (10%)"),
        "{}",
        on[0].reason
    );
    assert_eq!(on[0].available_bytes, Some(3 * GIB));
    // Above the threshold but within the margin: still on.
    assert!(engine
        .step(3 * S, reading(3500 * MIB, &[GIB, GIB]))
        .is_empty());
    let off = engine.step(4 * S, reading(5 * GIB, &[GIB, GIB]));
    assert_eq!(kinds(&off), [(None, "brake_off"), (Some(0), "resume")]);
    assert_eq!(
        off[1].reason,
        "the brake is off: the longest held of 2, one a reading"
    );
    // The held go on one a reading: the next sees what the first took.
    let next = engine.step(4 * S + S / 10, reading(5 * GIB, &[GIB, GIB]));
    assert_eq!(kinds(&next), [(Some(1), "resume")]);
    assert_eq!(next[0].reason, "the brake is off");
}

#[test]
fn the_held_go_on_one_a_reading_and_the_rest_wait_if_memory_falls_again() {
    let mut engine = started("", 3);
    for w in 0..3 {
        engine.step(
            0,
            Input::TrialStart {
                worker: w,
                trial: "0".into(),
            },
        );
    }
    let pss = [GIB, GIB, GIB];
    engine.step(S, reading(3 * GIB, &pss));
    // Held as their trials end: 2 first, then 0, then 1.
    for (t, w) in [(2, 2), (3, 0), (4, 1)] {
        let held = engine.step(t * S, Input::TrialEnd { worker: w });
        assert_eq!(kinds(&held), [(Some(w), "pause")]);
    }
    let off = engine.step(5 * S, reading(5 * GIB, &pss));
    assert_eq!(
        kinds(&off),
        [(None, "brake_off"), (Some(2), "resume")],
        "longest held first"
    );
    engine.step(
        5 * S + 1,
        Input::TrialStart {
            worker: 2,
            trial: "1".into(),
        },
    );
    // Worker 2's next trial takes 1.5 GiB: the brake is on again, 0 and 1 stay held.
    let on = engine.step(5 * S + S / 10, reading(3500 * MIB, &pss));
    assert_eq!(kinds(&on), [(None, "brake_on")], "{on:?}");
}

#[test]
fn a_cooperative_worker_is_told_to_wait_and_never_paused() {
    let mut engine = started("[brake]\nwait = \"7s\"\n", 1);
    assert_eq!(
        engine.step(S, Input::Ask { worker: 0 })[0].kind,
        ActionKind::Answer(Answer::Go)
    );
    engine.step(
        S,
        Input::TrialStart {
            worker: 0,
            trial: "t".into(),
        },
    );
    let on = engine.step(2 * S, reading(2 * GIB, &[GIB]));
    assert_eq!(
        kinds(&on),
        [(None, "brake_on")],
        "a running trial is not paused"
    );
    assert!(engine.step(3 * S, Input::TrialEnd { worker: 0 }).is_empty());
    let answer = engine.step(3 * S, Input::Ask { worker: 0 });
    assert_eq!(
        answer[0].kind,
        ActionKind::Answer(Answer::Wait(Duration::from_secs(7)))
    );
    assert_eq!(engine.counters().brakes, 1);
}

#[test]
fn memory_pressure_alone_engages_the_brake() {
    let mut engine = started("[brake]\nmax_psi_full = 15.0\n", 1);
    let mut tick = reading(20 * GIB, &[GIB]);
    if let Input::Tick(r) = &mut tick {
        r.psi_full_avg10 = Some(31.5);
    }
    let on = engine.step(S, tick);
    assert_eq!(on[0].kind, ActionKind::BrakeOn);
    assert!(
        on[0].reason.contains("31.5% is over 15%"),
        "{}",
        on[0].reason
    );
}

#[test]
fn a_budget_brakes_on_the_workers_own_use() {
    let mut engine = started("budget = \"8GiB\"\n[brake]\nmin_headroom = \"1GiB\"\n", 2);
    // The machine has plenty, but the workers use 7.5 of their 8 GiB.
    let on = engine.step(S, reading(20 * GIB, &[4 * GIB, 3584 * MIB]));
    assert_eq!(on[0].kind, ActionKind::BrakeOn);
    assert!(
        on[0]
            .reason
            .starts_with("headroom 512.0 MiB is under 1.00 GiB:"),
        "{}",
        on[0].reason
    );
}

#[test]
fn escalation_restarts_the_largest_worker_after_ten_brakes() {
    let mut engine = started("", 2);
    engine.step(0, Input::Ask { worker: 0 });
    engine.step(0, Input::Ask { worker: 1 });
    engine.step(S, reading(2 * GIB, &[9 * GIB, 12 * GIB]));
    let mut stops = Vec::new();
    for k in 0..10u64 {
        let worker = (k % 2) as u32;
        let actions = engine.step(2 * S + k, Input::Ask { worker });
        stops.extend(actions.into_iter().filter(|a| a.kind == ActionKind::Stop));
        if k < 9 {
            assert!(stops.is_empty(), "no escalation before the tenth brake");
        }
    }
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].worker, Some(1), "worker 1 holds 12 GiB");
    assert!(
        stops[0].reason.starts_with("escalation: the brake refused 10 trials in a row; worker 1 holds the most memory (12.00 GiB PSS)"),
        "{}",
        stops[0].reason
    );
    assert_eq!(stops[0].worker_pss_bytes, Some(12 * GIB));
    let restart = engine.step(
        3 * S,
        Input::WorkerExit {
            worker: 1,
            success: false,
        },
    );
    assert_eq!(restart[0].kind, ActionKind::Start { attempt: 1 });
    assert_eq!(engine.counters().escalations, 1);
    assert_eq!(
        engine.counters().crashes,
        0,
        "an exit we asked for is no crash"
    );
}

#[test]
fn paused_workers_count_as_refused_every_wait_and_so_escalate_early() {
    // 4 paused workers, brake.wait 5 s, after_brakes 10: 4 at the pause, 8 at 5 s, 12 at 10 s.
    let mut engine = started("", 4);
    let on = engine.step(S, reading(2560 * MIB, &[GIB, 2 * GIB, GIB, GIB]));
    assert_eq!(on.iter().filter(|a| a.kind == ActionKind::Pause).count(), 4);
    assert!(engine
        .step(10 * S, reading(2560 * MIB, &[GIB, 2 * GIB, GIB, GIB]))
        .is_empty());
    let escalated = engine.step(11 * S, reading(2560 * MIB, &[GIB, 2 * GIB, GIB, GIB]));
    assert_eq!(
        kinds(&escalated),
        [(Some(1), "escalate"), (Some(1), "stop")],
        "well before escalation.after's 30 s"
    );
    assert!(
        escalated[1]
            .reason
            .starts_with("escalation: the brake refused 12 trials in a row"),
        "{}",
        escalated[1].reason
    );
}

#[test]
fn escalation_also_follows_time_and_aborts_a_cooperative_trial() {
    let mut engine = started("[escalation]\nafter = \"30s\"\n", 1);
    engine.step(0, Input::Ask { worker: 0 });
    engine.step(
        0,
        Input::TrialStart {
            worker: 0,
            trial: "t".into(),
        },
    );
    engine.step(S, reading(2 * GIB, &[6 * GIB]));
    assert!(engine.step(30 * S, reading(2 * GIB, &[6 * GIB])).is_empty());
    let actions = engine.step(31 * S, reading(2 * GIB, &[6 * GIB]));
    assert_eq!(
        kinds(&actions),
        [(Some(0), "escalate"), (Some(0), "abort_trial")]
    );
    assert!(
        actions[0].reason.contains("the brake has been on for 30s")
            && actions[0]
                .reason
                .ends_with("restarting it when its trial ends, within 10s"),
        "{}",
        actions[0].reason
    );
    assert_eq!(actions[0].worker_pss_bytes, Some(6 * GIB), "what it frees");
    // The restart waits for the aborted trial to end...
    assert_eq!(
        kinds(&engine.step(32 * S, Input::TrialEnd { worker: 0 })),
        [(Some(0), "stop")]
    );
}

#[test]
fn an_escalated_trial_that_does_not_end_is_stopped_after_the_grace_period() {
    let mut engine = started("[restart]\ngrace = \"4s\"\n", 1);
    engine.step(
        0,
        Input::TrialStart {
            worker: 0,
            trial: "17".into(),
        },
    );
    engine.step(S, reading(2 * GIB, &[6 * GIB]));
    let escalated = engine.step(31 * S, reading(2 * GIB, &[6 * GIB]));
    assert_eq!(kinds(&escalated), [(Some(0), "escalate")]);
    // ... but not longer than restart.grace, not restart.deadline's 5 minutes.
    assert!(engine
        .step(35 * S - 1, reading(2 * GIB, &[6 * GIB]))
        .is_empty());
    let stop = engine.step(35 * S, reading(2 * GIB, &[6 * GIB]));
    assert_eq!(kinds(&stop), [(Some(0), "stop")]);
    assert!(
        stop[0]
            .reason
            .ends_with("its trial did not end within 4s; trial 17, which it had started, is lost"),
        "{}",
        stop[0].reason
    );
}

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

#[test]
fn isolated_replays_stop_after_their_number_of_starts() {
    let mut policy = policy("[restart]\nwhen_finished = true\n");
    policy.restart.max_starts = Some(3);
    let mut engine = Engine::new(policy, 1);
    engine.begin(0);
    let mut starts = 1;
    for k in 1..10 {
        let exit = Input::WorkerExit {
            worker: 0,
            success: true,
        };
        starts += engine
            .step(k * S, exit)
            .iter()
            .filter(|a| matches!(a.kind, ActionKind::Start { .. }))
            .count();
    }
    assert_eq!(starts, 3);
    assert!(engine.finished());
}

#[test]
fn staggered_starts_come_one_interval_apart() {
    let mut engine = Engine::new(policy("[start]\nstagger = \"5m\"\n"), 3);
    assert_eq!(kinds(&engine.begin(0)), [(Some(0), "start")]);
    assert!(engine.step(299 * S, reading(20 * GIB, &[GIB])).is_empty());
    assert_eq!(
        kinds(&engine.step(300 * S, reading(20 * GIB, &[GIB]))),
        [(Some(1), "start")]
    );
    assert_eq!(
        kinds(&engine.step(600 * S, reading(20 * GIB, &[GIB, GIB]))),
        [(Some(2), "start")]
    );
}

fn canary_run(policy_text: &str, peak: u64, growth: u64) -> Vec<Action> {
    let mut engine = Engine::new(policy(policy_text), 4);
    assert_eq!(kinds(&engine.begin(0)), [(Some(0), "start")]);
    let mut actions = Vec::new();
    for k in 0..3u64 {
        engine.step(
            k * 10 * S,
            Input::TrialStart {
                worker: 0,
                trial: "t".into(),
            },
        );
        engine.step(k * 10 * S + 1, reading(28 * GIB, &[peak]));
        engine.step(k * 10 * S + 2, reading(28 * GIB, &[GIB + k * growth]));
        actions.extend(engine.step(k * 10 * S + 3, Input::TrialEnd { worker: 0 }));
    }
    actions
}

#[test]
fn a_canary_releases_the_others_when_it_fits() {
    let actions = canary_run("[start]\ncanary_trials = 3\n", 2 * GIB, 0);
    assert_eq!(
        kinds(&actions),
        [(Some(1), "start"), (Some(2), "start"), (Some(3), "start")]
    );
}

#[test]
fn a_canary_that_peaks_too_high_starts_only_what_fits() {
    // 90% of 32 GiB is 28.8 GiB: three workers of 9 GiB fit, four do not.
    let actions = canary_run("[start]\ncanary_trials = 3\n", 9 * GIB, 0);
    assert_eq!(
        kinds(&actions),
        [(Some(3), "give_up"), (Some(1), "start"), (Some(2), "start")]
    );
    assert!(
        actions[0].reason.contains("3 of 4 workers fit"),
        "{}",
        actions[0].reason
    );
}

#[test]
fn a_leaking_canary_keeps_the_others_down() {
    let actions = canary_run(
        "[start]\ncanary_trials = 3\ncanary_max_growth = \"64MiB\"\n",
        2 * GIB,
        100 * MIB,
    );
    assert_eq!(
        kinds(&actions),
        [
            (Some(1), "give_up"),
            (Some(2), "give_up"),
            (Some(3), "give_up")
        ]
    );
    assert!(
        actions[0].reason.contains("retained 100.0 MiB per trial"),
        "{}",
        actions[0].reason
    );
}

#[test]
fn a_gpu_limit_restarts_like_a_pss_limit() {
    let mut engine = started("[restart]\nmax_worker_gpu = \"10GiB\"\n", 1);
    let mut tick = reading(20 * GIB, &[GIB]);
    if let Input::Tick(r) = &mut tick {
        r.workers.get_mut(&0).expect("worker 0").gpu_bytes = Some(11 * GIB);
    }
    let stop = engine.step(S, tick);
    assert_eq!(
        stop[0].reason,
        "GPU memory 11.00 GiB passed the limit of 10.00 GiB"
    );
}

#[test]
fn a_restart_pending_answers_abort_and_stops_between_trials() {
    let mut engine = started("[restart]\nmax_worker_pss = \"1GiB\"\n", 1);
    engine.step(0, Input::Ask { worker: 0 });
    engine.step(
        0,
        Input::TrialStart {
            worker: 0,
            trial: "t".into(),
        },
    );
    engine.step(S, reading(20 * GIB, &[2 * GIB]));
    // Optuna-style: the next question comes before the end line is parsed.
    let actions = engine.step(2 * S, Input::Ask { worker: 0 });
    assert_eq!(kinds(&actions), [(Some(0), "abort"), (Some(0), "stop")]);
}

#[test]
fn nothing_starts_after_shutdown() {
    let mut engine = started("[restart]\nwhen_finished = true\n", 1);
    engine.shut_down();
    assert!(engine
        .step(
            S,
            Input::WorkerExit {
                worker: 0,
                success: true
            }
        )
        .is_empty());
}

#[test]
fn a_gpu_short_of_free_memory_restarts_the_worker_holding_the_most() {
    let mut engine = started("[restart]\nmin_device_free = \"10%\"\n", 2);
    let tick = |device_used: u64, gpu: [u64; 2]| {
        let mut tick = reading(20 * GIB, &[GIB, GIB]);
        if let Input::Tick(r) = &mut tick {
            r.devices = vec![(0, device_used, 80 * GIB)];
            for (w, g) in gpu.iter().enumerate() {
                r.workers.get_mut(&(w as u32)).expect("worker").gpu_bytes = Some(*g);
            }
        }
        tick
    };
    assert!(
        engine
            .step(S, tick(70 * GIB, [30 * GIB, 40 * GIB]))
            .is_empty(),
        "12.5% free"
    );
    let stop = engine.step(2 * S, tick(75 * GIB, [30 * GIB, 45 * GIB]));
    assert_eq!(kinds(&stop), [(Some(1), "stop")]);
    assert_eq!(
        stop[0].reason,
        "GPU 0 has 5.00 GiB free, under 8.00 GiB (10%); worker 1 holds the most GPU memory (45.00 GiB)"
    );
    assert!(
        engine.step(3 * S, tick(75 * GIB, [30 * GIB, 0])).is_empty(),
        "one at a time"
    );
}
