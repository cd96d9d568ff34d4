//! How big a 12-hour, 8-worker, 10 Hz recording is after compaction (see `synthetic` for what
//! it holds).
//!
//! `cargo bench --bench recording_size` (about a minute; writes to a temporary directory).

mod synthetic;

use synthetic::{HOURS, HZ, WORKERS};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let written = synthetic::write(dir.path());
    let parquet: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let (ticks, rows) = (written.ticks, written.rows);
    println!("recording size, {HOURS} h x {WORKERS} workers (16 processes) x {HZ} Hz: {ticks} ticks, {rows} process rows");
    println!(
        "  raw framed segments: {:.0} MiB ({:.1} bytes/row)",
        mib(written.raw_bytes),
        written.raw_bytes as f64 / rows as f64
    );
    println!(
        "  compacted Parquet:   {:.1} MiB ({:.2} bytes/row, {:.2} MiB/hour)",
        mib(parquet),
        parquet as f64 / rows as f64,
        mib(parquet) / HOURS as f64
    );
    let segments = (ticks / 6000) as f64;
    println!(
        "  compaction time: {:.1} s total, {:.2} s per 10-minute segment; whole bench {:.1} s",
        written.compact_time.as_secs_f64(),
        written.compact_time.as_secs_f64() / segments,
        written.elapsed.as_secs_f64()
    );
}
