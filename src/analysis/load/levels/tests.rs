use super::*;

fn trial(start: u64, end: Option<u64>) -> Trial {
    Trial {
        worker: 0,
        trial: start.to_string().into(),
        start_ns: Some(start),
        end_ns: end,
        state: "complete".into(),
        value: None,
        params: Default::default(),
        end_memory: None,
    }
}

/// The walker's levels by window, `None` where it saw none.
fn dense(levels: Vec<(usize, Levels)>, windows: usize) -> Vec<Option<Levels>> {
    let mut out = vec![None; windows];
    for (index, l) in levels {
        out[index] = Some(l);
    }
    out
}

fn v(x: f64) -> Values {
    let mut values: Values = Default::default();
    values[0] = Some(x);
    values
}

#[test]
fn a_restart_ends_the_settling_window_before_the_next_process_starts() {
    // Trial 0 ends at 200; its process exits at 260 and a new one starts trial 1 at 300.
    let trials = [trial(100, Some(200)), trial(300, Some(400))];
    let refs: Vec<&Trial> = trials.iter().collect();
    let windows = windows(&refs, &[260, 500], 10);
    assert_eq!(
        windows[0].map(|w| (w.settle_from_ns(), w.settle_to_ns)),
        Some((220, 240)),
        "settled before the exit's teardown, not in the next process's start-up"
    );
    assert_eq!(windows[1].map(|w| w.settle_to_ns), Some(480));
}

#[test]
fn baseline_peak_and_settled_retained() {
    // Trial 0: 100..200, gap to 300; trial 1: 300..400 and then the process exits at 500.
    let trials = [trial(100, Some(200)), trial(300, Some(400))];
    let refs: Vec<&Trial> = trials.iter().collect();
    let windows = windows(&refs, &[500], 10);
    assert_eq!(
        windows[0].map(|w| (w.settle_from_ns(), w.settle_to_ns)),
        Some((250, 300))
    );
    assert_eq!(windows[1].map(|w| w.settle_to_ns), Some(480));
    let mut walker = SeriesWalker::new(windows);
    for t in (0..500).step_by(10) {
        let level = match t {
            0..=100 => 10.0,
            101..=200 => 90.0, // a spike during trial 0
            201..=240 => 30.0, // being freed
            241..=300 => 20.0, // settled: 10 retained
            301..=400 => 95.0, // trial 1
            401..=470 => 30.0, // settled: 20 retained
            _ => 0.0,          // teardown, ignored
        };
        walker.push(t, v(level));
    }
    let levels = dense(walker.finish(), 3);
    let first = levels[0].as_ref().expect("levels");
    assert_eq!(
        (
            first.baseline.get(0),
            first.peak.get(0),
            first.retained.get(0)
        ),
        (Some(10.0), Some(90.0), Some(20.0))
    );
    let second = levels[1].as_ref().expect("levels");
    assert_eq!(
        (
            second.baseline.get(0),
            second.peak.get(0),
            second.retained.get(0)
        ),
        (Some(20.0), Some(95.0), Some(30.0))
    );
}

#[test]
fn no_gap_uses_the_level_after_the_end_and_running_trials_retain_nothing() {
    // Optuna-style: each trial starts where the last ended.
    let trials = [trial(0, Some(100)), trial(100, Some(200)), trial(200, None)];
    let refs: Vec<&Trial> = trials.iter().collect();
    let mut walker = SeriesWalker::new(windows(&refs, &[1020], 10));
    for t in (5..300).step_by(10) {
        walker.push(t, v(t as f64));
    }
    let levels = dense(walker.finish(), 3);
    assert_eq!(
        levels[0].as_ref().and_then(|l| l.retained.get(0)),
        Some(105.0)
    );
    assert_eq!(levels[2].as_ref().map(|l| l.retained.get(0)), Some(None));
    assert_eq!(levels[2].as_ref().and_then(|l| l.peak.get(0)), Some(295.0));
}

#[test]
fn a_series_holds_levels_only_for_the_trials_it_was_alive_for() {
    // 100,000 one-tick trials; a process that lived through the last two of them.
    let trials: Vec<Trial> = (0..100_000u64)
        .map(|i| trial(10 * i + 1, Some(10 * i + 9)))
        .collect();
    let refs: Vec<&Trial> = trials.iter().collect();
    let mut walker = SeriesWalker::new(windows(&refs, &[], 1));
    for t in (999_980..1_000_000).step_by(5) {
        walker.push(t, v(1.0));
    }
    let levels = walker.finish();
    let seen: Vec<usize> = levels.iter().map(|(index, _)| *index).collect();
    assert_eq!(seen, [99_998, 99_999]);
}

#[test]
fn a_process_born_mid_run_sees_only_later_trials() {
    let trials = [trial(100, Some(200)), trial(300, Some(400))];
    let refs: Vec<&Trial> = trials.iter().collect();
    let mut walker = SeriesWalker::new(windows(&refs, &[1020], 10));
    for t in (310..500).step_by(10) {
        walker.push(t, v(5.0));
    }
    let levels = dense(walker.finish(), 3);
    assert!(levels[0].is_none());
    assert_eq!(
        levels[1].as_ref().and_then(|l| l.baseline.get(0)),
        Some(0.0)
    );
}
