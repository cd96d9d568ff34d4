//! The observer effect: how much slower a worker's trials run under memwarden's default sampling
//! than alone, for a 1 GiB and a 4 GiB worker. Each trial sweeps its whole working set twice
//! (read-modify-write) and allocates and frees a transient quarter of it (page faults take the
//! mmap lock that smaps_rollup also takes). Alone and supervised runs alternate, five pairs.
//!
//! `cargo bench --bench observer` (needs ~5 GiB free; takes a few minutes). `-- map` runs the
//! map-unmap worker instead (see `map_loop_args`).

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

/// The map-unmap worker: it holds 4 GiB and in 1-second trials (200 ms gaps) maps, touches
/// and unmaps 1 MiB in a loop, as NumPy temporaries above malloc's mmap threshold do; each
/// map and unmap waits for the mmap lock a smaps read holds.
fn map_loop_args() -> Vec<String> {
    [
        "fixture-worker",
        "--trials",
        "12",
        "--trial-ms",
        "1000",
        "--gap-ms",
        "200",
        "--work-mib",
        "4096",
        "--work-passes",
        "0",
        "--map-loop-mib",
        "1",
    ]
    .map(str::to_string)
    .to_vec()
}

/// Per trial (first skipped): iterations per second, and the worst iteration in ms.
fn map_loop_trials(text: &str) -> (Vec<f64>, f64) {
    let rates = text
        .lines()
        .filter(|l| l.contains("MEMWARDEN trial_end"))
        .filter_map(|l| l.rsplit("value=").next()?.trim().parse().ok())
        .skip(1)
        .collect();
    let worst_ms = text
        .lines()
        .filter_map(|l| l.split("worst_us ").nth(1)?.trim().parse::<f64>().ok())
        .skip(1)
        .fold(0.0, f64::max)
        / 1e3;
    (rates, worst_ms)
}

/// One run of the map-unmap worker, alone or under `harness run`: median iterations/s and the
/// worst iteration inside its trials.
fn map_loop_run(harness: Option<&std::ffi::OsStr>) -> (f64, f64) {
    let text = match harness {
        None => {
            let out = Command::new(EXE)
                .args(map_loop_args())
                .stderr(Stdio::null())
                .output()
                .expect("fixture runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        Some(harness) => {
            let dir = tempfile::tempdir().expect("tempdir");
            let run = dir.path().join("run");
            let status = Command::new(harness)
                .arg("run")
                .arg("--out")
                .arg(&run)
                .arg("--")
                .arg(EXE)
                .args(map_loop_args())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("memwarden runs");
            assert!(status.success());
            std::fs::read_to_string(run.join("logs/worker-0.log")).expect("worker log")
        }
    };
    let (rates, worst_ms) = map_loop_trials(&text);
    (median(rates), worst_ms)
}

/// `cargo bench --bench observer -- map`: alternating pairs; MEMWARDEN_BENCH_HARNESS=EXE
/// supervises with another build (an older one, for a before figure) in a third column.
fn map_loop() {
    let other = std::env::var_os("MEMWARDEN_BENCH_HARNESS");
    let (mut ratios, mut other_ratios) = (Vec::new(), Vec::new());
    let (mut worst, mut other_worst, mut alone_worst) = (0.0f64, 0.0f64, 0.0f64);
    // MEMWARDEN_BENCH_PAIRS=N for more pairs where the machine is noisy.
    let pairs = std::env::var("MEMWARDEN_BENCH_PAIRS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    for _ in 0..pairs {
        let (alone_rate, alone_stall) = map_loop_run(None);
        let (rate, stall) = map_loop_run(Some(EXE.as_ref()));
        ratios.push(rate / alone_rate);
        worst = worst.max(stall);
        alone_worst = alone_worst.max(alone_stall);
        if let Some(other) = &other {
            let (rate, stall) = map_loop_run(Some(other));
            other_ratios.push(rate / alone_rate);
            other_worst = other_worst.max(stall);
        }
        println!("pair: alone {alone_rate:.0}/s (worst {alone_stall:.1} ms), under memwarden {rate:.0}/s (worst {stall:.1} ms)");
    }
    println!(
        "map-unmap worker, 4 GiB: under memwarden {:.3}x alone's iterations/s (median of {} pairs), worst iteration in trials {:.1} ms (alone {:.1} ms)",
        median(ratios.clone()),
        ratios.len(),
        worst,
        alone_worst
    );
    if !other_ratios.is_empty() {
        println!(
            "the other harness: {:.3}x alone's, worst iteration in trials {:.1} ms",
            median(other_ratios),
            other_worst
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::args().any(|a| a == "map") {
        map_loop();
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
