//! Helpers: running the real binary, reading its exports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MIB: f64 = 1024.0 * 1024.0;

pub fn memwarden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memwarden"))
}

pub fn exe() -> String {
    env!("CARGO_BIN_EXE_memwarden").to_string()
}

/// `memwarden run --out DIR [run_args] -- memwarden fixture-worker [fixture_args]`.
pub fn run_fixture(dir: &Path, run_args: &[&str], fixture_args: &[&str]) -> Output {
    let out = memwarden()
        .arg("run")
        .arg("--out")
        .arg(dir)
        .args(run_args)
        .arg("--")
        .arg(exe())
        .arg("fixture-worker")
        .args(fixture_args)
        .output()
        .expect("memwarden runs");
    assert!(
        out.status.success(),
        "memwarden run failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A simple CSV table: header names and rows of raw fields. Only for tables without quoted
/// fields (samples, system).
pub struct Csv {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Csv {
    pub fn column(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    pub fn get(&self, row: &[String], name: &str) -> Option<f64> {
        row[self.column(name)].parse().ok()
    }
}

pub fn export(dir: &Path, table: &str) -> Csv {
    let out = memwarden()
        .args(["export", "--table", table])
        .arg(dir)
        .output()
        .expect("export runs");
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("CSV is UTF-8");
    let mut lines = text.lines();
    let header = lines
        .next()
        .expect("header")
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    Csv { header, rows }
}

/// Per trial of one pid: the `column` value at the last sample in the gap after the trial's end
/// (before the next trial starts) that has the column. That is the memory the trial retained.
pub fn retained_per_trial(dir: &Path, worker: u32, pid: i32, column: &str) -> Vec<f64> {
    let recording = memwarden::recording::Recording::open(dir).expect("recording opens");
    let trials: Vec<_> = recording
        .trials()
        .into_iter()
        .filter(|t| t.worker == worker)
        .collect();
    let samples = export(dir, "samples");
    let series: Vec<(f64, f64)> = samples
        .rows
        .iter()
        .filter(|r| samples.get(r, "pid") == Some(pid as f64))
        .filter_map(|r| Some((samples.get(r, "t_ns")?, samples.get(r, column)?)))
        .collect();
    let mut retained = Vec::new();
    for (k, trial) in trials.iter().enumerate() {
        let end = trial.end_ns.expect("trial ended") as f64;
        let next = trials
            .get(k + 1)
            .and_then(|t| t.start_ns)
            .map_or(f64::INFINITY, |s| s as f64);
        if let Some((_, value)) = series.iter().rfind(|(t, _)| *t > end && *t < next) {
            retained.push(*value);
        }
    }
    retained
}

/// Least-squares slope of `values` against their index.
pub fn slope(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = values.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in values.iter().enumerate() {
        num += (i as f64 - mean_x) * (y - mean_y);
        den += (i as f64 - mean_x).powi(2);
    }
    num / den
}

/// Worker index to main pid, and every pid seen per worker, from the recording's events.
pub fn pids(dir: &Path) -> (BTreeMap<u32, i32>, BTreeMap<u32, Vec<i32>>) {
    use memwarden::recording::EventKind;
    let recording = memwarden::recording::Recording::open(dir).expect("recording opens");
    let mut main = BTreeMap::new();
    let mut all: BTreeMap<u32, Vec<i32>> = BTreeMap::new();
    for event in &recording.events {
        match event.kind {
            EventKind::WorkerStart { pid, .. } => {
                main.insert(event.worker.unwrap_or(0), pid);
            }
            EventKind::ProcessSeen { pid, .. } => {
                all.entry(event.worker.unwrap_or(0)).or_default().push(pid)
            }
            _ => {}
        }
    }
    (main, all)
}

/// Whether `pid` is a live process (a zombie holds no memory and counts as gone).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn run_dir(temp: &tempfile::TempDir) -> PathBuf {
    temp.path().join("run")
}
