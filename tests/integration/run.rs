//! `memwarden run` and `attach` on the fixture worker: what must be visible in a recording.

use crate::util::*;
use memwarden::recording::{EventKind, Recording, RunStatus};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn open(dir: &std::path::Path) -> Recording {
    Recording::open(dir).expect("recording opens")
}

fn exits(recording: &Recording) -> Vec<(Option<i32>, Option<i32>)> {
    let exit = |e: &memwarden::recording::Event| match e.kind {
        EventKind::WorkerExit { code, signal, .. } => Some((code, signal)),
        _ => None,
    };
    recording.events.iter().filter_map(exit).collect()
}

#[test]
fn a_leak_of_8_mib_per_trial_shows_in_pss_and_anonymous_memory() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    run_fixture(
        &dir,
        "--interval 50ms",
        "--trials 8 --trial-ms 150 --gap-ms 300 --leak-mib 8",
    );
    let (main, _) = pids(&dir);
    for column in ["pss", "anon"] {
        let retained = retained_per_trial(&dir, 0, main[&0], column);
        assert!(
            retained.len() >= 7,
            "{column}: too few gap samples: {retained:?}"
        );
        let growth = slope(&retained) / MIB;
        assert!(
            (growth - 8.0).abs() <= 0.8,
            "{column}: {growth:.2} MiB per trial, expected 8 ± 10%; retained (trial, MiB): {:?}",
            retained
                .iter()
                .map(|(k, v)| (*k, (v / MIB * 10.0).round() / 10.0))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_forked_childs_leak_is_recorded_on_the_child() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let fixture = "--trials 6 --trial-ms 150 --gap-ms 300 --leak-mib 8 --child-leak";
    run_fixture(&dir, "--interval 50ms", fixture);
    let (main, all) = pids(&dir);
    let child = *all[&0]
        .iter()
        .find(|&&p| p != main[&0])
        .expect("the forked child was seen");
    let child_growth = slope(&retained_per_trial(&dir, 0, child, "anon")) / MIB;
    let parent_growth = slope(&retained_per_trial(&dir, 0, main[&0], "anon")) / MIB;
    assert!(
        (child_growth - 8.0).abs() <= 0.8,
        "child grew {child_growth:.2} MiB per trial"
    );
    assert!(
        parent_growth.abs() < 0.5,
        "parent grew {parent_growth:.2} MiB per trial"
    );
}

#[test]
fn a_shared_memory_leak_is_recorded_as_shmem() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    run_fixture(
        &dir,
        "--interval 50ms",
        "--trials 6 --trial-ms 150 --gap-ms 300 --leak-mib 4 --shmem",
    );
    let (main, _) = pids(&dir);
    let shmem = slope(&retained_per_trial(&dir, 0, main[&0], "shmem")) / MIB;
    let anon = slope(&retained_per_trial(&dir, 0, main[&0], "anon")) / MIB;
    assert!(
        (shmem - 4.0).abs() <= 0.4,
        "shmem grew {shmem:.2} MiB per trial"
    );
    assert!(anon.abs() < 0.5, "anon grew {anon:.2} MiB per trial");
    let smaps = export(&dir, "smaps");
    let mapping = smaps.column("mapping");
    assert!(
        smaps
            .rows
            .iter()
            .any(|r| r[mapping].contains("memfd:memwarden-fixture-shm")),
        "the shared mapping is named in the trial-boundary smaps"
    );
}

#[test]
fn optuna_log_lines_give_trials_with_parameters() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let fixture = "--trials 4 --trial-ms 50 --gap-ms 50 --optuna --param lr=0.01,0.001 --param optimizer=adam,sgd";
    run_fixture(&dir, "", fixture);
    let trials = open(&dir).trials();
    assert_eq!(trials.len(), 4, "{trials:?}");
    for (k, trial) in trials.iter().enumerate() {
        assert_eq!(trial.trial, k.to_string());
        assert_eq!(trial.state, "complete");
        let (lr, optimizer) = if k % 2 == 0 {
            (0.01, "adam")
        } else {
            (0.001, "sgd")
        };
        assert_eq!(trial.params["lr"], serde_json::json!(lr));
        assert_eq!(trial.params["optimizer"], serde_json::json!(optimizer));
        if k > 0 {
            assert_eq!(
                trial.start_ns,
                trials[k - 1].end_ns,
                "a sequential trial starts where the last ended"
            );
        }
    }
    // The same table as users get it.
    let out = memwarden()
        .args(["export", "--table", "trials"])
        .arg(&dir)
        .output()
        .expect("export");
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.contains("param_lr") && header.contains("param_optimizer"),
        "{text}"
    );
}

#[test]
fn garbage_huge_and_non_utf8_lines_neither_crash_nor_stall_nor_grow_the_harness() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let started = Instant::now();
    run_fixture(
        &dir,
        "--interval 50ms",
        "--trials 5 --trial-ms 100 --gap-ms 100 --garbage",
    );
    let trials = open(&dir).trials();
    assert_eq!(
        trials.len(),
        5,
        "the garbage line `MEMWARDEN trial_\\xff` is no trial: {trials:?}"
    );
    assert!(trials.iter().all(|t| t.state == "complete"));
    // Not stalled: each trial was seen within its own time slot (~200 ms apart), not in a burst.
    let ends: Vec<u64> = trials.iter().filter_map(|t| t.end_ns).collect();
    assert!(
        ends.windows(2).all(|w| w[1] - w[0] > 100_000_000),
        "trial ends bunched up: {ends:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    let log = std::fs::read(dir.join("logs/worker-0.log")).expect("worker log");
    let log = String::from_utf8(log).expect("the log is valid UTF-8 whatever the worker printed");
    assert!(
        log.contains("more bytes cut]"),
        "long lines are cut in the log"
    );
    let system = export(&dir, "system");
    let rss: Vec<f64> = system
        .rows
        .iter()
        .filter_map(|r| system.get(r, "harness_rss_bytes"))
        .collect();
    let (low, high) = rss
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(
        high - low < 32.0 * MIB,
        "harness RSS grew from {low} to {high}"
    );
}

/// SIGKILLs the harness and asserts that every recorded process is gone within 2 s.
fn kill_harness_and_expect_no_survivors(mut harness: std::process::Child, recorded: &[i32]) {
    harness.kill().expect("SIGKILL");
    harness.wait().expect("reaped");
    let gone = eventually(Duration::from_secs(2), || {
        recorded.iter().all(|&p| !alive(p))
    });
    let left: Vec<&i32> = recorded.iter().filter(|&&p| alive(p)).collect();
    assert!(gone, "still alive 2 s after the harness died: {left:?}");
}

#[test]
fn sigkill_of_the_harness_leaves_no_worker_and_a_readable_recording() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let fixture = "--trials 1000 --trial-ms 100 --gap-ms 50 --leak-mib 1 --child-leak";
    let harness = fixture_run(&dir, "--workers 2", fixture)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memwarden starts");
    // Both workers and their children are recorded, and trials are running.
    wait_until("both workers and their children are recorded", || {
        let all = seen(&dir);
        all.len() == 2 && all.values().all(|p| p.len() == 2) && open(&dir).trials().len() >= 4
    });
    let recorded: Vec<i32> = seen(&dir).values().flatten().copied().collect();
    // Killed mid-run, with a dozen trials behind it.
    wait_until("a dozen trials are recorded", || {
        open(&dir).trials().len() >= 12
    });
    let killed_wall_ns = memwarden::clock::wall_ns();
    kill_harness_and_expect_no_survivors(harness, &recorded);

    let manifest = memwarden::recording::read_manifest(&dir).expect("manifest reads");
    assert_eq!(
        manifest.status,
        RunStatus::Running,
        "an abrupt end stays visible"
    );
    let system = export(&dir, "system");
    let last_wall = system
        .rows
        .iter()
        .filter_map(|r| system.get(r, "wall_ns"))
        .fold(0.0, f64::max);
    let lost = (killed_wall_ns as f64 - last_wall) / 1e9;
    assert!(lost < 1.0, "the recording ends {lost:.3} s before the kill");
    assert!(export(&dir, "samples").rows.len() > 20);
}

#[test]
fn sigkill_of_the_harness_also_kills_grandchildren_of_a_shell_wrapped_worker() {
    // `sh -c '...; true'` keeps the shell as the worker and runs the fixture as its child: the
    // parent-death signal reaches the shell only, so the guardian must kill the fixture.
    let temp = tempdir();
    let dir = run_dir(&temp);
    let script = format!(
        "{} fixture-worker --trials 1000 --trial-ms 100; true",
        exe()
    );
    let harness = memwarden()
        .args(["run", "--out"])
        .arg(&dir)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memwarden starts");
    wait_until("the shell and its child are both recorded", || {
        seen(&dir).get(&0).is_some_and(|p| p.len() == 2)
    });
    kill_harness_and_expect_no_survivors(harness, &seen(&dir)[&0]);
}

#[test]
fn a_sigterm_ignoring_worker_is_killed_after_the_grace_period() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let started = Instant::now();
    run_fixture(
        &dir,
        "--duration 1s --grace 500ms",
        "--trials 1000 --ignore-sigterm",
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let recording = open(&dir);
    assert_eq!(
        exits(&recording),
        vec![(None, Some(9))],
        "killed by SIGKILL after ignoring SIGTERM"
    );
    assert_eq!(recording.manifest.status, RunStatus::Finished);
}

#[test]
fn sigterm_to_the_harness_stops_workers_and_closes_the_recording() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let mut harness = fixture_run(&dir, "--workers 2", "--trials 1000 --trial-ms 50")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    wait_until("both workers are recorded", || seen(&dir).len() == 2);
    let (main, _) = pids(&dir);
    let harness_pid = nix::unistd::Pid::from_raw(harness.id() as i32);
    nix::sys::signal::kill(harness_pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = harness.wait().expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(main.values().all(|&p| !alive(p)));
    let recording = open(&dir);
    assert_eq!(recording.manifest.status, RunStatus::Finished);
    assert_eq!(exits(&recording), vec![(None, Some(15)); 2]);
}

#[test]
fn attach_records_a_running_process_and_follows_its_log() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let log_path = temp.path().join("worker.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let fixture =
        "fixture-worker --trials 8 --trial-ms 100 --gap-ms 100 --leak-mib 2 --hold-ms 300";
    let mut worker = std::process::Command::new(exe())
        .args(fixture.split_whitespace())
        .stdout(log)
        .spawn()
        .expect("worker starts");
    let out = memwarden()
        .args(["attach", "--interval", "50ms", "--out"])
        .arg(&dir)
        .arg("--log")
        .arg(&log_path)
        .arg(worker.id().to_string())
        .output()
        .expect("attach runs");
    worker.wait().expect("worker reaped");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recording = open(&dir);
    assert_eq!(recording.manifest.mode, "attach");
    assert!(
        recording.trials().len() >= 6,
        "trials from the followed log: {:?}",
        recording.trials()
    );
    let samples = export(&dir, "samples");
    let pid = worker.id() as f64;
    assert!(
        samples
            .rows
            .iter()
            .filter(|r| samples.get(r, "pid") == Some(pid))
            .count()
            > 10
    );
}

#[test]
fn a_crashing_worker_is_a_finding_with_its_signal_recorded() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = fixture_run(
        &dir,
        "",
        "--trials 5 --trial-ms 20 --gap-ms 20 --crash-at 2",
    )
    .output()
    .expect("runs");
    assert_eq!(out.status.code(), Some(1), "a crashed worker is a finding");
    assert!(String::from_utf8_lossy(&out.stderr).contains("worker 0 was killed by signal 6"));
    let recording = open(&dir);
    assert_eq!(
        recording.trials().len(),
        2,
        "trials 0 and 1 ran before the crash"
    );
    assert_eq!(exits(&recording), vec![(None, Some(6))]);
}

#[test]
fn a_command_that_cannot_start_is_one_clear_error() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let run = |argv: &[&str]| {
        memwarden()
            .args(["run", "--out"])
            .arg(&dir)
            .arg("--")
            .args(argv)
            .output()
    };
    let out = run(&["/nonexistent/worker"]).expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("memwarden: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("/nonexistent/worker"), "{stderr}");
    // The attempt is still a readable, finished recording.
    assert_eq!(open(&dir).manifest.status, RunStatus::Finished);
    let again = run(&["true"]).expect("runs");
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing recording is never overwritten"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a recording"));
}

#[test]
fn a_second_stop_signal_skips_the_grace_period() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let mut harness = fixture_run(&dir, "--grace 60s", "--trials 1000 --ignore-sigterm")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    wait_until("the worker is recorded", || seen(&dir).len() == 1);
    let harness_pid = nix::unistd::Pid::from_raw(harness.id() as i32);
    let started = Instant::now();
    nix::sys::signal::kill(harness_pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    // The first stop is under way (the worker ignores SIGTERM) when the second arrives.
    wait_until("the stop is recorded", || {
        open(&dir)
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Stop { .. }))
    });
    nix::sys::signal::kill(harness_pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = harness.wait().expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited out the 60 s grace period"
    );
    assert_eq!(exits(&open(&dir)), vec![(None, Some(9))]);
}

#[test]
fn trials_shorter_than_a_tick_get_one_smaps_snapshot_per_tick() {
    // 150 trials of a few ms each, dozens per 200 ms tick: one snapshot of the maps each way
    // per tick, or analysis counted one mapping's growth once per copy (issue 35's +7 GiB).
    let temp = tempdir();
    let dir = run_dir(&temp);
    run_fixture(
        &dir,
        "--interval 200ms",
        "--trials 150 --trial-ms 2 --gap-ms 2 --leak-mib 1",
    );
    let smaps = export(&dir, "smaps");
    let key = ["t_ns", "worker", "pid", "boundary", "mapping", "start"].map(|c| smaps.column(c));
    let mut seen = std::collections::BTreeSet::new();
    let mut ticks = std::collections::BTreeSet::new();
    for row in &smaps.rows {
        let at: Vec<&str> = key.iter().map(|&c| row[c].as_str()).collect();
        ticks.insert((at[0].to_string(), at[3].to_string()));
        assert!(
            seen.insert(at.clone()),
            "one mapping twice in one tick: {at:?}"
        );
    }
    assert!(
        (2..30).contains(&ticks.len()),
        "{} snapshots for 150 trials of 4 ms: none, or the trials did not share ticks",
        ticks.len()
    );
}
