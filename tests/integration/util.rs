//! Helpers: running the real binary, reading its exports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use memwarden::units::MIB;

pub fn memwarden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memwarden"))
}

pub fn exe() -> String {
    env!("CARGO_BIN_EXE_memwarden").to_string()
}

/// `memwarden run --out DIR RUN_ARGS -- memwarden fixture-worker FIXTURE_ARGS`, each argument
/// list written as one string of words.
pub fn fixture_run(dir: &Path, run_args: &str, fixture_args: &str) -> Command {
    let mut command = memwarden();
    command
        .arg("run")
        .arg("--out")
        .arg(dir)
        .args(run_args.split_whitespace());
    command
        .arg("--")
        .arg(exe())
        .arg("fixture-worker")
        .args(fixture_args.split_whitespace());
    command
}

/// Runs `fixture_run` to its end and asserts that memwarden succeeded.
pub fn run_fixture(dir: &Path, run_args: &str, fixture_args: &str) -> Output {
    let out = fixture_run(dir, run_args, fixture_args)
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

/// Polls `condition` until it holds; fails the test after 20 s.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    assert!(
        eventually(std::time::Duration::from_secs(20), condition),
        "timed out waiting until {what}"
    );
}

/// Polls `condition` every 20 ms until it holds (true) or `within` has passed (false): the
/// one way the tests wait, for a caller that has something to do when the wait fails.
pub fn eventually(within: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every pid seen per worker, once the run directory exists (empty before).
pub fn seen(dir: &Path) -> BTreeMap<u32, Vec<i32>> {
    if dir.join("manifest.json").exists() {
        pids(dir).1
    } else {
        BTreeMap::new()
    }
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

/// Per trial of one pid: `(trial index, value)` of `column` at the last sample in the gap after
/// the trial's end (before the next trial starts) that has the column: the memory the trial
/// retained. The last trial's gap is half as long as the one before it (after it the worker
/// frees everything on its way out). A trial whose gap holds no such sample (a busy machine) is left
/// out, not shifted.
pub fn retained_per_trial(dir: &Path, worker: u32, pid: i32, column: &str) -> Vec<(f64, f64)> {
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
        let gap_end = |k: usize| Some(trials.get(k + 1)?.start_ns? as f64);
        let previous_gap = k
            .checked_sub(1)
            .and_then(|p| Some(gap_end(p)? - trials[p].end_ns? as f64));
        // The last trial has no next start: half the gap before it, since the worker frees
        // its memory on its way out about one gap after the end, and a late boundary stamp
        // under load once let a full gap reach into that (exec's slope read 5.37 for 8).
        let next = gap_end(k)
            .or(previous_gap.map(|gap| end + gap / 2.0))
            .unwrap_or(f64::INFINITY);
        if let Some((_, value)) = series.iter().rfind(|(t, _)| *t > end && *t < next) {
            retained.push((k as f64, *value));
        }
    }
    retained
}

/// Least-squares slope of `y` against `x`.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
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

pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("listable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Compares a freshly written example (`fresh`) with the one kept in the repository, byte for
/// byte; with `update` (MEMWARDEN_UPDATE_REPORTS set) replaces the kept one instead.
pub fn keep_fresh(fresh: &Path, kept: &Path, update: bool) {
    if update {
        let _ = std::fs::remove_dir_all(kept);
        for file in files(fresh) {
            let target = kept.join(file.strip_prefix(fresh).expect("inside"));
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&file, &target).expect("copy");
        }
        return;
    }
    let relative = |dir: &Path| -> Vec<PathBuf> {
        files(dir)
            .iter()
            .map(|f| f.strip_prefix(dir).expect("inside").to_path_buf())
            .collect()
    };
    let listed = relative(fresh);
    let name = kept.display();
    assert_eq!(listed, relative(kept), "{name} lists other files; regenerate with MEMWARDEN_UPDATE_REPORTS=1 cargo test example_reports");
    for file in listed {
        let a = std::fs::read(fresh.join(&file)).expect("fresh");
        let b = std::fs::read(kept.join(&file)).expect("kept");
        assert!(
            a == b,
            "{name}/{} drifted from the code; regenerate with MEMWARDEN_UPDATE_REPORTS=1 cargo test example_reports",
            file.display()
        );
    }
}

/// A Python with what the tests need from PyPI (tests/requirements.txt), in a virtual
/// environment kept outside the clone: `MEMWARDEN_TEST_VENV` (scripts/test sets it), else
/// ~/.cache/memwarden/venv-tests, which a bare `cargo test` makes on first use, once, from the
/// same file. A failure says what to run; it never skips.
pub fn venv_python() -> PathBuf {
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::var_os("MEMWARDEN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/memwarden/venv-tests")
        });
    let python = dir.join("bin/python");
    let complete = dir.join(".complete");
    if !complete.exists() {
        let requirements = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/requirements.txt");
        let _ = std::fs::remove_dir_all(&dir);
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "python3 -m venv {} failed", dir.display());
        let installed = Command::new(dir.join("bin/pip"))
            .args(["install", "-q", "-r", requirements])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "pip could not install {requirements} into {} (PyPI unreachable?); scripts/test does this first",
            dir.display()
        );
        std::fs::write(&complete, "").expect("mark the venv complete");
    }
    python
}

/// `memwarden analyze --json DIR`, which must succeed, as findings.
pub fn analyze(dir: &Path) -> memwarden::analysis::Findings {
    let out = memwarden()
        .args(["analyze", "--json"])
        .arg(dir)
        .output()
        .expect("analyze runs");
    assert!(
        out.status.success(),
        "analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the JSON document parses")
}

/// `memwarden report RUN --out OUT EXTRA`, which must succeed; the report's Markdown.
pub fn report(run: &Path, out: &Path, extra: &[&str]) -> String {
    let output = memwarden()
        .arg("report")
        .arg(run)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("report runs");
    assert!(
        output.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(out.join("report.md")).expect("report.md written")
}

/// `(t_s, worker, action, reason)` of the policy events.
pub fn actions(
    recording: &memwarden::recording::Recording,
) -> Vec<(f64, Option<u32>, String, String)> {
    recording
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            memwarden::recording::EventKind::Policy { action, reason, .. } => Some((
                e.t_ns as f64 / 1e9,
                e.worker,
                action.to_string(),
                reason.clone(),
            )),
            _ => None,
        })
        .collect()
}
