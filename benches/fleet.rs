//! Past one machine, at scale: `publish` of a 12-hour, 8-worker, 10 Hz recording (see
//! `synthetic`), and `memwarden fleet` over 1,000 published runs of 8 workers each (that run's
//! `runs`, `findings` and `parameters` partitions copied under 10 hosts × 100 run names; `fleet`
//! reads only those tables, never the samples). The fleet is timed as users run it: the
//! release binary, its wall time and its peak RSS (getrusage of the child), best of 3.
//!
//! `cargo bench --bench fleet` (a few minutes; writes to a temporary directory).

mod synthetic;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const RUNS: usize = 1000;
const HOSTS: usize = 10;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    let run_dir = temp.path().join("twelve-hours");
    std::fs::create_dir(&run_dir).expect("run dir");
    let written = synthetic::write(&run_dir);
    println!(
        "synthetic recording: {} ticks, {} process rows, {:.0} MiB raw, written in {:.1} s ({:.1} s compacting)",
        written.ticks,
        written.rows,
        written.raw_bytes as f64 / 1048576.0,
        written.elapsed.as_secs_f64(),
        written.compact_time.as_secs_f64()
    );
    let dest = temp.path().join("fleet");
    let started = Instant::now();
    let published = memwarden::fleet::publish(&run_dir, &dest).expect("published");
    let publish_s = started.elapsed().as_secs_f64();
    let rows: usize = published.rows.iter().map(|r| r.1).sum();
    println!(
        "publish, 12 h x 8 workers x 10 Hz ({} ticks): {publish_s:.1} s, {rows} rows in {} tables",
        written.ticks,
        published.rows.len()
    );
    for table in ["runs", "findings", "parameters"] {
        let from = published.key.partition(&dest, table);
        for i in 0..RUNS {
            let key = memwarden::recording::layout::RunKey::new(
                &format!("host-{:02}", i % HOSTS),
                &format!("run-{i:04}"),
            );
            copy_dir(&from, &key.partition(&dest, table));
        }
    }
    let exe = env!("CARGO_BIN_EXE_memwarden");
    let mut best: Option<(f64, u64)> = None;
    for _ in 0..3 {
        let started = Instant::now();
        let status = Command::new(exe)
            .arg("fleet")
            .arg(&dest)
            .arg("--json")
            .stdout(Stdio::null())
            .status()
            .expect("memwarden fleet runs");
        let seconds = started.elapsed().as_secs_f64();
        assert!(status.success(), "memwarden fleet failed");
        let peak = children_peak_rss_bytes();
        best = Some(best.map_or((seconds, peak), |(s, p)| (s.min(seconds), p.max(peak))));
    }
    let (seconds, peak) = best.expect("three runs");
    println!(
        "fleet over {} runs ({} published + {RUNS} copies) x 8 workers on {HOSTS} hosts: {seconds:.2} s (best of 3), peak RSS {:.0} MiB",
        RUNS + 1,
        1,
        peak as f64 / (1024.0 * 1024.0)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("partition");
    for entry in std::fs::read_dir(from).expect("partition") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// The largest peak RSS of any child reaped so far (getrusage RUSAGE_CHILDREN; kB on Linux).
fn children_peak_rss_bytes() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_maxrss as u64 * 1024
}
