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

mod restarts;
mod starts;
