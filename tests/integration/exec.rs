//! Workers that exec after their start, as Python workers are usually started: `sh -c '...;
//! exec python ...'`, a pyenv shim, a launch script that execs another. An exec keeps the pid
//! but replaces the address space; what memwarden read of a process must follow it (issue 12).

use crate::util::*;
use memwarden::probe::{ProcRoot, ProcessHandle};
use memwarden::recording::{EventKind, Recording};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const LEAK: &str = "--trials 10 --trial-ms 150 --gap-ms 300 --leak-mib 8";

/// `memwarden run --out DIR RUN_ARGS -- WRAPPER... memwarden fixture-worker FIXTURE_ARGS`.
fn run_wrapped(dir: &Path, run_args: &str, wrapper: &[String], fixture_args: &str) -> Output {
    memwarden()
        .arg("run")
        .arg("--out")
        .arg(dir)
        .args(run_args.split_whitespace())
        .arg("--")
        .args(wrapper)
        .arg(exe())
        .arg("fixture-worker")
        .args(fixture_args.split_whitespace())
        .output()
        .expect("memwarden runs")
}

/// `sh -c 'sleep 0.3; exec "$0" "$@"'`: the shape of `sh -c 'cd ... && exec python train.py'`.
fn sh_exec() -> Vec<String> {
    ["sh", "-c", "sleep 0.3; exec \"$0\" \"$@\""]
        .map(String::from)
        .to_vec()
}

/// `sh outer.sh`, which execs `sh inner.sh`, which execs the worker: two execs, the first of
/// them of the same binary under the same name (status shows no change of program).
fn two_step_wrapper(temp: &Path) -> Vec<String> {
    let inner = temp.join("inner.sh");
    std::fs::write(&inner, "sleep 0.2\nexec \"$@\"\n").expect("inner script");
    let outer = temp.join("outer.sh");
    std::fs::write(
        &outer,
        format!("sleep 0.2\nexec sh {} \"$@\"\n", inner.display()),
    )
    .expect("outer script");
    vec!["sh".into(), outer.display().to_string()]
}

/// The main pid's exec events: (t_ns, command).
fn execs(dir: &Path) -> Vec<(u64, String)> {
    let recording = Recording::open(dir).expect("recording opens");
    let (main, _) = pids(dir);
    recording
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Exec { pid, command, .. } if *pid == main[&0] => {
                Some((e.t_ns, command.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Of the main process's samples after `after_ns`: how many there are, and how many have PSS
/// and USS.
fn reads_after(dir: &Path, after_ns: u64) -> (usize, usize, usize) {
    let (main, _) = pids(dir);
    let samples = export(dir, "samples");
    let rows: Vec<_> = samples
        .rows
        .iter()
        .filter(|r| samples.get(r, "pid") == Some(main[&0] as f64))
        .filter(|r| samples.get(r, "t_ns").is_some_and(|t| t >= after_ns as f64))
        .collect();
    let with = |column: &str| {
        rows.iter()
            .filter(|r| samples.get(r, column).is_some())
            .count()
    };
    (rows.len(), with("pss"), with("uss"))
}

/// The recording of a wrapped worker leaking 8 MiB per trial: PSS and USS are read after the
/// last exec and show the leak, the recorded command is the worker's, and the run ends with its
/// sampler-health line.
fn assert_followed_through(dir: &Path, out: &Output, expected_execs: usize) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let execs = execs(dir);
    assert_eq!(execs.len(), expected_execs, "exec events: {execs:?}");
    let (last_exec_ns, command) = execs.last().expect("an exec");
    assert!(
        command.contains("fixture-worker") && !command.starts_with("sh"),
        "{command}"
    );
    let (samples, pss, uss) = reads_after(dir, *last_exec_ns);
    assert!(samples >= 50, "{samples} samples after the exec");
    for (name, read) in [("pss", pss), ("uss", uss)] {
        assert!(
            read * 10 >= samples * 8,
            "{name} read on {read} of {samples} ticks after the exec"
        );
    }
    let (main, _) = pids(dir);
    for column in ["pss", "uss"] {
        let retained = retained_per_trial(dir, 0, main[&0], column);
        assert!(retained.len() >= 9, "{column}: {retained:?}");
        let growth = slope(&retained) / MIB;
        assert!(
            (growth - 8.0).abs() <= 0.8,
            "{column}: {growth:.2} MiB per trial, expected 8 ± 10%"
        );
    }
    // Analysis names the program the wrapper became.
    let analysis = memwarden()
        .args(["analyze", "--json"])
        .arg(dir)
        .output()
        .expect("analyze runs");
    let findings: serde_json::Value =
        serde_json::from_slice(&analysis.stdout).expect("findings JSON");
    let process = &findings["workers"][0]["process"];
    let shown = process["command"].as_str().unwrap_or_default();
    assert!(
        shown.contains("fixture-worker") && !shown.starts_with("sh"),
        "{process}"
    );
    let health = &findings["sampler_health"][0];
    assert!(
        health["fresh_ticks"].as_u64() >= Some(health["ticks"].as_u64().unwrap_or(0) * 8 / 10),
        "{health}"
    );
    assert!(
        stderr.contains("memwarden: sampler health: worker 0: fresh PSS on "),
        "{stderr}"
    );
    // The report's timeline says what the wrapper became, and its appendix the sampler health.
    let report = memwarden()
        .arg("report")
        .arg(dir)
        .output()
        .expect("report runs");
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let text = std::fs::read_to_string(dir.join("report/report.md")).expect("report written");
    let became = text
        .lines()
        .filter(|l| l.contains("worker 0 (pid ") && l.contains(") became "))
        .collect::<Vec<_>>();
    assert_eq!(became.len(), expected_execs, "{text}");
    assert!(
        became[expected_execs - 1].contains("fixture-worker"),
        "{became:?}"
    );
    assert!(
        text.contains("| worker | ticks | PSS read | PSS fresh | stale |"),
        "{text}"
    );
}

#[test]
fn a_worker_started_through_sh_c_exec_keeps_its_pss_and_uss() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = run_wrapped(&dir, "--interval 50ms --rollup-cpu 25", &sh_exec(), LEAK);
    assert_followed_through(&dir, &out, 1);
}

#[test]
fn a_worker_started_through_a_two_step_wrapper_keeps_its_pss_and_uss() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = run_wrapped(
        &dir,
        "--interval 50ms --rollup-cpu 25",
        &two_step_wrapper(temp.path()),
        LEAK,
    );
    assert_followed_through(&dir, &out, 2);
}

#[test]
fn max_worker_pss_restarts_a_wrapped_worker_at_its_limit() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = run_wrapped(
        &dir,
        "--interval 50ms --duration 6s --max-worker-pss 200MiB",
        &sh_exec(),
        "--trials 1000 --trial-ms 100 --gap-ms 100 --leak-mib 40",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let recording = Recording::open(&dir).expect("recording opens");
    let stops: Vec<String> = recording
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Policy { action, reason, .. } if action.as_str() == "stop" => {
                Some(reason.clone())
            }
            _ => None,
        })
        .collect();
    assert!(!stops.is_empty(), "never restarted: {stderr}");
    for reason in &stops {
        // 200 MiB plus at most the trial running when it passed (40 MiB) and one more read.
        let pss_mib: f64 = reason
            .strip_prefix("PSS ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{reason}"));
        assert!(
            reason.ends_with("passed the limit of 200.0 MiB") && pss_mib < 200.0 + 40.0 + 25.0,
            "{reason}"
        );
    }
}

#[test]
fn soaks_live_trend_shows_a_wrapped_workers_growth() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = memwarden()
        .arg("soak")
        .arg("--out")
        .arg(&dir)
        .args(["--workers", "1", "--interval", "50ms", "--duration", "6s"])
        .arg("--")
        .args(sh_exec())
        .arg(exe())
        .arg("fixture-worker")
        .args("--trials 1000 --trial-ms 60 --gap-ms 60 --leak-mib 4".split_whitespace())
        .stdin(Stdio::null())
        .output()
        .expect("soak runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the leak fails the soak: {stderr}"
    );
    let line = stderr
        .lines()
        .rfind(|l| {
            l.starts_with("memwarden: soak:") && l.contains("worker 0  ") && l.contains(" trend ")
        })
        .unwrap_or_else(|| panic!("no worker line: {stderr}"));
    let trend: f64 = line
        .split_once("trend ")
        .and_then(|(_, rest)| rest.split_once(" MiB/trial"))
        .and_then(|(rate, _)| rate.parse().ok())
        .unwrap_or_else(|| panic!("no trend: {line}"));
    assert!(
        (trend - 4.0).abs() <= 0.4,
        "trend {trend} MiB/trial: {line}"
    );
    // Its PSS is read after the exec, not RSS standing in for a stale one (`PSS~`).
    assert!(line.contains("  PSS ") && !line.contains("PSS~"), "{line}");
}

/// The probe on real processes: an exec is seen whether or not status shows another program,
/// and a process that renames itself has not exec'd.
#[test]
fn the_probe_tells_an_exec_from_a_rename() {
    let root = ProcRoot::default();
    let spawn = |script: &str| {
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh starts")
    };
    // Spawning returns once the exec has begun, before the new program's text is mapped: wait
    // until it waits for its input, its exec done.
    let waiting = |pid: u32| {
        wait_until("the program waits for input", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('S'))
            })
        })
    };
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cmdline = |pid: u32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();

    // sh becomes sleep: the name changes.
    let mut child = spawn("read line; exec sleep 30");
    waiting(child.id());
    let mut handle = ProcessHandle::try_open(&root, child.id() as i32).expect("opens");
    assert!(handle.try_rollup().is_some());
    assert!(handle.try_cheap(true).is_some());
    assert!(!handle.try_detect_exec(true), "no exec yet");
    drop(child.stdin.take());
    wait_until("the exec", || comm(child.id()).trim() == "sleep");
    assert!(handle.try_cheap(true).is_some());
    assert!(handle.try_detect_exec(false), "hinted by the new name");
    assert_eq!(handle.command, "sleep 30");
    assert!(handle.try_rollup().is_some(), "PSS after the exec");
    assert!(!handle.try_detect_exec(true), "the same program since");
    let _ = child.kill();
    let _ = child.wait();

    // sh becomes sh: nothing in status changes, only a thorough look sees it.
    let mut child = spawn("read line; exec sh -c 'sleep 30; true'");
    let pid = child.id();
    waiting(pid);
    let mut handle = ProcessHandle::try_open(&root, pid as i32).expect("opens");
    assert!(handle.try_cheap(true).is_some());
    let before = cmdline(pid);
    drop(child.stdin.take());
    // Done with the exec once the new shell has forked its `sleep` (status read in the middle of
    // an exec shows a program without text, which rightly hints at the exec).
    let children = format!("/proc/{pid}/task/{pid}/children");
    wait_until("the exec", || {
        cmdline(pid) != before
            && !std::fs::read_to_string(&children)
                .unwrap_or_default()
                .trim()
                .is_empty()
    });
    assert!(handle.try_cheap(true).is_some());
    assert!(
        !handle.try_detect_exec(false),
        "status shows the same program"
    );
    assert!(handle.try_detect_exec(true));
    assert!(
        handle.command.contains("sleep 30; true"),
        "{}",
        handle.command
    );
    let _ = child.kill();
    let _ = child.wait();

    // A process that renames itself (prctl PR_SET_NAME, as setproctitle does) keeps its program.
    // The interpreter itself, not `python3`: that may be a shim that execs (pyenv's is).
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    let python = String::from_utf8_lossy(&python.stdout).trim().to_string();
    let mut child = Command::new(&python)
        .args([
            "-c",
            "import ctypes, sys; sys.stdin.readline(); ctypes.CDLL(None).prctl(15, b'renamed', 0, 0, 0); sys.stdin.read()",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let pid = child.id();
    waiting(pid);
    let mut handle = ProcessHandle::try_open(&root, pid as i32).expect("opens");
    assert!(handle.try_cheap(true).is_some());
    let mut stdin = child.stdin.take().expect("piped");
    std::io::Write::write_all(&mut stdin, b"rename\n").expect("python reads");
    wait_until("the rename", || comm(pid).trim() == "renamed");
    assert!(handle.try_cheap(true).is_some());
    assert!(!handle.try_detect_exec(false), "a rename is no exec");
    assert!(handle.try_rollup().is_some());
    drop(stdin);
    let _ = child.wait_timeout_or_kill(Duration::from_secs(5));
}

trait WaitOrKill {
    fn wait_timeout_or_kill(&mut self, after: Duration) -> Option<std::process::ExitStatus>;
}

impl WaitOrKill for std::process::Child {
    /// Waits for the child's own exit, killing it if it takes longer than `after`.
    fn wait_timeout_or_kill(&mut self, after: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        if eventually(after, || {
            status = self.try_wait().ok().flatten();
            status.is_some()
        }) {
            return status;
        }
        let _ = self.kill();
        self.wait().ok()
    }
}
