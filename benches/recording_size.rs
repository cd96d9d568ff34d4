//! How big a 12-hour, 8-worker, 10 Hz recording is after compaction: 432,000 ticks, each with 16
//! processes (every worker plus one dataloader child), written with the real framing into
//! 10-minute segments and compacted with the real compactor. Memory values follow a noisy walk
//! with page granularity; PSS/USS appear on one tick in 50 (what the CPU budget allows for
//! multi-GiB workers).
//!
//! `cargo bench --bench recording_size` (about a minute; writes to a temporary directory).

use memwarden::recording::{compact_segment, encode, ProcessSample, SystemSample, Tick};
use std::io::Write;
use std::time::Instant;

const HOURS: u64 = 12;
const WORKERS: u32 = 8;
const HZ: u64 = 10;
const SEGMENT_TICKS: u64 = 6000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ticks = HOURS * 3600 * HZ;
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut rss: Vec<u64> = (0..WORKERS * 2)
        .map(|i| if i % 2 == 0 { 2 << 30 } else { 400 << 20 })
        .collect();
    let (mut raw_bytes, mut rows) = (0u64, 0u64);
    let started = Instant::now();
    let mut compact_time = std::time::Duration::ZERO;
    for segment in 0..ticks / SEGMENT_TICKS {
        let path = dir.path().join(format!("samples-{:06}.log", segment + 1));
        let mut buf = Vec::new();
        for k in 0..SEGMENT_TICKS {
            let tick = segment * SEGMENT_TICKS + k;
            let t_ns = tick * 1_000_000_000 / HZ + random() % 200_000;
            let processes = (0..WORKERS * 2)
                .map(|i| {
                    let r = &mut rss[i as usize];
                    // A slow leak plus page-sized noise.
                    *r =
                        (*r + 4096 * (random() % 64) + 1000).saturating_sub(4096 * (random() % 62));
                    let with_rollup = (tick + u64::from(i)) % 50 == 0;
                    ProcessSample {
                        worker: i / 2,
                        pid: 100_000 + i as i32,
                        rss: *r,
                        anon: *r * 3 / 4,
                        file: *r / 4 - 4096 * (random() % 4),
                        shmem: 4096 * (random() % 4),
                        swap: 0,
                        pss: with_rollup.then_some(*r * 9 / 10),
                        uss: with_rollup.then_some(*r * 8 / 10),
                        gpu: None,
                    }
                })
                .collect::<Vec<_>>();
            rows += processes.len() as u64;
            let system = SystemSample {
                mem_total_bytes: 33_285_996_544,
                mem_available_bytes: 20_000_000_000 - 4096 * (random() % 100_000),
                swap_total_bytes: 0,
                swap_free_bytes: 0,
                psi_some_avg10: Some((random() % 100) as f32 / 100.0),
                psi_full_avg10: Some(0.0),
                psi_some_total_us: Some(tick * 13),
                psi_full_total_us: Some(tick * 3),
                harness_rss_bytes: 24 << 20,
            };
            encode(
                &Tick {
                    t_ns,
                    wall_ns: 1_795_000_000_000_000_000 + t_ns,
                    system,
                    processes,
                },
                &mut buf,
            )
            .expect("encodes");
        }
        raw_bytes += buf.len() as u64;
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&buf))
            .expect("segment written");
        let compacting = Instant::now();
        compact_segment(&path).expect("compacts");
        compact_time += compacting.elapsed();
    }
    let parquet: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("recording size, {HOURS} h x {WORKERS} workers (16 processes) x {HZ} Hz: {ticks} ticks, {rows} process rows");
    println!(
        "  raw framed segments: {:.0} MiB ({:.1} bytes/row)",
        mib(raw_bytes),
        raw_bytes as f64 / rows as f64
    );
    println!(
        "  compacted Parquet:   {:.1} MiB ({:.2} bytes/row, {:.2} MiB/hour)",
        mib(parquet),
        parquet as f64 / rows as f64,
        mib(parquet) / HOURS as f64
    );
    println!(
        "  compaction time: {:.1} s total, {:.2} s per 10-minute segment; whole bench {:.1} s",
        compact_time.as_secs_f64(),
        compact_time.as_secs_f64() / (ticks / SEGMENT_TICKS) as f64,
        started.elapsed().as_secs_f64()
    );
}
