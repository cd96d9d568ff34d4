//! `memwarden replay`: a leaking trial confirmed by repeating it, `--bisect` naming the leaking
//! value, `--isolate` in fresh processes, and parameter values that reach the worker verbatim.

use crate::util::*;
use memwarden::recording::{EventKind, Recording};
use std::path::Path;
use std::process::Output;

/// A value a shell would act on: command substitution, `;`, globs, quotes.
const HOSTILE: &str = "$(touch${IFS}PWNED);`touch${IFS}PWNED2`|*'\"";

/// A recording of 9 trials cycling batch_size 16/32/64, leaking 8 MiB only at 64, with a
/// hostile `note` parameter.
fn source(temp: &tempfile::TempDir) -> std::path::PathBuf {
    let dir = temp.path().join("source");
    run_fixture(
        &dir,
        "--interval 50ms",
        &format!("--trials 9 --trial-ms 50 --gap-ms 60 --param batch_size=16,32,64 --leak-when batch_size=64 --leak-mib 8 --param note={HOSTILE}"),
    );
    dir
}

fn replay(cwd: &Path, source: &Path, out: &Path, args: &[&str], worker_args: &[&str]) -> Output {
    memwarden()
        .current_dir(cwd)
        .arg("replay")
        .arg(source)
        .arg("--out")
        .arg(out)
        .args(["--interval", "50ms"])
        .args(args)
        .arg("--")
        .arg(exe())
        .arg("fixture-worker")
        .args([
            "--trial-ms",
            "50",
            "--gap-ms",
            "60",
            "--leak-when",
            "batch_size=64",
            "--leak-mib",
            "8",
        ])
        .args(worker_args)
        .output()
        .expect("replay runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn replaying_a_leaking_trial_shows_the_leak_in_a_recording_of_its_own() {
    let temp = tempdir();
    let source = source(&temp);
    let out_dir = temp.path().join("replay");
    // Trial 2 had batch_size=64.
    let out = replay(
        temp.path(),
        &source,
        &out_dir,
        &["--trial", "2", "--repeat", "8"],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a leak is a finding: {stdout}{stderr}"
    );
    assert!(
        stdout.starts_with("Trial 2 (batch_size=64, note="),
        "{stdout}"
    );
    assert!(stdout.contains("LEAKS +8.0"), "{stdout}");
    let recording = Recording::open(&out_dir).expect("a recording");
    assert_eq!(recording.manifest.mode, "replay");
    assert_eq!(recording.trials().len(), 8, "8 repeats in one process");
    let starts = recording
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::WorkerStart { .. }))
        .count();
    assert_eq!(starts, 1);
    assert!(out_dir.join("report/report.md").exists());

    // A clean value repeated is not a leak.
    let clean = replay(
        temp.path(),
        &source,
        &temp.path().join("clean"),
        &["--trial", "0", "--repeat", "8"],
        &[],
    );
    let (stdout, _) = text(&clean);
    assert_eq!(clean.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("stable: no leak"), "{stdout}");
}

#[test]
fn bisect_names_the_leaking_parameter_value() {
    let temp = tempdir();
    let source = source(&temp);
    let out = replay(
        temp.path(),
        &source,
        &temp.path().join("bisect"),
        &["--bisect", "--repeat", "7"],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("batch_size=64: LEAKS"), "{stdout}");
    assert!(
        stdout.contains("batch_size=16: stable") && stdout.contains("batch_size=32: stable"),
        "{stdout}"
    );
    assert!(stdout.ends_with("Leaking: batch_size=64.\n"), "{stdout}");
}

#[test]
fn a_parameter_value_with_shell_metacharacters_reaches_the_worker_verbatim_and_runs_nothing() {
    let temp = tempdir();
    let source = source(&temp);
    let recorded = Recording::open(&source).expect("source").trials()[0].params["note"].clone();
    assert_eq!(recorded, serde_json::json!(HOSTILE), "recorded as printed");
    let out_dir = temp.path().join("hostile");
    let out = replay(
        temp.path(),
        &source,
        &out_dir,
        &["--trial", "0", "--repeat", "1"],
        &["--print-arg", "{note}"],
    );
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{:?}",
        text(&out)
    );
    let log = std::fs::read_to_string(out_dir.join("logs/worker-0.log")).expect("log");
    assert!(
        log.contains(&format!("out fixture: argument {HOSTILE}\n")),
        "{log}"
    );
    for made in ["PWNED", "PWNED2"] {
        assert!(!temp.path().join(made).exists(), "a shell ran {made}");
    }
}

#[test]
fn isolated_repeats_run_in_fresh_processes() {
    let temp = tempdir();
    let source = source(&temp);
    let out_dir = temp.path().join("isolated");
    let out = replay(
        temp.path(),
        &source,
        &out_dir,
        &["--trial", "2", "--repeat", "3", "--isolate"],
        &["--hold-ms", "100"],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("each of 3 fresh process(es) held"),
        "{stdout}"
    );
    let recording = Recording::open(&out_dir).expect("a recording");
    let attempts: Vec<u32> = recording
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::WorkerStart { attempt, .. } => Some(attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [0, 1, 2]);
    assert_eq!(recording.trials().len(), 3, "one trial per process");
}

#[test]
fn an_unknown_trial_is_one_clear_error() {
    let temp = tempdir();
    let source = source(&temp);
    let out = replay(
        temp.path(),
        &source,
        &temp.path().join("none"),
        &["--trial", "99"],
        &[],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr.trim(),
        "memwarden: error: no trial 99 in the recording (it has 9 trial(s), from 0 to 8)"
    );
}
