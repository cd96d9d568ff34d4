//! Starts: finished workers, replays, staggered and canary starts, GPU limits, shutdown.

use super::*;

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
