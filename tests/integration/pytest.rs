//! The pytest plugin (python/memwarden/_pytest.py) and `memwarden check` per test, on a real
//! suite (fixtures/python/pytest_suite: PyTorch, NumPy, a clean test, a budget marker, a skip)
//! run by pytest from the test venv, as a user runs it under memwarden.

use crate::util::*;
use std::path::Path;
use std::process::Output;

const LEAKING: &str = "fixtures/python/pytest_suite/test_suite.py::test_training_keeps_a_tensor";

/// `memwarden run --out DIR -- python -m pytest -q SUITE ARGS`, which must succeed.
fn pytest_run(dir: &Path, args: &[&str]) -> Output {
    let out = memwarden()
        .arg("run")
        .arg("--out")
        .arg(dir)
        .args(["--quiet", "--no-report", "--"])
        .arg(venv_python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg("fixtures/python/pytest_suite")
        .args(args)
        .output()
        .expect("memwarden runs");
    assert!(out.status.success(), "{}", words(&out));
    out
}

fn check(dir: &Path, args: &[&str]) -> Output {
    memwarden()
        .arg("check")
        .arg(dir)
        .args(args)
        .output()
        .expect("check runs")
}

fn words(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_names_the_one_leaking_test_with_its_growth_per_repeat() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    pytest_run(&dir, &["--memwarden-repeat", "5"]);

    let out = check(&dir, &["--max-growth", "1MiB/trial"]);
    let text = words(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let over: Vec<&str> = text.lines().filter(|l| l.contains("EXCEEDS")).collect();
    assert_eq!(over.len(), 1, "{text}");
    assert!(over[0].starts_with(&format!("{LEAKING}: anon +")), "{text}");
    assert!(
        text.contains("4 of 6 test(s) within their budgets per repeat")
            && text.contains("1 skipped"),
        "{text}"
    );

    let out = check(&dir, &["--max-growth", "1MiB/trial", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let tests = json["tests"].as_array().expect("tests");
    let outcome = |name: &str| {
        tests
            .iter()
            .find(|t| t["test"].as_str().is_some_and(|t| t.ends_with(name)))
            .unwrap_or_else(|| panic!("{name} in {json}"))
    };
    let leak = outcome("::test_training_keeps_a_tensor");
    assert_eq!(
        (leak["outcome"].as_str(), leak["kind"].as_str()),
        (Some("exceeds"), Some("anon"))
    );
    let per_repeat = leak["per_repeat"]["bytes"].as_f64().expect("a figure");
    assert!(
        (per_repeat / (8.0 * MIB) - 1.0).abs() < 0.15,
        "{per_repeat} against the 8 MiB the test keeps"
    );
    assert_eq!(leak["repeats"], 5);
    assert_eq!(leak["warmup"], 2);
    for clean in [
        "::test_numpy_frees_what_it_takes[256]",
        "::test_numpy_frees_what_it_takes[512]",
        "::test_clean",
    ] {
        assert_eq!(outcome(clean)["outcome"], "within", "{clean}: {json}");
    }
    // 1.5 MiB per repeat: within its marker's 2 MiB, not the default 1 MiB.
    let marked = outcome("::test_marked_cache");
    assert_eq!(marked["outcome"], "within", "{json}");
    assert_eq!(marked["budget_bytes"].as_f64(), Some(2.0 * MIB));
    let kept = marked["per_repeat"]["bytes"].as_f64().expect("a figure");
    assert!((kept / (1.5 * MIB) - 1.0).abs() < 0.15, "{kept}");
    assert_eq!(outcome("::test_skipped")["outcome"], "skipped");

    // Tests are judged per repeat; a budget per hour cannot be.
    let out = check(&dir, &["--max-growth", "50MiB/h"]);
    assert_eq!(out.status.code(), Some(2), "{}", words(&out));
    assert!(
        words(&out).contains("give --max-growth per trial"),
        "{}",
        words(&out)
    );
}

#[test]
fn a_clean_suite_passes_and_tests_run_once_are_not_enough() {
    let temp = tempdir();
    let clean = temp.path().join("clean");
    pytest_run(&clean, &["--memwarden-repeat", "5", "-k", "not training"]);
    let out = check(&clean, &["--max-growth", "1MiB/trial"]);
    assert_eq!(out.status.code(), Some(0), "{}", words(&out));
    assert!(
        words(&out).contains("4 of 5 test(s) within their budgets per repeat"),
        "{}",
        words(&out)
    );

    // Under memwarden every test is a trial, but once is no growth per repeat: not a pass.
    let once = temp.path().join("once");
    pytest_run(&once, &[]);
    let out = check(&once, &["--max-growth", "1MiB/trial"]);
    let text = words(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains(&format!(
            "{LEAKING}: NOT ENOUGH DATA against 1.00 MiB/repeat: 1 complete repeat(s), 5 needed (--memwarden-repeat 5)"
        )),
        "{text}"
    );
}

#[test]
fn outside_memwarden_the_plugin_repeats_and_prints_nothing_of_its_own() {
    let out = std::process::Command::new(venv_python())
        .env("PYTHONPATH", "python")
        .env_remove("MEMWARDEN_WORKER")
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "memwarden",
        ])
        .arg("fixtures/python/pytest_suite")
        .args(["--memwarden-repeat", "2"])
        .output()
        .expect("pytest runs");
    let text = words(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("10 passed, 2 skipped"), "{text}");
    assert!(!text.contains("MEMWARDEN"), "{text}");
    assert!(!text.contains("PytestUnknownMarkWarning"), "{text}");
}
