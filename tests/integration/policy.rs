//! Enforcement: the policy file's errors, the live rules on the fixture worker (small limits,
//! small memory), and `simulate` on the overnight incident.

use crate::overnight;
use crate::util::*;
use memwarden::recording::{Event, EventKind, Recording};
use std::path::Path;
use std::time::Duration;

fn open(dir: &Path) -> Recording {
    Recording::open(dir).expect("recording opens")
}

fn starts(recording: &Recording) -> Vec<(f64, u32)> {
    recording
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::WorkerStart { attempt, .. } => Some((e.t_ns as f64 / 1e9, attempt)),
            _ => None,
        })
        .collect()
}

fn run_policy(dir: &Path, run_args: &str, fixture_args: &str) -> std::process::Output {
    fixture_run(dir, run_args, fixture_args)
        .output()
        .expect("memwarden runs")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sorted(recording: &Recording) -> Vec<&Event> {
    let mut events: Vec<&Event> = recording.events.iter().collect();
    events.sort_by_key(|e| e.t_ns);
    events
}

#[test]
fn a_bad_policy_file_is_one_error_naming_the_line_before_anything_starts() {
    let temp = tempdir();
    let policy = temp.path().join("policy.toml");
    let dir = temp.path().join("run");
    for (text, expected) in [
        (
            "[brake]\nmin_headroom = \"10%\"\nmax_pss = \"1GiB\"\n",
            ":3: unknown field `max_pss`",
        ),
        (
            "[restart]\nmax_worker_pss = \"12 GB/s\"\n",
            ":2: unknown size unit",
        ),
        (
            "[brake]\nmin_headroom = \"5%\"\n[restart]\nemergency_floor = \"8%\"\n",
            ":4: restart.emergency_floor (8%) must be below",
        ),
    ] {
        std::fs::write(&policy, text).expect("policy written");
        let out = memwarden()
            .args(["run", "--out"])
            .arg(&dir)
            .arg("--policy")
            .arg(&policy)
            .args(["--", "true"])
            .output()
            .expect("runs");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("memwarden: error: ")
                && err.contains(&format!("policy.toml{expected}")),
            "{err}"
        );
        assert!(!dir.exists(), "nothing started");
    }
}

#[test]
fn a_worker_is_restarted_when_its_pss_passes_200_mib() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = run_policy(
        &dir,
        "--interval 50ms --duration 5s --max-worker-pss 200MiB",
        "--trials 1000 --trial-ms 100 --gap-ms 100 --leak-mib 40",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let recording = open(&dir);
    let stops: Vec<_> = actions(&recording)
        .into_iter()
        .filter(|a| a.2 == "stop")
        .collect();
    assert!(!stops.is_empty(), "restarted: {}", stderr(&out));
    for (_, worker, _, reason) in &stops {
        assert_eq!(*worker, Some(0));
        assert!(
            reason.starts_with("PSS ") && reason.ends_with("passed the limit of 200.0 MiB"),
            "{reason}"
        );
    }
    let attempts: Vec<u32> = starts(&recording).iter().map(|s| s.1).collect();
    assert_eq!(
        attempts[..2],
        [0, 1],
        "started again after the stop: {attempts:?}"
    );
    // The restart waits for the running trial: at most one trial (40 MiB) past the limit.
    let peak = export(&dir, "samples");
    let pss = peak.column("pss");
    let max = peak
        .rows
        .iter()
        .filter_map(|r| r[pss].parse::<f64>().ok())
        .fold(0.0, f64::max)
        / MIB;
    assert!(max < 200.0 + 40.0 + 25.0, "peak PSS {max:.0} MiB");
    // Each stop comes right after a trial ended, never mid-trial.
    let events = sorted(&recording);
    for (index, e) in events.iter().enumerate() {
        if matches!(&e.kind, EventKind::Policy { action, .. } if action.as_str() == "stop") {
            let before = events[..index].iter().rev().find(|e| {
                matches!(
                    e.kind,
                    EventKind::TrialStart { .. } | EventKind::TrialEnd { .. }
                )
            });
            assert!(
                matches!(before.map(|e| &e.kind), Some(EventKind::TrialEnd { .. })),
                "stop mid-trial"
            );
        }
    }
}

#[test]
fn a_worker_restarted_every_5_trials_restarts_at_a_trial_boundary_and_analysis_stitches() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = run_policy(
        &dir,
        "--interval 50ms --duration 6s --restart-every-trials 5",
        "--trials 1000 --trial-ms 60 --gap-ms 60 --leak-mib 4",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let recording = open(&dir);
    let attempts = starts(&recording);
    assert!(attempts.len() >= 3, "several restarts: {attempts:?}");
    // Between one start and the stop that ends it: exactly 5 completed trials.
    let mut ended = 0;
    for e in sorted(&recording) {
        match &e.kind {
            EventKind::TrialEnd { .. } => ended += 1,
            EventKind::Policy { action, reason, .. } if action.as_str() == "stop" => {
                assert_eq!(ended, 5, "stopped after {ended} trials");
                assert_eq!(reason, "it completed 5 trials");
            }
            EventKind::WorkerStart { .. } => ended = 0,
            _ => {}
        }
    }
    // The analysis joins the attempts: each trial still retains 4 MiB.
    let analysis = memwarden()
        .arg("analyze")
        .arg(&dir)
        .arg("--json")
        .output()
        .expect("analyze");
    let findings: serde_json::Value = serde_json::from_slice(&analysis.stdout).expect("json");
    let worker = &findings["workers"][0];
    assert_eq!(worker["verdict"], "leak", "{worker}");
    let kind = worker["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .find(|k| k["kind"] == worker["kind"])
        .expect("the headline kind");
    let rate = kind["per_trial"]["bytes"].as_f64().expect("a rate") / MIB;
    assert!(
        (rate - 4.0).abs() < 1.4,
        "{rate:.2} MiB per trial across restarts"
    );
}

#[test]
fn a_crash_loop_is_backed_off_then_given_up_and_the_run_is_degraded() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let policy = temp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[restart]\nmax_crashes = 3\nbackoff = \"200ms\"\nbackoff_max = \"400ms\"\n",
    )
    .expect("written");
    let out = run_policy(
        &dir,
        &format!(
            "--interval 50ms --duration 20s --policy {}",
            policy.display()
        ),
        "--trials 5 --crash-at 0",
    );
    assert_eq!(out.status.code(), Some(1), "degraded: {}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("memwarden: degraded: worker 0: it crashed 4 times in a row: it stays down"),
        "{}",
        stderr(&out)
    );
    let recording = open(&dir);
    let policy_actions: Vec<String> = actions(&recording).into_iter().map(|a| a.2).collect();
    assert_eq!(
        policy_actions,
        ["start", "back_off", "restart", "back_off", "restart", "back_off", "restart", "give_up"]
    );
    // The run ended by itself (all workers down), long before --duration.
    assert_eq!(
        recording.manifest.end_reason.as_deref(),
        Some("all workers exited; degraded: worker 0: it crashed 4 times in a row: it stays down")
    );
    // The report tells the story of the enforcement.
    let report_dir = temp.path().join("report");
    let out = memwarden()
        .arg("report")
        .arg(&dir)
        .arg("--out")
        .arg(&report_dir)
        .output()
        .expect("report runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let report = std::fs::read_to_string(report_dir.join("report.md")).expect("report");
    assert!(report.contains("## Enforcement"), "{report}");
    assert!(
        report.contains("3 crash back-off(s); 1 worker(s) given up"),
        "{report}"
    );
    assert!(
        report.contains("worker 0 policy give up: it crashed 4 times in a row"),
        "{report}"
    );
    // Each back-off lasts at least what it said: 200, 400, 400 ms.
    let events = sorted(&recording);
    let exits: Vec<u64> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::WorkerExit { .. }))
        .map(|e| e.t_ns)
        .collect();
    let restarts: Vec<u64> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::WorkerStart { attempt, .. } if attempt > 0))
        .map(|e| e.t_ns)
        .collect();
    for ((exit, start), wait_ms) in exits.iter().zip(&restarts).zip([200, 400, 400]) {
        let gap_ms = (start - exit) / 1_000_000;
        assert!(
            gap_ms >= wait_ms - 20 && gap_ms < wait_ms + 1000,
            "gap {gap_ms} ms for {wait_ms}"
        );
    }
}

#[test]
fn a_worker_ignoring_sigterm_is_killed_after_its_grace_period() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = run_policy(
        &dir,
        "--interval 50ms --duration 4s --grace 600ms --restart-every-trials 3",
        "--trials 1000 --trial-ms 50 --gap-ms 20 --ignore-sigterm",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let recording = open(&dir);
    let events = sorted(&recording);
    let stop = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Policy { action, .. } if action.as_str() == "stop"))
        .expect("a stop");
    let exit = events
        .iter()
        .find(|e| e.t_ns > stop.t_ns && matches!(e.kind, EventKind::WorkerExit { .. }))
        .expect("an exit");
    assert!(
        matches!(
            exit.kind,
            EventKind::WorkerExit {
                signal: Some(9),
                ..
            }
        ),
        "SIGKILL: {:?}",
        exit.kind
    );
    let waited = Duration::from_nanos(exit.t_ns - stop.t_ns);
    assert!(
        waited >= Duration::from_millis(580) && waited < Duration::from_millis(2000),
        "killed after {waited:?}"
    );
    assert!(
        starts(&recording).iter().any(|s| s.1 == 1),
        "and started again"
    );
}

#[test]
fn the_brake_holds_a_cooperative_worker_at_the_gate_and_escalation_restarts_it() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let policy = temp.path().join("policy.toml");
    // A budget stands in for a full machine: the brake engages when the worker holds 200 MiB.
    std::fs::write(&policy, "budget = \"400MiB\"\n[brake]\nmin_headroom = \"200MiB\"\nwait = \"100ms\"\n[restart]\nemergency_floor = \"10MiB\"\n").expect("written");
    let out = run_policy(
        &dir,
        &format!(
            "--interval 50ms --duration 8s --policy {}",
            policy.display()
        ),
        "--trials 1000 --trial-ms 50 --gap-ms 50 --leak-mib 30 --gate",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let recording = open(&dir);
    let list = actions(&recording);
    let names: Vec<&str> = list.iter().map(|a| a.2.as_str()).collect();
    let on = names
        .iter()
        .position(|&n| n == "brake_on")
        .expect("the brake engaged");
    let stop = names
        .iter()
        .position(|&n| n == "stop")
        .expect("escalation restarted the worker");
    assert_eq!(
        names[on + 1..stop]
            .iter()
            .filter(|&&n| n == "refuse")
            .count(),
        10,
        "{names:?}"
    );
    assert!(
        !names.contains(&"pause"),
        "a cooperative worker is never paused"
    );
    assert!(
        list[stop].3.starts_with(
            "escalation: the brake refused 10 trials in a row; worker 0 holds the most memory"
        ),
        "{}",
        list[stop].3
    );
    assert!(
        names[stop..].contains(&"restart") && names[stop..].contains(&"brake_off"),
        "{names:?}"
    );
    let log = std::fs::read_to_string(dir.join("logs/worker-0.log")).expect("log");
    assert!(
        log.contains("memwarden says wait 0.1s"),
        "the worker heard the answer"
    );
}

#[test]
fn the_brake_pauses_a_non_cooperative_worker_and_time_escalates() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let policy = temp.path().join("policy.toml");
    std::fs::write(&policy, "budget = \"400MiB\"\n[brake]\nmin_headroom = \"200MiB\"\n[escalation]\nafter = \"1s\"\n[restart]\nemergency_floor = \"10MiB\"\n").expect("written");
    let out = run_policy(
        &dir,
        &format!(
            "--interval 50ms --duration 6s --policy {}",
            policy.display()
        ),
        "--trials 1000 --trial-ms 50 --gap-ms 50 --leak-mib 30",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list = actions(&open(&dir));
    let pause = list
        .iter()
        .position(|a| a.2 == "pause")
        .expect("paused between trials");
    let stop = list.iter().position(|a| a.2 == "stop").expect("escalated");
    assert!(pause < stop);
    assert!(
        list[stop]
            .3
            .starts_with("escalation: the brake has been on for 1s"),
        "{}",
        list[stop].3
    );
    // Paused means no trial ran between the pause and the stop.
    let recording = open(&dir);
    let (paused_at, stopped_at) = (list[pause].0, list[stop].0);
    let ran = recording.events.iter().any(|e| {
        let t = e.t_ns as f64 / 1e9;
        t > paused_at && t < stopped_at && matches!(e.kind, EventKind::TrialStart { .. })
    });
    assert!(!ran, "a trial started while paused");
    // A paused worker hears SIGTERM at once (memwarden sends SIGCONT with it), so the restart
    // does not wait for the grace period's SIGKILL.
    let restarted = starts(&recording)
        .into_iter()
        .find(|s| s.1 == 1)
        .expect("started again");
    assert!(
        restarted.0 - stopped_at < 2.0,
        "restarted {:.1} s after the stop",
        restarted.0 - stopped_at
    );
}

#[test]
fn workers_get_a_raised_oom_score_and_the_harness_a_lowered_one() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let mut harness = fixture_run(
        &dir,
        "--interval 50ms --duration 20s",
        "--trials 1000 --trial-ms 100",
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("starts");
    wait_until("the worker is seen", || {
        seen(&dir).get(&0).is_some_and(|p| !p.is_empty())
    });
    let worker = seen(&dir)[&0][0];
    let score = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap_or_default()
    };
    let worker_score = score(worker as u32);
    let harness_score = score(harness.id());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(harness.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = harness.wait();
    assert_eq!(worker_score.trim(), "500");
    let refused = open(&dir).events.iter().any(|e| {
        matches!(&e.kind, EventKind::Note { message } if message.starts_with("cannot lower memwarden's own oom_score_adj"))
    });
    // Without CAP_SYS_RESOURCE memwarden cannot lower its own score: the run goes on, and
    // the note it wrote says so (checked above); with it, the score is lowered.
    if !refused {
        assert_eq!(harness_score.trim(), "-900");
    }
}

/// Per-worker cgroups turned off in the policy (or impossible here): `memory_max` becomes a PSS
/// restart limit, said in one line, and the worker over it is restarted.
#[test]
fn memory_max_without_per_worker_cgroups_is_enforced_by_sampling_and_says_why() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let policy = temp.path().join("policy.toml");
    std::fs::write(&policy, "[containment]\nworker_cgroups = false\n").expect("written");
    let out = run_policy(
        &dir,
        &format!(
            "--interval 50ms --duration 4s --memory-max 120MiB --policy {}",
            policy.display()
        ),
        "--trials 1000 --trial-ms 50 --gap-ms 50 --leak-mib 30",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no per-worker cgroups: containment.worker_cgroups is false; each worker's memory is read process by process, and memory_max is enforced by sampling instead (restart over 120.0 MiB PSS)"),
        "{}",
        stderr(&out)
    );
    let stops = actions(&open(&dir))
        .into_iter()
        .filter(|a| a.2 == "stop")
        .count();
    assert!(stops >= 1, "restarted at the limit");
}

#[test]
fn the_systemd_watchdog_is_fed_while_sampling_runs() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let socket_path = temp.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut harness = fixture_run(
        &dir,
        "--interval 50ms --duration 20s",
        "--trials 1000 --trial-ms 100",
    )
    .env("NOTIFY_SOCKET", &socket_path)
    .env("WATCHDOG_USEC", "400000")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("starts");
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    while received
        .iter()
        .filter(|m: &&String| m.as_str() == "WATCHDOG=1")
        .count()
        < 3
    {
        let Ok(n) = socket.recv(&mut buf) else { break };
        received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(harness.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = harness.wait();
    assert_eq!(
        received.first().map(String::as_str),
        Some("READY=1"),
        "{received:?}"
    );
    assert!(
        received
            .iter()
            .filter(|m| m.as_str() == "WATCHDOG=1")
            .count()
            >= 3,
        "{received:?}"
    );
}

#[test]
fn systemd_unit_prints_a_watchdog_unit_for_a_valid_command_only() {
    let out = memwarden()
        .args([
            "systemd-unit",
            "run",
            "--policy",
            "/etc/memwarden/policy.toml",
            "--",
            "python",
            "search.py",
        ])
        .output()
        .expect("runs");
    let unit = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        unit.contains("Type=notify\n")
            && unit.contains("Restart=always\n")
            && unit.contains("WatchdogSec=30s\n"),
        "{unit}"
    );
    assert!(
        unit.contains(" run --policy /etc/memwarden/policy.toml -- python search.py\n"),
        "{unit}"
    );
    let bad = memwarden()
        .args(["systemd-unit", "rnu", "--", "python"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("not a memwarden command"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn simulating_the_overnight_incident_restarts_the_larger_worker_the_brake_held() {
    let temp = tempdir();
    let run = temp.path().join("overnight");
    overnight::write(&run);
    if std::env::var_os("MEMWARDEN_UPDATE_REPORTS").is_some() {
        let kept = Path::new("fixtures/runs/overnight");
        let _ = std::fs::remove_dir_all(kept);
        overnight::write(kept);
    }
    // As it happened: no policy acted; memory ran down to 6% and the brake refused hundreds.
    let recording = open(&run);
    assert!(recording
        .events
        .iter()
        .all(|e| !matches!(e.kind, EventKind::Policy { .. })));
    let refused: usize = (0..2)
        .map(|w| std::fs::read_to_string(run.join(format!("logs/worker-{w}.log"))).expect("log"))
        .map(|log| log.matches("emergency brake").count())
        .sum();
    assert!(refused > 400, "{refused} refusals");
    let report_dir = temp.path().join("report");
    let out = memwarden()
        .arg("simulate")
        .arg(&run)
        .arg("--json")
        .arg("--report")
        .arg(&report_dir)
        .output()
        .expect("simulate runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let first_stop = json["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["action"] == "stop")
        .expect("a restart");
    assert_eq!(first_stop["worker"], 1, "worker 1 holds more: {first_stop}");
    let reason = first_stop["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with(
            "escalation: the brake refused 11 trials in a row; worker 1 holds the most memory"
        ) && reason.contains("restarted while held by the brake"),
        "{reason}"
    );
    let min_recorded = json["min_available_bytes"]["recorded"]
        .as_f64()
        .expect("recorded");
    let min_simulated = json["min_available_bytes"]["simulated"]
        .as_f64()
        .expect("simulated");
    assert!(
        min_recorded / (31.0 * 1024.0 * MIB) < 0.065,
        "94% used as recorded"
    );
    assert!(
        min_simulated > min_recorded,
        "never as low as recorded: {min_simulated}"
    );
    let end_simulated = json["end_available_bytes"]["simulated"]
        .as_f64()
        .expect("end");
    assert!(
        end_simulated > 8.0 * 1024.0 * MIB,
        "the restarts freed memory: {end_simulated}"
    );
    let report = std::fs::read_to_string(report_dir.join("report.md")).expect("report");
    assert!(report.contains("## Policy simulation"), "{report}");
    assert!(report.contains("worker 1 **simulated** policy stop: escalation\\: the brake refused 11 trials in a row; worker 1 holds the most memory"), "{report}");
    assert!(
        report.contains("**1** worker restart(s), **1** of them by escalation"),
        "{report}"
    );

    // Without escalation, the same policy only refuses: what the in-worker brake did that night,
    // and memory ends as low as it did.
    let policy = temp.path().join("no-escalation.toml");
    std::fs::write(&policy, "[escalation]\nafter_brakes = 1000000\nafter = \"24h\"\n[restart]\nemergency_floor = \"1%\"\n").expect("written");
    let out = memwarden()
        .arg("simulate")
        .arg(&run)
        .arg("--json")
        .arg("--policy")
        .arg(&policy)
        .output()
        .expect("runs");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        json["counters"]["brakes"].as_u64().expect("brakes") >= 10,
        "{}",
        json["counters"]
    );
    assert_eq!(json["counters"]["escalations"], 0);
    assert_eq!(
        json["end_available_bytes"]["simulated"],
        json["end_available_bytes"]["recorded"]
    );
    assert!(json["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .all(|a| a["action"] != "stop"));
}

/// `reports/overnight-simulation`: the report of `simulate` on the overnight incident.
#[test]
fn example_reports_overnight_simulation_is_fresh() {
    let temp = tempdir();
    let out = memwarden()
        .args([
            "simulate",
            "fixtures/runs/overnight",
            "--no-host",
            "--report",
        ])
        .arg(temp.path())
        .output()
        .expect("simulate runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let update = std::env::var_os("MEMWARDEN_UPDATE_REPORTS").is_some();
    keep_fresh(
        temp.path(),
        Path::new("reports/overnight-simulation"),
        update,
    );
}

/// `(t_s, worker, attempt)` of the worker starts.
fn starts_by_worker(recording: &Recording) -> Vec<(f64, u32, u32)> {
    sorted(recording)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::WorkerStart { attempt, .. } => {
                Some((e.t_ns as f64 / 1e9, e.worker?, attempt))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn staggered_workers_start_one_interval_apart() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = fixture_run(
        &dir,
        "--workers 3 --interval 50ms --stagger 700ms",
        "--trials 3 --trial-ms 50 --gap-ms 50",
    )
    .output()
    .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let starts = starts_by_worker(&open(&dir));
    let workers: Vec<u32> = starts.iter().map(|s| s.1).collect();
    assert_eq!(workers, [0, 1, 2]);
    // Starts are stamped by the tick that sees them: 700 ms apart, give or take an interval.
    for pair in starts.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!((0.65..1.2).contains(&gap), "{gap:.2} s between starts");
    }
}

#[test]
fn a_canary_starts_alone_and_the_others_follow_its_third_trial() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = fixture_run(
        &dir,
        "--workers 3 --interval 50ms --canary-trials 3",
        "--trials 5 --trial-ms 80 --gap-ms 80",
    )
    .output()
    .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let recording = open(&dir);
    let third_end = sorted(&recording)
        .into_iter()
        .filter(|e| e.worker == Some(0) && matches!(e.kind, EventKind::TrialEnd { .. }))
        .nth(2)
        .map(|e| e.t_ns as f64 / 1e9)
        .expect("the canary's third trial ended");
    let starts = starts_by_worker(&recording);
    assert_eq!(starts[0].1, 0, "the canary first");
    for (t, worker, _) in &starts[1..] {
        assert!(*t >= third_end, "worker {worker} started at {t:.2} s, before the canary's third trial ended at {third_end:.2} s");
    }
    assert_eq!(starts.len(), 3, "the others fit and start");
}

/// `fixtures/runs/stalled-brake`: issue 29's run as the old engine recorded it (4 workers keeping
/// 8 MiB a trial in a 1.5 GiB cgroup, a trial's end and the next start printed together). Its
/// brake paused every worker just after a start line and the restart escalation asked for
/// waited on trials that could never end. `analyze` and the report call it stalled; `simulate`
/// shows the stall as recorded and the restart the engine now takes, within the bound.
#[test]
fn a_stalled_brake_is_called_so_and_simulate_shows_the_restart_that_breaks_it() {
    let run = Path::new("fixtures/runs/stalled-brake");
    let findings = analyze(run);
    let containment = findings.containment.expect("the brake engaged");
    assert!(containment.stalled, "{containment:?}");
    assert_eq!((containment.escalations, containment.restarts), (0, 0));
    assert!(
        containment.longest_without_trial_s > 50.0,
        "{containment:?}"
    );
    assert_eq!(containment.paused_s.len(), 4, "{containment:?}");
    let temp = tempdir();
    let markdown = report(run, &temp.path().join("report"), &[]);
    assert!(markdown.contains("**Containment stalled**: for 55s no trial completed, longer than escalation.after + restart.grace (40s)"), "{markdown}");
    assert!(
        markdown.contains("| trials/min before the first brake | trials/min after |"),
        "{markdown}"
    );

    let out = memwarden()
        .args(["simulate", "fixtures/runs/stalled-brake"])
        .output()
        .expect("simulate runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "Recorded: STALLED: that is longer than escalation.after + restart.grace (40s)"
        ),
        "{text}"
    );
    let stop = text
        .lines()
        .find(|l| l.contains(" stop: escalation: "))
        .expect("a simulated restart");
    assert!(
        stop.contains("restarted while held by the brake; trial "),
        "{stop}"
    );
    // Within escalation.after + restart.grace of the brake at +5s.
    let at: f64 = stop
        .trim_start()
        .trim_start_matches('+')
        .split('s')
        .next()
        .unwrap_or("")
        .parse()
        .expect("seconds");
    assert!(at <= 45.0, "{stop}");
    assert!(
        !text.contains("back_off"),
        "the run's own stop is no crash: {text}"
    );
}
