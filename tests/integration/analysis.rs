//! The analysis quality bar on live recordings of the fixture worker (README, "Analysis
//! quality"), plus `check`, `diff` and bad input. Workers that hold up to a GiB take the
//! `heavy` lock so no two of them run at once.

use crate::util::{analyze, memwarden, run_dir, run_fixture, tempdir, MIB};
use memwarden::analysis::{Basis, Findings, Kind, MappingCategory, Verdict, WorkerFinding};
use std::path::Path;
use std::sync::Mutex;

static HEAVY: Mutex<()> = Mutex::new(());

/// Trials of 40 ms with 60 ms gaps, sampled every 20 ms.
const TIMING: &str = "--trial-ms 40 --gap-ms 60";

fn record(dir: &Path, fixture_args: &str) {
    run_fixture(dir, "--interval 20ms", &format!("{TIMING} {fixture_args}"));
}

fn worker(findings: &Findings) -> &WorkerFinding {
    findings.workers.first().expect("one worker")
}

fn recorded(fixture_args: &str) -> (tempfile::TempDir, Findings) {
    let temp = tempdir();
    let dir = run_dir(&temp);
    record(&dir, fixture_args);
    let findings = analyze(&dir);
    (temp, findings)
}

fn assert_leak(fixture_args: &str, rate_mib: f64) {
    let (_temp, findings) = recorded(fixture_args);
    let w = worker(&findings);
    assert_eq!((w.verdict, w.kind), (Verdict::Leak, Kind::Anon), "{w:#?}");
    let k = w.kind_finding(Kind::Anon).expect("anon");
    let rate = k.per_trial.expect("a rate per trial").bytes / MIB;
    eprintln!(
        "{fixture_args}: {rate:.3} MiB/trial, clear from trial {:?}",
        k.first_clear_trial
    );
    assert!(
        (rate / rate_mib - 1.0).abs() <= 0.15,
        "{rate} MiB/trial against {rate_mib}"
    );
    let clear: u32 = k
        .first_clear_trial
        .as_deref()
        .and_then(|t| t.parse().ok())
        .expect("a first clear trial");
    assert!(clear < 30, "clear only from trial {clear}");
}

#[test]
fn a_1_mib_leak_under_20_mib_of_noise() {
    assert_leak("--trials 90 --leak-mib 1 --noise-mib 40", 1.0);
}

#[test]
fn a_4_mib_leak_under_20_mib_of_noise() {
    assert_leak("--trials 40 --leak-mib 4 --noise-mib 40", 4.0);
}

#[test]
fn a_32_mib_leak_under_20_mib_of_noise() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    assert_leak("--trials 30 --leak-mib 32 --noise-mib 40", 32.0);
}

fn assert_not_leak(fixture_args: &str, expected: Verdict) -> Findings {
    let (_temp, findings) = recorded(fixture_args);
    let w = worker(&findings);
    assert_ne!(w.verdict, Verdict::Leak, "{fixture_args}: {w:#?}");
    assert_eq!(w.verdict, expected, "{fixture_args}: {w:#?}");
    assert_eq!(findings.verdict, expected);
    findings
}

#[test]
fn a_plateauing_cache_is_not_a_leak() {
    let findings = assert_not_leak(
        "--trials 30 --cache-mib 200 --cache-trials 8 --noise-mib 40",
        Verdict::Plateau,
    );
    let k = worker(&findings).kind_finding(Kind::Anon).expect("anon");
    // Growth compares the medians of the first and last five trials; the first five are
    // already part of the cache's ramp.
    assert!(k.growth_bytes > 100.0 * MIB, "{k:#?}");
}

#[test]
fn a_single_step_is_not_a_leak() {
    let findings = assert_not_leak(
        "--trials 30 --step-mib 200 --step-at 12 --noise-mib 40",
        Verdict::Plateau,
    );
    let step = worker(&findings)
        .kind_finding(Kind::Anon)
        .and_then(|k| k.step.clone())
        .expect("a step");
    assert_eq!(step.trial, "12");
    assert!((step.size_bytes / MIB - 200.0).abs() < 30.0, "{step:?}");
}

#[test]
fn pure_noise_is_not_a_leak() {
    assert_not_leak("--trials 30 --noise-mib 40", Verdict::Stable);
}

#[test]
fn a_500_mib_transient_spike_per_trial_is_not_a_leak() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let findings = assert_not_leak("--trials 20 --spike-mib 500", Verdict::Stable);
    let k = worker(&findings).kind_finding(Kind::Anon).expect("anon");
    let transient = k.transient_bytes.expect("a transient") / MIB;
    assert!(transient > 400.0, "transient {transient} MiB");
}

#[test]
fn a_leak_in_a_forked_child_is_located_on_the_child() {
    let (_temp, findings) = recorded("--trials 20 --leak-mib 8 --child-leak");
    let w = worker(&findings);
    assert_eq!((w.verdict, w.kind), (Verdict::Leak, Kind::Anon), "{w:#?}");
    let process = w.process.as_ref().expect("a located process");
    assert!(!process.main, "{process:?}");
    let rate = process.per_trial.expect("rate").bytes / MIB;
    assert!((rate - 8.0).abs() < 1.2, "child grows {rate} MiB/trial");
    assert!(process.share.is_some_and(|s| s > 0.85), "{process:?}");
}

#[test]
fn a_shared_memory_leak_is_reported_as_shmem() {
    let (_temp, findings) = recorded("--trials 20 --leak-mib 8 --shmem");
    let w = worker(&findings);
    assert_eq!((w.verdict, w.kind), (Verdict::Leak, Kind::Shmem), "{w:#?}");
    let top = w.mappings.first().expect("a mapping");
    assert_eq!(
        top.category,
        MappingCategory::SharedMemory,
        "{:#?}",
        w.mappings
    );
    assert!(top.name.contains("memwarden-fixture-shm"), "{top:?}");
    assert!(w.hints.iter().any(|h| h.contains("shared")));
}

#[test]
fn a_leak_for_one_parameter_value_names_it() {
    let (_temp, findings) = recorded(
        "--trials 30 --leak-mib 16 --leak-when batch_size=64 --param batch_size=16,32,64 --noise-mib 10",
    );
    let p = findings.parameters.first().expect("a parameter finding");
    assert_eq!(
        (p.name.as_str(), p.value.as_deref()),
        ("batch_size", Some("64"))
    );
    assert!(
        p.significant && (p.effect_bytes / MIB - 16.0).abs() < 6.0,
        "{p:?}"
    );
    assert_eq!(findings.parameters.len(), 1, "{:#?}", findings.parameters);
}

fn exit_and_stderr(args: &[&str], dirs: &[&Path]) -> (Option<i32>, String, String) {
    let out = memwarden()
        .args(args)
        .args(dirs)
        .output()
        .expect("memwarden runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_fails_a_leak_over_budget_and_diff_sees_the_fix() {
    let temp = tempdir();
    let leaking = temp.path().join("leaking");
    let fixed = temp.path().join("fixed");
    record(&leaking, "--trials 30 --leak-mib 4");
    record(&fixed, "--trials 30");

    let (code, _, stderr) = exit_and_stderr(&["check", "--max-growth", "1MiB/trial"], &[&leaking]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("worker 0") && stderr.contains("EXCEEDS"),
        "{stderr}"
    );
    let (code, _, _) = exit_and_stderr(&["check", "--max-growth", "8MiB/trial"], &[&leaking]);
    assert_eq!(code, Some(0));
    let (code, _, _) = exit_and_stderr(
        &["check", "--max-growth", "1MiB/trial", "--kind", "anon"],
        &[&fixed],
    );
    assert_eq!(code, Some(0));
    let (code, stdout, _) = exit_and_stderr(
        &["check", "--json", "--max-growth", "1MiB/trial"],
        &[&leaking],
    );
    assert_eq!(code, Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["passed"], false);

    let (code, stdout, _) = exit_and_stderr(&["diff"], &[&leaking, &fixed]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("less growth"), "{stdout}");
    let (code, stdout, _) = exit_and_stderr(&["diff"], &[&fixed, &leaking]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.starts_with("MORE growth"), "{stdout}");
}

#[test]
fn without_trial_boundaries_the_verdict_is_per_hour() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    // A regex that never matches replaces the marker syntax: no trials are seen.
    run_fixture(
        &dir,
        "--interval 20ms --trial-regex NEVER(?P<trial>x)",
        &format!("{TIMING} --trials 40 --leak-mib 4"),
    );
    let findings = analyze(&dir);
    assert!(!findings.run.trials_seen);
    assert!(findings
        .notes
        .iter()
        .any(|n| n.contains("no trial boundaries")));
    let w = worker(&findings);
    assert_eq!((w.verdict, w.basis), (Verdict::Leak, Basis::Time), "{w:#?}");
    let (code, _, stderr) = exit_and_stderr(&["check", "--max-growth", "1MiB/trial"], &[&dir]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("give the budget per hour"), "{stderr}");
    // Seconds of recording give no rate per hour: not enough data, its own exit code.
    let (code, _, stderr) = exit_and_stderr(&["check", "--max-growth", "1MiB/h"], &[&dir]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("NOT ENOUGH DATA") && stderr.contains("is an extrapolation"),
        "{stderr}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let temp = tempdir();
    let empty = temp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let foreign = temp.path().join("foreign");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::write(foreign.join("notes.txt"), "hello").expect("write");
    let file = temp.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let truncated = temp.path().join("truncated");
    std::fs::create_dir(&truncated).expect("mkdir");
    let manifest = std::fs::read("fixtures/runs/crashed/manifest.json").expect("fixture");
    std::fs::write(
        truncated.join("manifest.json"),
        &manifest[..manifest.len() / 2],
    )
    .expect("write");
    let no_samples = temp.path().join("no-samples");
    std::fs::create_dir(&no_samples).expect("mkdir");
    std::fs::write(no_samples.join("manifest.json"), &manifest).expect("write");
    let missing = temp.path().join("missing");
    for dir in [&missing, &empty, &foreign, &file, &truncated, &no_samples] {
        for command in [
            &["analyze"][..],
            &["check", "--max-growth", "1MiB/trial"],
            &["diff", "fixtures/runs/crashed"],
        ] {
            let (code, stdout, stderr) = exit_and_stderr(command, &[dir]);
            assert_eq!(code, Some(2), "{command:?} {}: {stderr}", dir.display());
            assert!(stdout.is_empty());
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.starts_with("memwarden: error: "), "{stderr}");
        }
    }
}

/// The SIGKILLed fixture recording: damaged, cut off, few trials. Analysis says so and the
/// text and JSON stay as they are (snapshots).
#[test]
fn a_crashed_recording_is_analysed_and_says_so() {
    let dir = Path::new("fixtures/runs/crashed");
    let findings = analyze(dir);
    assert_eq!(findings.run.status.to_string(), "ended abruptly");
    assert!(findings
        .notes
        .iter()
        .any(|n| n.contains("without a clean stop")));
    let out = memwarden().arg("analyze").arg(dir).output().expect("runs");
    assert!(out.status.success());
    insta::assert_snapshot!("analyze_crashed", String::from_utf8_lossy(&out.stdout));
    let json = serde_json::to_string_pretty(&findings).expect("json");
    insta::assert_snapshot!("analyze_crashed_json", json);
}

/// Optuna's trials run back to back: the next trial allocates right after the line that ends
/// the last one. The sampler takes a tick as soon as a boundary arrives, so the growth lands on
/// the trial that caused it (at the next scheduled tick it landed on the trial before).
#[test]
fn back_to_back_optuna_trials_get_their_own_growth() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    run_fixture(
        &dir,
        "--interval 20ms",
        "--optuna --trials 30 --trial-ms 60 --gap-ms 0 --leak-mib 16 --leak-when bs=64 --param bs=16,64 --noise-mib 4",
    );
    let findings = analyze(&dir);
    let p = findings.parameters.first().expect("a parameter finding");
    assert_eq!(
        (p.name.as_str(), p.value.as_deref()),
        ("bs", Some("64")),
        "{:#?}",
        findings.parameters
    );
}

/// The gate fails closed (issue 38): it judges what leaks, too little data is not a pass, and a
/// run that ended abruptly cannot pass.
#[test]
fn the_gate_judges_what_leaks_and_never_passes_what_it_cannot_see() {
    use memwarden::recording::{EndMemory, EndReader};
    let at_end = |anon: u64| {
        Some(EndMemory {
            anon_bytes: anon,
            file_bytes: 20 << 20,
            shmem_bytes: 0,
            read_by: EndReader::Worker,
            delay_ns: 0,
        })
    };
    let temp = tempdir();
    // 4 MiB per batch=16 trial (4/3 MiB a trial), PSS read on two ticks of 610: starved.
    let starved = temp.path().join("starved");
    crate::boundary::synthetic(&starved, at_end, |tick| tick == 5 || tick == 300, true);
    let (code, _, stderr) = exit_and_stderr(&["check", "--max-growth", "1MiB/trial"], &[&starved]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("worker 0: anon +1.3")
            && stderr.contains("EXCEEDS")
            && stderr.contains("judged by anon"),
        "{stderr}"
    );
    // Asked to judge PSS alone: not enough data, exit 4, never "stable".
    let (code, out, stderr) = exit_and_stderr(
        &["check", "--max-growth", "1MiB/trial", "--kind", "pss"],
        &[&starved],
    );
    assert_eq!(code, Some(4), "{stderr}{out}");
    assert!(
        stderr.contains("NOT ENOUGH DATA")
            && stderr.contains("pss: not enough data (PSS read on 2 tick(s)"),
        "{stderr}"
    );
    // `analyze` says the same of starved PSS: not enough data, never "stable" (issue 30).
    let out = memwarden()
        .arg("analyze")
        .arg(&starved)
        .output()
        .expect("analyze runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pss insufficient data") && !text.contains("pss stable"),
        "{text}"
    );
    // Within a looser budget, but the run ended abruptly: it cannot pass.
    let crashed = temp.path().join("crashed");
    crate::boundary::synthetic(&crashed, at_end, |_| true, false);
    let (code, _, stderr) = exit_and_stderr(&["check", "--max-growth", "8MiB/trial"], &[&crashed]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("FAILED: the run ended abruptly"),
        "{stderr}"
    );
    let (code, stdout, _) = exit_and_stderr(&["check", "--max-growth", "8MiB/trial"], &[&starved]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("within"), "{stdout}");
}

#[test]
fn a_worker_that_crashed_cannot_pass_the_gate_however_little_it_grew() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    // 12 trials that keep nothing, then an abort as trial 10 starts.
    let out = crate::util::fixture_run(
        &dir,
        "--interval 50ms",
        "--trials 12 --trial-ms 40 --gap-ms 40 --crash-at 10",
    )
    .output()
    .expect("memwarden runs");
    assert_eq!(out.status.code(), Some(1), "a crash is a finding");
    let (code, _, stderr) = exit_and_stderr(&["check", "--max-growth", "8MiB/trial"], &[&dir]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("FAILED: worker 0 crashed: it was killed by signal 6"),
        "{stderr}"
    );
}

#[test]
fn an_old_recording_with_one_snapshot_per_boundary_counts_each_tick_once() {
    // Recorded before one smaps snapshot per tick: 150 trials of 4 ms, up to 50 copies of the
    // maps stamped with one tick, each read a little later as the process grew 1 MiB per trial.
    // The whole process grew 150 MiB; its mappings cannot have grown more (it read +3300 MiB).
    let findings = analyze(Path::new("fixtures/runs/doubled-snapshots"));
    let w = worker(&findings);
    assert_eq!((w.verdict, w.kind), (Verdict::Leak, Kind::Anon), "{w:#?}");
    let top = w.mappings.first().expect("a mapping");
    let grown = top.growth_bytes / MIB;
    assert!((100.0..=150.0).contains(&grown), "{:#?}", w.mappings);
}
