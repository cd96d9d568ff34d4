//! The observer effect: how much slower a worker's trials run under memwarden's default sampling
//! than alone, for a 1 GiB and a 4 GiB worker. Each trial sweeps its whole working set twice
//! (read-modify-write) and allocates and frees a transient quarter of it (page faults take the
//! mmap lock that smaps_rollup also takes). Alone and supervised runs alternate, five pairs.
//!
//! `cargo bench --bench observer` (needs ~5 GiB free; takes a few minutes).

use std::process::{Command, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_memwarden");

fn fixture_args(mib: u32) -> Vec<String> {
    let spike = (mib / 4).to_string();
    let mib = mib.to_string();
    [
        "fixture-worker",
        "--trials",
        "16",
        "--trial-ms",
        "0",
        "--gap-ms",
        "0",
        "--work-mib",
        &mib,
        "--work-passes",
        "2",
        "--spike-mib",
        &spike,
    ]
    .map(str::to_string)
    .to_vec()
}

/// Median trial duration (seconds) from `trial_end ... value=SECONDS` lines, first trial skipped.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn trial_seconds(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.contains("MEMWARDEN trial_end"))
        .filter_map(|l| l.rsplit("value=").next()?.trim().parse().ok())
        .skip(1)
        .collect()
}

fn alone(mib: u32) -> f64 {
    let out = Command::new(EXE)
        .args(fixture_args(mib))
        .stderr(Stdio::null())
        .output()
        .expect("fixture runs");
    median(trial_seconds(&String::from_utf8_lossy(&out.stdout)))
}

fn supervised(mib: u32) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    let status = Command::new(EXE)
        .arg("run")
        .arg("--out")
        .arg(&run)
        .arg("--")
        .arg(EXE)
        .args(fixture_args(mib))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("memwarden runs");
    assert!(status.success());
    let log = std::fs::read_to_string(run.join("logs/worker-0.log")).expect("worker log");
    median(trial_seconds(&log))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for mib in [1024, 4096] {
        // Alone and supervised runs alternate, so drift on a shared machine hits both alike;
        // the figure is the median of the paired ratios, with their range.
        let mut ratios = Vec::new();
        let (mut a_all, mut s_all) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let (a, s) = (alone(mib), supervised(mib));
            ratios.push(s / a - 1.0);
            a_all.push(a);
            s_all.push(s);
        }
        let low = ratios.iter().copied().fold(f64::MAX, f64::min);
        let high = ratios.iter().copied().fold(f64::MIN, f64::max);
        println!(
            "observer effect, {} GiB worker: alone {:.1} ms/trial, under memwarden {:.1} ms/trial, slowdown {:+.2}% (paired runs from {:+.2}% to {:+.2}%)",
            mib / 1024,
            median(a_all) * 1e3,
            median(s_all) * 1e3,
            median(ratios) * 100.0,
            low * 100.0,
            high * 100.0
        );
    }
}
