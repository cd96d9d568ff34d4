//! A synthetic recording equal to 12 hours × 8 workers × 10 Hz, written with the real framing
//! into 10-minute segments and compacted with the real compactor: 432,000 ticks of 16
//! processes (every worker plus one dataloader child). Memory follows a noisy walk with page
//! granularity; worker 0's main process also leaks 2 MiB per trial. PSS/USS appear on one tick
//! in 50 (what the CPU budget allows for multi-GiB workers). Trials last a minute, so each
//! worker runs 720 of them, with trial-boundary markers in the events.

use memwarden::recording::{
    compact_segment, encode, write_manifest, Event, EventKind, Manifest, ProcessSample, RunStatus,
    SystemSample, Tick, TrialSource, FORMAT_VERSION,
};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

pub const HOURS: u64 = 12;
pub const WORKERS: u32 = 8;
pub const HZ: u64 = 10;
const SEGMENT_TICKS: u64 = 6000;
const TRIAL_TICKS: u64 = 600;

pub struct Written {
    pub ticks: u64,
    pub rows: u64,
    pub raw_bytes: u64,
    pub compact_time: Duration,
    pub elapsed: Duration,
}

pub fn write(dir: &Path) -> Written {
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
    let mut compact_time = Duration::ZERO;
    let mut events = Vec::new();
    let event = |t_ns: u64, worker: u32, kind: EventKind, events: &mut Vec<u8>| {
        let e = Event {
            t_ns,
            wall_ns: 1_795_000_000_000_000_000 + t_ns,
            worker: Some(worker),
            kind,
        };
        encode(&e, events).expect("encodes");
    };
    for w in 0..WORKERS {
        event(
            0,
            w,
            EventKind::WorkerStart {
                pid: 100_000 + 2 * w as i32,
                pgid: 100_000 + 2 * w as i32,
                attempt: 0,
            },
            &mut events,
        );
    }
    for segment in 0..ticks / SEGMENT_TICKS {
        let path = dir.join(format!("samples-{:06}.log", segment + 1));
        let mut buf = Vec::new();
        for k in 0..SEGMENT_TICKS {
            let tick = segment * SEGMENT_TICKS + k;
            let t_ns = tick * 1_000_000_000 / HZ + random() % 200_000;
            if tick % TRIAL_TICKS == 0 {
                trial_boundary(tick, t_ns, &event, &mut events);
                rss[0] += 2 << 20;
            }
            let processes = (0..WORKERS * 2)
                .map(|i| {
                    let r = &mut rss[i as usize];
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
            let system = system(tick, &mut random);
            let tick = Tick {
                t_ns,
                wall_ns: 1_795_000_000_000_000_000 + t_ns,
                system,
                processes,
                gpus: Vec::new(),
                cgroups: Vec::new(),
            };
            encode(&tick, &mut buf).expect("encodes");
        }
        raw_bytes += buf.len() as u64;
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&buf))
            .expect("segment written");
        let compacting = Instant::now();
        compact_segment(&path).expect("compacts");
        compact_time += compacting.elapsed();
    }
    std::fs::write(dir.join("events.log"), &events).expect("events written");
    let manifest = manifest(ticks);
    write_manifest(dir, &manifest).expect("manifest written");
    Written {
        ticks,
        rows,
        raw_bytes,
        compact_time,
        elapsed: started.elapsed(),
    }
}

/// The system's memory at tick `tick`: a 31 GiB host with some 20 GB available.
fn system(tick: u64, random: &mut impl FnMut() -> u64) -> SystemSample {
    SystemSample {
        mem_total_bytes: 33_285_996_544,
        mem_available_bytes: 20_000_000_000 - 4096 * (random() % 100_000),
        swap_total_bytes: 0,
        swap_free_bytes: 0,
        psi_some_avg10: Some((random() % 100) as f32 / 100.0),
        psi_full_avg10: Some(0.0),
        psi_some_total_us: Some(tick * 13),
        psi_full_total_us: Some(tick * 3),
        harness_rss_bytes: 24 << 20,
        ..SystemSample::default()
    }
}

/// The recording's manifest: 8 workers of `python train.py`, finished after `ticks` ticks.
fn manifest(ticks: u64) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        memwarden_version: "bench".into(),
        mode: "run".into(),
        command: vec!["python".into(), "train.py".into()],
        workers: WORKERS,
        host: "bench".into(),
        boot_id: "bench".into(),
        kernel: "bench".into(),
        start_wall_ns: 1_795_000_000_000_000_000,
        start_rfc3339: "2026-11-18T00:00:00Z".into(),
        interval_ns: 1_000_000_000 / HZ,
        page_size: 4096,
        status: RunStatus::Finished,
        end_wall_ns: Some(1_795_000_000_000_000_000 + ticks * 100_000_000),
        end_reason: Some("bench".into()),
        memory_cgroup: None,
        harness: None,
        orchestrator: None,
    }
}

/// Every worker's trial ends (after the first) and the next starts at `tick`.
fn trial_boundary(
    tick: u64,
    t_ns: u64,
    event: &impl Fn(u64, u32, EventKind, &mut Vec<u8>),
    events: &mut Vec<u8>,
) {
    let trial = (tick / TRIAL_TICKS).to_string();
    for w in 0..WORKERS {
        if tick > 0 {
            let ended = (tick / TRIAL_TICKS - 1).to_string();
            event(
                t_ns,
                w,
                EventKind::TrialEnd {
                    trial: ended.into(),
                    state: "complete".into(),
                    value: None,
                    memory: None,
                },
                events,
            );
        }
        event(
            t_ns,
            w,
            EventKind::TrialStart {
                trial: trial.clone().into(),
                params: Default::default(),
                source: TrialSource::Marker,
            },
            events,
        );
    }
}
