//! The live view of `run` on a terminal (a pseudo-terminal here), its absence without one,
//! `watch` on a run being recorded, finished, crashed or no recording at all, and the verdict
//! every run ends with.

use crate::util::*;
use std::io::Read;
use std::process::{Command, Stdio};

/// A worker that leaks 8 MiB a trial beside one that does not, about 6 s.
const LEAKING: &str =
    "--trials 12 --trial-ms 300 --gap-ms 200 --leak-mib 8 --only-worker 0 --noise-mib 1";

/// Runs `command` with stdout and stderr on a pseudo-terminal of 120 columns; returns what the
/// terminal received, once the command and everything holding the terminal are gone.
fn on_a_terminal(mut command: Command) -> (std::process::ExitStatus, String) {
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: COLUMNS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("a pseudo-terminal");
    let terminal = pty.slave.try_clone().expect("dup");
    command
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::from(terminal))
        .stderr(Stdio::from(pty.slave));
    let mut child = command.spawn().expect("memwarden starts");
    drop(command); // the parent's copies of the terminal's end
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buffer = [0u8; 8192];
        // EIO once no process holds the terminal any more.
        while let Ok(n) = master.read(&mut buffer) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buffer[..n]);
        }
        bytes
    });
    let status = child.wait().expect("memwarden ends");
    let bytes = reader.join().expect("the reader ends");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The text without escape sequences, split where the view redraws or a line ends, and where
/// the terminal wraps (indicatif pads each line of the view to the terminal's width).
fn plain_lines(text: &str) -> Vec<String> {
    let escape = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").expect("regex");
    let mut lines = Vec::new();
    for line in escape.replace_all(text, "\n").split(['\n', '\r']) {
        let chars: Vec<char> = line.chars().collect();
        for row in chars.chunks(COLUMNS as usize) {
            let row: String = row.iter().collect();
            if !row.trim().is_empty() {
                lines.push(row.trim_end().to_string());
            }
        }
    }
    lines
}

const COLUMNS: u16 = 120;

/// `(PSS MiB, trend MiB/trial)` of each drawing of worker `index`'s line that has a trend.
fn worker_frames(lines: &[String], index: u32) -> Vec<(f64, f64)> {
    let pattern = format!(
        r"^\s*worker {index}\s+running\s+PSS~? ([0-9.]+) MiB .* trend \+?(-?[0-9.]+) MiB/trial"
    );
    let line = regex::Regex::new(&pattern).expect("regex");
    lines
        .iter()
        .filter_map(|l| line.captures(l))
        .map(|c| (c[1].parse().expect("MiB"), c[2].parse().expect("MiB")))
        .collect()
}

fn line_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(prefix))
}

#[test]
fn on_a_terminal_run_shows_the_leaking_workers_trend_rising_and_ends_with_its_verdict() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let (status, text) = on_a_terminal(fixture_run(&dir, "--workers 2", LEAKING));
    assert!(status.success(), "{status:?}\n{text}");
    assert!(text.contains("\x1b["), "the view is redrawn in place");
    let lines = plain_lines(&text);
    let leaking = worker_frames(&lines, 0);
    let clean = worker_frames(&lines, 1);
    assert!(
        leaking.len() >= 3,
        "too few drawings of worker 0:\n{}",
        lines.join("\n")
    );
    let (first, last) = (leaking[0], leaking[leaking.len() - 1]);
    assert!(
        last.0 > first.0 + 30.0,
        "worker 0's memory rises in the view: {leaking:?}"
    );
    assert!(
        (6.0..10.0).contains(&last.1),
        "worker 0's trend is about +8 MiB/trial: {leaking:?}"
    );
    let clean_last = clean.last().expect("worker 1 drawn");
    assert!(
        clean_last.1.abs() < 1.0,
        "worker 1's trend is flat: {clean:?}"
    );
    assert!(lines.iter().any(|l| l.contains("memory: headroom")));
    assert!(
        text.contains("memwarden: verdict: LEAK in worker 0"),
        "{text}"
    );
    let report = line_after(&text, "memwarden: report: ").expect("a report line");
    assert!(std::path::Path::new(report).exists(), "{report} exists");
}

#[test]
fn without_a_terminal_run_draws_nothing_and_ends_with_the_verdict_and_report() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = run_fixture(&dir, "--workers 2", LEAKING);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\x1b'), "no escape sequences:\n{stderr}");
    assert!(!stderr.contains("trend"), "no view:\n{stderr}");
    assert!(
        stderr.contains("memwarden: verdict: LEAK in worker 0\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("memwarden:   worker 0: LEAK in anonymous memory, +"),
        "{stderr}"
    );
    assert!(stderr.contains("memwarden:   worker 1: stable"), "{stderr}");
    let report = line_after(&stderr, "memwarden: report: ").expect("a report line");
    assert_eq!(std::path::Path::new(report), dir.join("report/report.md"));
    assert!(dir.join("report/report.md").exists());
    // stdout stays the run directory alone, for scripts.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dir.display().to_string()
    );
}

#[test]
fn a_clean_run_ends_with_no_leak_and_no_report_when_asked() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = run_fixture(
        &dir,
        "--workers 2 --no-report",
        "--trials 8 --trial-ms 200 --gap-ms 100",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("memwarden: verdict: no leak"), "{stderr}");
    assert!(!stderr.contains("LEAK"), "{stderr}");
    assert!(!stderr.contains("memwarden: report:"), "{stderr}");
    assert!(!dir.join("report").exists());
}

#[test]
fn a_crash_is_in_the_verdict() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = fixture_run(
        &dir,
        "--no-report",
        "--trials 4 --trial-ms 100 --gap-ms 50 --crash-at 2",
    )
    .output()
    .expect("memwarden runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(", 1 CRASH(ES)"), "{stderr}");
    assert!(
        stderr.contains("memwarden:   worker 0: CRASH: it was killed by signal 6"),
        "{stderr}"
    );
}

fn watch(dir: &std::path::Path) -> Command {
    let mut command = memwarden();
    command.arg("watch").arg(dir).args(["--every", "1s"]);
    command
}

/// What `watch` says of a run whose workers all exited, worker 0 leaking.
fn assert_finished_with_worker_0_leaking(stderr: &str) {
    assert!(
        stderr.contains("memwarden: the run has finished: all workers exited"),
        "{stderr}"
    );
    assert!(
        stderr.contains("memwarden: verdict: LEAK in worker 0"),
        "{stderr}"
    );
}

#[test]
fn watch_follows_a_run_recorded_by_another_memwarden_to_its_end() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let mut run = fixture_run(&dir, "--workers 2", LEAKING)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memwarden starts");
    wait_until("the run has begun", || {
        memwarden::recording::read_manifest(&dir).is_ok()
    });
    let watched = watch(&dir).output().expect("watch runs");
    let status = run.wait().expect("the run ends");
    assert!(status.success());
    let stderr = String::from_utf8_lossy(&watched.stderr);
    assert!(watched.status.success(), "{stderr}");
    assert!(stderr.contains("memwarden: watching "), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr}");
    let lines: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("memwarden: "))
        .map(str::to_string)
        .collect();
    let drawn = worker_frames(&lines, 0);
    assert!(!drawn.is_empty(), "worker 0's line is printed:\n{stderr}");
    assert_finished_with_worker_0_leaking(&stderr);
    // The run wrote the report; watch waited for it instead of writing a second one.
    let report = line_after(&stderr, "memwarden: report: ").expect("a report line");
    assert!(report.ends_with("(written before)"), "{report}");
    assert!(dir.join("report/report.md").exists());
}

#[test]
fn watch_of_a_finished_run_says_so_and_gives_its_verdict() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    run_fixture(&dir, "--workers 2 --no-report", LEAKING);
    let watched = watch(&dir).output().expect("watch runs");
    let stderr = String::from_utf8_lossy(&watched.stderr);
    assert!(watched.status.success(), "{stderr}");
    assert!(!stderr.contains("watching"), "{stderr}");
    assert_finished_with_worker_0_leaking(&stderr);
    let report = line_after(&stderr, "memwarden: report: ").expect("a report line");
    assert_eq!(std::path::Path::new(report), dir.join("report/report.md"));
    assert!(dir.join("report/report.md").exists());
}

#[test]
fn watch_of_a_crashed_recording_says_it_ended_abruptly() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let mut run = fixture_run(
        &dir,
        "--workers 2",
        "--trials 1000 --trial-ms 100 --gap-ms 50 --leak-mib 2 --only-worker 0",
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("memwarden starts");
    wait_until("some trials are recorded", || {
        dir.join("manifest.json").exists()
            && memwarden::recording::Recording::open(&dir).is_ok_and(|r| r.trials().len() >= 16)
    });
    run.kill().expect("SIGKILL");
    run.wait().expect("reaped");
    // Its workers die with it (the guardian); what is left is a recording that says running.
    let watched = watch(&dir).output().expect("watch runs");
    let stderr = String::from_utf8_lossy(&watched.stderr);
    assert!(watched.status.success(), "{stderr}");
    assert!(
        stderr.contains("memwarden: the recording ended abruptly"),
        "{stderr}"
    );
    assert!(stderr.contains("memwarden: verdict: "), "{stderr}");
    let report = line_after(&stderr, "memwarden: report: ").expect("a report line");
    assert!(std::path::Path::new(report).exists(), "{report}");
}

#[test]
fn watch_of_a_directory_that_is_no_recording_is_one_line_and_exit_2() {
    let temp = tempdir();
    let watched = watch(temp.path()).output().expect("watch runs");
    let stderr = String::from_utf8_lossy(&watched.stderr);
    assert_eq!(watched.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("memwarden: error: "), "{stderr}");
}
