//! GPU memory through the fake driver (`MEMWARDEN_FAKE_GPU`): a worker's GPU leak found,
//! checked and reported; the policy restarting on it; attribution impossible across pid
//! namespaces; and, on this machine without a GPU, "unavailable" said once and never zeros.

use crate::util::*;
use memwarden::recording::{EventKind, Recording};
use std::path::Path;

/// A fake driver with one 80 GiB device.
fn fake_gpu(temp: &tempfile::TempDir) -> std::path::PathBuf {
    let dir = temp.path().join("gpu");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("devices"), "0 85899345920 Fake H100\n").expect("devices");
    dir
}

fn run_with_gpu(
    gpu: Option<&Path>,
    dir: &Path,
    run_args: &str,
    fixture: &str,
) -> std::process::Output {
    let mut command = fixture_run(dir, run_args, fixture);
    if let Some(gpu) = gpu {
        command.env("MEMWARDEN_FAKE_GPU", gpu);
    } else {
        command.env_remove("MEMWARDEN_FAKE_GPU");
    }
    let out = command.output().expect("memwarden runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn notes(dir: &Path) -> Vec<String> {
    Recording::open(dir)
        .expect("recording")
        .events
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Note { message } => Some(message),
            _ => None,
        })
        .collect()
}

#[test]
fn a_gpu_leak_is_found_checked_and_reported_per_worker_and_device() {
    let temp = tempdir();
    let gpu = fake_gpu(&temp);
    let dir = run_dir(&temp);
    run_with_gpu(
        Some(&gpu),
        &dir,
        "--interval 50ms",
        "--trials 10 --trial-ms 60 --gap-ms 80 --fake-gpu-leak-mib 8",
    );
    assert!(notes(&dir).contains(&"GPU 0: Fake H100, 80.00 GiB total".to_string()));
    let analysis = memwarden()
        .arg("analyze")
        .arg(&dir)
        .arg("--json")
        .output()
        .expect("analyze");
    let findings: serde_json::Value = serde_json::from_slice(&analysis.stdout).expect("json");
    let worker = &findings["workers"][0];
    assert_eq!(
        (worker["kind"].as_str(), worker["verdict"].as_str()),
        (Some("gpu"), Some("leak")),
        "{worker}"
    );
    let gpu_kind = worker["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .find(|k| k["kind"] == "gpu")
        .expect("gpu");
    let rate = gpu_kind["per_trial"]["bytes"].as_f64().expect("rate") / MIB;
    assert!((rate - 8.0).abs() < 0.5, "{rate} MiB/trial");
    let check = memwarden()
        .args(["check", "--kind", "gpu", "--max-growth", "1MiB/trial"])
        .arg(&dir)
        .output()
        .expect("check");
    assert_eq!(check.status.code(), Some(1), "over budget");
    let out = temp.path().join("report");
    let report = memwarden()
        .arg("report")
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("report");
    assert!(report.status.success());
    let text = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(text.contains("**Worker 0 leaks GPU memory**"), "{text}");
    // On a loaded machine the first GPU sample may come after the first trial (from 8 MiB),
    // and the last after the worker exited and freed its GPU memory ("to" 0): the peak is what
    // it reached.
    let said = ["0.0 MiB", "8.0 MiB"].iter().any(|from| {
        ["80.0 MiB", "0.0 MiB"].iter().any(|to| {
            text.contains(&format!(
                "GPU 0 memory went from {from} to {to} used (peak 80.0 MiB)"
            ))
        })
    });
    assert!(said, "{text}");
    assert!(
        !text.contains("At this rate memory runs out"),
        "a GPU leak does not exhaust host memory"
    );
    assert!(out.join("plots/gpu-0-memory.png").exists());
}

#[test]
fn the_policy_restarts_a_worker_over_its_gpu_limit() {
    let temp = tempdir();
    let gpu = fake_gpu(&temp);
    let dir = run_dir(&temp);
    let policy = temp.path().join("policy.toml");
    std::fs::write(&policy, "[restart]\nmax_worker_gpu = \"40MiB\"\n").expect("policy");
    run_with_gpu(
        Some(&gpu),
        &dir,
        &format!(
            "--interval 50ms --duration 4s --policy {}",
            policy.display()
        ),
        "--trials 1000 --trial-ms 50 --gap-ms 50 --fake-gpu-leak-mib 8",
    );
    let stops: Vec<String> = Recording::open(&dir)
        .expect("recording")
        .events
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Policy { action, reason, .. } if action.as_str() == "stop" => Some(reason),
            _ => None,
        })
        .collect();
    assert!(!stops.is_empty(), "restarted");
    assert!(
        stops[0].starts_with("GPU memory 4") && stops[0].ends_with("passed the limit of 40.0 MiB"),
        "{}",
        stops[0]
    );
}

#[test]
fn pids_from_another_namespace_leave_device_totals_only_and_say_so_once() {
    let temp = tempdir();
    let gpu = fake_gpu(&temp);
    // A process as the host sees it, which this pid namespace does not have.
    std::fs::write(gpu.join("foreign-4000000"), "0 1073741824\n").expect("foreign");
    let dir = run_dir(&temp);
    run_with_gpu(
        Some(&gpu),
        &dir,
        "--interval 50ms",
        "--trials 4 --trial-ms 60 --gap-ms 60 --fake-gpu-leak-mib 8",
    );
    let said: Vec<String> = notes(&dir)
        .into_iter()
        .filter(|n| n.contains("attribution unavailable"))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("4000000"), "{}", said[0]);
    let samples = export(&dir, "samples");
    let column = samples.column("gpu");
    assert!(
        samples.rows.iter().all(|r| r[column].is_empty()),
        "no per-process values, not zeros"
    );
    let device = memwarden()
        .arg("analyze")
        .arg(&dir)
        .arg("--json")
        .output()
        .expect("analyze");
    assert!(device.status.success());
    assert!(
        dir.join("gpu-000001.parquet").exists(),
        "device totals are kept"
    );
}

#[test]
#[ignore = "needs a machine without an NVIDIA driver: MEMWARDEN_TEST_NO_GPU=1 cargo test --test integration -- --ignored gpu::without (scripts/test runs it where /dev/nvidiactl is absent)"]
fn without_a_gpu_it_says_so_once_and_records_no_zeros() {
    assert_eq!(
        std::env::var("MEMWARDEN_TEST_NO_GPU").as_deref(),
        Ok("1"),
        "this test needs a machine without an NVIDIA driver: set MEMWARDEN_TEST_NO_GPU=1 there"
    );
    assert!(
        !Path::new("/dev/nvidiactl").exists(),
        "this machine has an NVIDIA driver; run this test where there is none"
    );
    let temp = tempdir();
    let dir = run_dir(&temp);
    run_with_gpu(
        None,
        &dir,
        "--interval 50ms",
        "--trials 3 --trial-ms 60 --gap-ms 60",
    );
    let said: Vec<String> = notes(&dir)
        .into_iter()
        .filter(|n| n.starts_with("GPU data unavailable: "))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    let samples = export(&dir, "samples");
    let column = samples.column("gpu");
    assert!(
        samples.rows.iter().all(|r| r[column].is_empty()),
        "never zeros"
    );
    assert!(!dir.join("gpu-000001.parquet").exists());
}

/// `scripts/gpu-check --fake`: the check a GPU machine runs, claim by claim, against the fake
/// driver and the stand-in for torch.cuda, so the script cannot rot between the rare runs on a
/// real device.
#[test]
fn the_gpu_check_passes_every_claim_against_the_fake_driver() {
    let temp = tempdir();
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gpu-check"))
        .arg("--fake")
        .env("OUT", temp.path())
        .env("MEMWARDEN_BIN", exe())
        .env_remove("MEMWARDEN_FAKE_GPU")
        .output()
        .expect("gpu-check runs");
    let summary = std::fs::read_to_string(temp.path().join("summary.txt")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{summary}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Vec<&str> = summary
        .lines()
        .filter_map(|l| l.strip_prefix("PASS  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        claims,
        ["attribution", "leak", "cache", "restart", "refusals"],
        "{summary}"
    );
}
