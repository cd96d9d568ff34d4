//! memwarden inside a limit and a container: the cgroup limit that applies, OOM kills counted
//! from the cgroup's counters, orphans kept and reaped, memory outside every tree, and the
//! examples under `contrib/`.

use crate::util::*;
use std::time::{Duration, Instant};

/// The states of memwarden's children, read from outside (the test is memwarden's parent).
fn children_states(pid: u32) -> Vec<(i32, char)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .filter_map(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some((child, state))
        })
        .collect()
}

/// A worker's shell starts a daemon (`setsid`, a session of its own) and a short-lived
/// subshell, then exits before memwarden has seen either; both are reparented to memwarden.
/// The daemon stays attributed to the worker and is stopped with it at the run's end; the
/// subshell's exit leaves no zombie behind.
#[test]
fn a_child_that_outlives_its_parent_stays_with_its_worker_and_leaves_no_zombie() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let worker = format!(
        "sh -c 'setsid sleep 20 & (sleep 0.3) & exit 0'; exec {} fixture-worker --trials 16 --trial-ms 100 --gap-ms 50",
        exe()
    );
    let child = memwarden()
        .arg("run")
        .arg("--out")
        .arg(&dir)
        .args(["--", "sh", "-c", &worker])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("memwarden starts");
    let started = Instant::now();
    let mut zombies = Vec::new();
    let mut looked = 0;
    while started.elapsed() < Duration::from_millis(2000) {
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() < Duration::from_millis(900) {
            continue; // the subshell ends at 0.3 s and is reaped within 0.2 s after
        }
        looked += 1;
        zombies.extend(
            children_states(child.id())
                .into_iter()
                .filter(|(_, state)| *state == 'Z'),
        );
    }
    let out = child.wait_with_output().expect("memwarden ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(looked > 5, "looked {looked} times");
    let recording = memwarden::recording::Recording::open(&dir).expect("recording");
    let daemon = recording.events.iter().find_map(|e| match &e.kind {
        memwarden::recording::EventKind::ProcessSeen { pid, command, .. }
            if command == "sleep 20" =>
        {
            Some((e.worker, *pid))
        }
        _ => None,
    });
    let Some((worker, pid)) = daemon else {
        panic!("the daemon was never attributed: {:#?}", recording.events);
    };
    let still = alive(pid);
    if still {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
    assert_eq!(worker, Some(0));
    assert!(!still, "the daemon {pid} outlived its worker's run");
    assert!(zombies.is_empty(), "zombies under memwarden: {zombies:?}");
    assert!(
        recording.events.iter().any(|e| matches!(&e.kind,
            memwarden::recording::EventKind::Note { message }
                if message.starts_with(&format!("pid {pid} (sleep) outlived its parent"))
                    && message.contains("it stays with worker 0"))),
        "no note on the orphan"
    );
}

/// As the PID 1 of a container (here a new PID namespace), memwarden says so, passes SIGTERM on
/// to its workers and ends cleanly: no `tini` in front of it is needed.
#[test]
fn as_pid_1_it_passes_sigterm_on_to_the_workers() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let unshare = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(exe())
        .args(["run", "--grace", "10s", "--out"])
        .arg(&dir)
        .args([
            "--",
            &exe(),
            "fixture-worker",
            "--trials",
            "2000",
            "--trial-ms",
            "100",
            "--gap-ms",
            "50",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(unshare) = unshare else {
        eprintln!("skipped: unshare cannot be run here");
        return;
    };
    // memwarden is unshare's only child, PID 1 inside the namespace.
    let mut harness = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !dir.join("manifest.json").exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some((pid, _)) = children_states(unshare.id()).first() {
        harness = Some(*pid);
    }
    let Some(harness) = harness.filter(|_| dir.join("manifest.json").exists()) else {
        let out = unshare.wait_with_output().expect("unshare ends");
        eprintln!(
            "skipped: no PID namespace here ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    };
    std::thread::sleep(Duration::from_millis(800));
    let asked = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(harness),
        nix::sys::signal::SIGTERM,
    )
    .expect("SIGTERM sent");
    let out = unshare.wait_with_output().expect("unshare ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "it waited for the grace period: {stderr}"
    );
    assert!(stderr.contains("memwarden runs as PID 1"), "{stderr}");
    let recording = memwarden::recording::Recording::open(&dir).expect("recording");
    assert_eq!(
        recording.manifest.end_reason.as_deref(),
        Some("stop requested (signal)")
    );
    let exit = recording.events.iter().find_map(|e| match e.kind {
        memwarden::recording::EventKind::WorkerExit { signal, .. } => Some(signal),
        _ => None,
    });
    assert_eq!(exit, Some(Some(15)), "the worker got SIGTERM");
}
