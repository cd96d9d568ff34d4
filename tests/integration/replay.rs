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
    assert!(
        stdout.contains("repeat(s): stable: +0.00 MiB/repeat"),
        "{stdout}"
    );
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
    // The cleanest recorded trial is the baseline; each replay changes batch_size alone.
    assert!(
        stdout.starts_with("Baseline: trial 1 of worker 0 (batch_size=32, note="),
        "{stdout}"
    );
    assert!(
        stdout.contains("batch_size=64: LEAKS +8.00 MiB/repeat"),
        "{stdout}"
    );
    assert!(stdout.contains("batch_size=16: stable: +0.00"), "{stdout}");
    assert!(
        stdout.contains("Leaking: batch_size=64, explaining 100% of the run's +2.67 MiB/trial"),
        "{stdout}"
    );

    // The same as JSON: every tested value with its figure, warm-up levels and directory.
    let out = replay(
        temp.path(),
        &source,
        &temp.path().join("bisect-json"),
        &["--bisect", "--repeat", "7", "--json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["leaking"], serde_json::json!(["batch_size=64"]));
    assert_eq!(json["baseline"]["outcome"]["verdict"], "stable");
    let tested = json["tested"].as_array().expect("tested");
    assert_eq!(tested.len(), 2, "{json}");
    let leak = tested.iter().find(|t| t["value"] == 64).expect("64 tested");
    let per_repeat = leak["outcome"]["per_repeat"]["bytes"]
        .as_f64()
        .expect("a figure");
    assert!(
        (per_repeat / (8.0 * 1048576.0) - 1.0).abs() < 0.15,
        "{per_repeat}"
    );
    assert_eq!(leak["outcome"]["levels"].as_array().map(Vec::len), Some(7));
    assert_eq!(leak["outcome"]["warmup"], 2);
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
    // One repeat is not enough to judge (exit 4), and nothing failed (2 or 3).
    assert_eq!(out.status.code(), Some(4), "{:?}", text(&out));
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

/// `memwarden run` of the PyTorch + Optuna study (fixtures/python/torch_study.py: lr, keep_grads,
/// width; keep_grads=True keeps 8 MiB), its study in an SQLite database.
fn torch_source(temp: &tempfile::TempDir) -> (std::path::PathBuf, String, String) {
    let python = venv_python().display().to_string();
    let storage = format!("sqlite:///{}", temp.path().join("study.db").display());
    let dir = temp.path().join("torch");
    let out = memwarden()
        .env("STUDY_STORAGE", &storage)
        .args(["run", "--quiet", "--out"])
        .arg(&dir)
        .args(["--", &python, "fixtures/python/torch_study.py", "30"])
        .output()
        .expect("run runs");
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    (dir, python, storage)
}

/// The first `LEAKS +N MiB/repeat` in `text` is within 15% of 8 MiB.
fn assert_near_8_mib(text: &str) {
    let figure: f64 = text
        .split("LEAKS +")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure in {text}"));
    assert!((figure / 8.0 - 1.0).abs() < 0.15, "{text}");
}

fn stored_trials(python: &str, storage: &str) -> String {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import sys, optuna; optuna.logging.set_verbosity(optuna.logging.WARNING); print(len(optuna.load_study(study_name='torch', storage=sys.argv[1]).trials))",
            storage,
        ])
        .output()
        .expect("python runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_pytorch_optuna_study_is_bisected_with_the_command_it_ran_and_no_script() {
    let temp = tempdir();
    let (source, python, storage) = torch_source(&temp);
    assert_eq!(stored_trials(&python, &storage), "30");
    // The CI gate with its default options fails the leaking study, naming the kind that
    // leaks (issue 38: it used to judge PSS, read twice in a 400 MiB process, and pass).
    let gate = memwarden()
        .arg("check")
        .arg(&source)
        .args(["--max-growth", "1MiB/trial"])
        .output()
        .expect("check runs");
    let (_, said) = text(&gate);
    assert_eq!(gate.status.code(), Some(1), "{said}");
    assert!(
        said.contains("worker 0: anon +") && said.contains("EXCEEDS"),
        "{said}"
    );
    let bisect = |out: &str, extra: &[&str]| {
        let started = std::time::Instant::now();
        let out = memwarden()
            .env("STUDY_STORAGE", &storage)
            .arg("replay")
            .arg(&source)
            .arg("--out")
            .arg(temp.path().join(out))
            .args(["--bisect", "--json"])
            .args(extra)
            .args(["--", &python, "fixtures/python/torch_study.py", "30"])
            .output()
            .expect("replay runs");
        assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        eprintln!("bisect {extra:?}: {:.1} s", started.elapsed().as_secs_f64());
        json
    };
    // By default it stops once the values found explain the run's growth.
    let json = bisect("bisect", &[]);
    assert_eq!(
        json["leaking"],
        serde_json::json!(["keep_grads=true"]),
        "{json}"
    );
    assert_eq!(json["baseline"]["outcome"]["verdict"], "stable", "{json}");
    assert_eq!(json["baseline"]["outcome"]["kind"], "anon");
    let leak = &json["tested"][0];
    assert_eq!(leak["value"], true);
    let per_repeat = leak["outcome"]["per_repeat"]["bytes"]
        .as_f64()
        .expect("a figure");
    assert!(
        (per_repeat / (8.0 * 1048576.0) - 1.0).abs() < 0.15,
        "{per_repeat}"
    );
    let explained = json["explained"].as_f64().expect("a share");
    assert!((0.8..1.25).contains(&explained), "{explained}");
    assert_eq!(
        json["untested"],
        serde_json::json!(["lr", "width"]),
        "{json}"
    );

    // Exhaustive: the continuous lr at three points, not one replay per recorded value; every
    // clean value stable with its figure.
    let json = bisect("exhaustive", &["--exhaustive", "--repeat", "7"]);
    assert_eq!(
        json["leaking"],
        serde_json::json!(["keep_grads=true"]),
        "{json}"
    );
    let tested = json["tested"].as_array().expect("tested");
    let lr: Vec<_> = tested.iter().filter(|t| t["name"] == "lr").collect();
    assert_eq!(lr.len(), 3, "{json}");
    assert!(
        lr.iter().any(|t| t["point"] == "lowest") && lr.iter().any(|t| t["point"] == "highest")
    );
    for clean in tested.iter().filter(|t| t["name"] != "keep_grads") {
        assert_eq!(clean["outcome"]["verdict"], "stable", "{clean}");
        assert!(
            clean["outcome"]["per_repeat"]["bytes"].as_f64().is_some(),
            "{clean}"
        );
    }
    // One leaking trial replayed on its own, by its id, with the same command.
    let recording = Recording::open(&source).expect("the run");
    let leaking = recording
        .trials()
        .into_iter()
        .find(|t| t.params.get("keep_grads") == Some(&serde_json::json!(true)))
        .expect("a keep_grads=true trial");
    let out = memwarden()
        .env("STUDY_STORAGE", &storage)
        .arg("replay")
        .arg(&source)
        .arg("--out")
        .arg(temp.path().join("one"))
        .args(["--trial", &leaking.trial, "--repeat", "6"])
        .args(["--", &python, "fixtures/python/torch_study.py", "30"])
        .output()
        .expect("replay runs");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(", 6 repeat(s): LEAKS +"), "{stdout}");
    assert_near_8_mib(&stdout);
    let log = std::fs::read_to_string(temp.path().join("one/logs/worker-0.log")).expect("log");
    assert!(
        log.contains("through Optuna, in a study in memory"),
        "{log}"
    );
    // The user's study database never saw a replayed trial.
    assert_eq!(stored_trials(&python, &storage), "30");
}

#[test]
fn a_script_that_enqueues_the_parameters_itself_is_left_alone_by_the_optuna_hook() {
    let temp = tempdir();
    let source = source(&temp);
    let python = venv_python().display().to_string();
    let script = temp.path().join("replay.py");
    std::fs::write(
        &script,
        r#"import json, os, optuna
params = json.loads(os.environ["MEMWARDEN_TRIAL_PARAMS"])
repeat = int(os.environ.get("MEMWARDEN_TRIAL_REPEAT", "1"))
KEEP = []
def objective(trial):
    size = trial.suggest_int("batch_size", 16, 64)
    if size == 64:
        KEEP.append(bytearray(8 << 20))
    return 0.0
study = optuna.create_study()
for _ in range(repeat):
    study.enqueue_trial({"batch_size": params["batch_size"]})
study.optimize(objective, n_trials=repeat)
print("script form went on after optimize:", len(study.trials), flush=True)
"#,
    )
    .expect("script");
    let out_dir = temp.path().join("script");
    let out = memwarden()
        .arg("replay")
        .arg(&source)
        .arg("--out")
        .arg(&out_dir)
        .args(["--trial", "2", "--repeat", "7", "--no-trace-python"])
        .args(["--", &python])
        .arg(&script)
        .output()
        .expect("replay runs");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(", 7 repeat(s): LEAKS +"), "{stdout}");
    assert_near_8_mib(&stdout);
    let log = std::fs::read_to_string(out_dir.join("logs/worker-0.log")).expect("log");
    assert!(
        log.contains("script form went on after optimize: 7"),
        "{log}"
    );
    assert!(
        !log.contains("through Optuna, in a study in memory"),
        "{log}"
    );
}
