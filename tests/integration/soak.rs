//! `memwarden soak`: a short soak with three fixture workers, one leaking, fails and names it,
//! and publishes checkpoints while it runs; a clean one passes.

use crate::util::*;
use std::process::Stdio;

fn soak(dir: &std::path::Path, extra: &[String], fixture: &str) -> std::process::Command {
    let mut command = memwarden();
    command
        .arg("soak")
        .arg("--out")
        .arg(dir)
        .args(["--workers", "3", "--interval", "50ms", "--json"])
        .args(extra)
        .arg("--")
        .arg(exe())
        .arg("fixture-worker")
        .args(fixture.split_whitespace());
    command
}

fn verdict(stdout: &[u8]) -> serde_json::Value {
    serde_json::from_slice(stdout).expect("the verdict is JSON on stdout")
}

#[test]
fn a_soak_with_a_leaking_worker_fails_names_it_and_publishes_during_the_run() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    let published = temp.path().join("published");
    let extra = [
        "--duration".to_string(),
        "12s".into(),
        "--checkpoint".into(),
        "3s".into(),
        "--publish".into(),
        published.display().to_string(),
    ];
    let mut child = soak(
        &dir,
        &extra,
        "--trials 8 --trial-ms 60 --gap-ms 60 --leak-mib 6 --only-worker 1",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("soak starts");
    // A checkpoint reaches the publish directory while the soak still runs.
    let checkpoint = published.join("run/checkpoint/report.md");
    wait_until("a published checkpoint", || checkpoint.exists());
    assert!(
        child.try_wait().expect("waitable").is_none(),
        "published only at the end"
    );
    // Written while the soak ran, it says so, and calls nothing a crash.
    let interim_report = std::fs::read_to_string(&checkpoint).expect("checkpoint report");
    assert!(
        !interim_report.contains("Verdict: crash")
            && !interim_report.contains("without a clean stop")
            && interim_report.contains("**The run is still being recorded**")
            && interim_report.contains("last sample so far: the run is still being recorded"),
        "{interim_report}"
    );
    let interim: serde_json::Value = serde_json::from_slice(
        &std::fs::read(published.join("run/checkpoint/verdict.json")).expect("interim verdict"),
    )
    .expect("json");
    assert_eq!(interim["schema_version"], 1);
    let out = child.wait_with_output().expect("soak ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "fails: {stderr}");
    let verdict = verdict(&out.stdout);
    assert_eq!(verdict["verdict"], "fail");
    assert_eq!(verdict["leaking_workers"], serde_json::json!([1]));
    let reasons = verdict["reasons"].to_string();
    assert!(
        reasons.contains("worker 1 leaks anonymous memory +6.0"),
        "{reasons}"
    );
    assert_eq!(
        verdict["crashes"], 0,
        "workers that finish are started again, not crashed"
    );
    // Workers finish 8 trials and start again, for the whole duration.
    let recording = memwarden::recording::Recording::open(&dir).expect("recording");
    let starts = recording
        .events
        .iter()
        .filter(|e| matches!(e.kind, memwarden::recording::EventKind::WorkerStart { .. }))
        .count();
    assert!(starts >= 3 * 3, "{starts} starts");
    assert_eq!(recording.manifest.mode, "soak");
    // Progress for CI logs: plain lines, not a terminal's bars.
    assert!(stderr.contains("memwarden: soak:   worker 1  "), "{stderr}");
    // The end is published too: the final verdict and report.
    assert!(published.join("run/verdict.json").exists());
    assert!(published.join("run/report/report.md").exists());
    // And the sealed run joins the fleet layout there, where `fleet` finds its leak.
    let host = memwarden::fleet::layout::partition_value(&recording.manifest.host);
    let runs = published.join(format!("runs/host={host}/run=run"));
    assert!(runs.join("000001.parquet").exists(), "{stderr}");
    let fleet = memwarden()
        .args(["fleet", "--json"])
        .arg(&published)
        .output()
        .expect("fleet runs");
    let answers: serde_json::Value = serde_json::from_slice(&fleet.stdout).expect("JSON");
    assert_eq!(answers["runs"], 1, "{answers}");
    assert_eq!(answers["leaks"][0]["worker"], 1, "{answers}");
}

#[test]
fn a_clean_soak_passes() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    let copy = temp.path().join("copied");
    let extra = [
        "--duration".to_string(),
        "6s".into(),
        "--checkpoint".into(),
        "2s".into(),
        "--publish-cmd".into(),
        serde_json::json!(["cp", "-rT", "{run_dir}", copy]).to_string(),
    ];
    let out = soak(
        &dir,
        &extra,
        "--trials 6 --trial-ms 60 --gap-ms 60 --spike-mib 4",
    )
    .output()
    .expect("soak runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "passes: {stderr}");
    let verdict = verdict(&out.stdout);
    assert_eq!(verdict["verdict"], "pass", "{verdict}");
    assert_eq!(verdict["reasons"], serde_json::json!([]));
    assert!(verdict["trials"].as_u64().expect("trials") >= 3 * 6);
    assert!(dir.join("checkpoint/report.md").exists() && dir.join("verdict.json").exists());
    assert!(
        copy.join("verdict.json").exists(),
        "the publish command ran, as argv"
    );
}

/// The checkpoint's report runs in a child process: one that fails costs that checkpoint, says
/// so, and the soak goes on to its verdict.
#[test]
fn a_failed_checkpoint_leaves_the_soak_running_and_says_so() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    let extra = [
        "--duration".to_string(),
        "5s".into(),
        "--checkpoint".into(),
        "2s".into(),
    ];
    let child = soak(
        &dir,
        &extra,
        "--trials 6 --trial-ms 60 --gap-ms 60 --spike-mib 4",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("soak starts");
    wait_until("the recording starts", || {
        dir.join("manifest.json").exists()
    });
    // Where the checkpoint's report goes, a file: the child cannot write there.
    std::fs::write(dir.join("checkpoint.partial"), "in the way").expect("write");
    let out = child.wait_with_output().expect("soak ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "passes: {stderr}");
    assert!(
        stderr.contains("memwarden: warning: checkpoint failed: the report's process failed")
            && stderr.contains("the soak goes on"),
        "{stderr}"
    );
    assert_eq!(verdict(&out.stdout)["verdict"], "pass");
    assert!(dir.join("report/report.md").exists(), "the final report");
}

#[test]
fn a_soak_without_a_duration_is_refused() {
    let temp = tempdir();
    let out = soak(&temp.path().join("run"), &[], "--trials 1")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("soak needs --duration"));
}
