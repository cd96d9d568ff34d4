//! `memwarden analyze` and `memwarden report` on a recording equal to 12 hours × 8 workers ×
//! 10 Hz (see `synthetic`): wall time and peak memory of the real binary, as a child process.
//! The targets on the 2-core development machine: analyze under 2 s and 1 GiB, report
//! (analysis, plots and Markdown) under 10 s.
//!
//! `cargo bench --bench analyze` (writing the recording takes about a minute).

mod synthetic;

use std::time::Instant;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // MEMWARDEN_BENCH_KEEP=DIR keeps a copy of the recording there, for profiling.
    let keep = std::env::var_os("MEMWARDEN_BENCH_KEEP");
    let written = synthetic::write(dir.path());
    println!(
        "recording: {} ticks, {} process rows ({:.0} MiB framed) written in {:.1} s, {:.1} s of it compaction",
        written.ticks,
        written.rows,
        written.raw_bytes as f64 / 1048576.0,
        written.elapsed.as_secs_f64(),
        written.compact_time.as_secs_f64()
    );
    if let Some(keep) = &keep {
        let _ = std::fs::create_dir_all(keep);
        for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
            let _ = std::fs::copy(
                entry.path(),
                std::path::Path::new(keep).join(entry.file_name()),
            );
        }
    }
    // MEMWARDEN_BENCH_BASELINE=EXE runs an older build's analyze in alternation with this
    // one on the same recording, and prints the ratio of the medians.
    let baseline = std::env::var_os("MEMWARDEN_BENCH_BASELINE");
    let mut runs = Vec::new();
    let mut baseline_runs = Vec::new();
    for _ in 0..3 {
        runs.push(analyze(
            env!("CARGO_BIN_EXE_memwarden").as_ref(),
            dir.path(),
        ));
        if let Some(exe) = &baseline {
            baseline_runs.push(analyze(exe, dir.path()));
        }
    }
    let mut reports = Vec::new();
    for _ in 0..3 {
        let out = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
            .arg("report")
            .arg(dir.path())
            .arg("--out")
            .arg(out.path())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("report runs");
        assert!(status.success());
        reports.push(started.elapsed().as_secs_f64());
    }
    reports.sort_by(f64::total_cmp);
    // SAFETY: getrusage only writes the struct it is given.
    let max_rss_kib = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    };
    runs.sort_by(f64::total_cmp);
    println!(
        "analyze, {} h x {} workers x {} Hz: median {:.2} s (runs {:.2}..{:.2} s), peak RSS {:.0} MiB",
        synthetic::HOURS,
        synthetic::WORKERS,
        synthetic::HZ,
        runs[1],
        runs[0],
        runs[2],
        max_rss_kib as f64 / 1024.0
    );
    println!(
        "report, same recording: median {:.2} s (runs {:.2}..{:.2} s); peak RSS above covers both",
        reports[1], reports[0], reports[2]
    );
    if !baseline_runs.is_empty() {
        baseline_runs.sort_by(f64::total_cmp);
        println!(
            "baseline analyze, alternating with the runs above: median {:.2} s (runs {:.2}..{:.2} s); this build takes {:.2}x its time",
            baseline_runs[1],
            baseline_runs[0],
            baseline_runs[2],
            runs[1] / baseline_runs[1]
        );
    }
}

/// One `analyze --json` of the recording by `exe`: its wall time, once its finding is checked.
fn analyze(exe: &std::ffi::OsStr, dir: &std::path::Path) -> f64 {
    let started = Instant::now();
    let out = std::process::Command::new(exe)
        .args(["analyze", "--json"])
        .arg(dir)
        .output()
        .expect("analyze runs");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        findings["workers"][0]["verdict"], "leak",
        "the leak in worker 0 is found"
    );
    seconds
}
