//! The overnight incident as a recording: two Optuna workers on a 31 GiB machine leak from
//! about 2 GiB to about 14 GiB each over 45 minutes in trials of 10 seconds, until 94% of memory
//! is used; then their in-worker brake refuses a new trial every 4 seconds each (hundreds of
//! lines in their logs; the refused trials never start) while available memory sits at 1.8 GiB,
//! and nothing restarts them. One tick a second for an hour.
//! `fixtures/runs/overnight` is this recording; `MEMWARDEN_UPDATE_REPORTS=1` rewrites it.

use memwarden::recording::{
    compact_segment, encode, write_manifest, Event, EventKind, Manifest, ProcessSample, RunStatus,
    SystemSample, Tick, TrialSource, FORMAT_VERSION,
};
use std::path::Path;

use memwarden::units::GIB;
const TOTAL: u64 = 31 * (1 << 30);
const START_WALL_NS: u64 = 1_795_298_400_000_000_000; // 2026-11-22T22:00:00Z
const S: u64 = 1_000_000_000;
/// Seconds of growth before memory runs out, and of the whole recording.
const GROWTH_S: u64 = 2700;
const RUN_S: u64 = 3600;
/// Seconds from one trial's start to the next's.
const TRIAL_S: u64 = 10;

fn event(t_s: f64, worker: u32, kind: EventKind) -> Event {
    let t_ns = (t_s * 1e9) as u64;
    Event {
        t_ns,
        wall_ns: START_WALL_NS + t_ns,
        worker: Some(worker),
        kind,
    }
}

/// Each worker's PSS at `t` seconds: 2 GiB, growing to its final size over the growth phase,
/// in steps at each trial's end (retained growth per trial).
fn pss(worker: u32, t: u64) -> u64 {
    let (start, end) = if worker == 0 {
        (2.0, 13.6)
    } else {
        (2.2, 14.2)
    };
    let trials_done = (t.min(GROWTH_S) / TRIAL_S) as f64;
    let per_trial = (end - start) / (GROWTH_S / TRIAL_S) as f64;
    ((start + per_trial * trials_done) * GIB) as u64
}

pub fn write(dir: &Path) {
    std::fs::create_dir_all(dir).expect("run dir");
    let mut events = Vec::new();
    for worker in 0..2 {
        events.push(event(
            0.0,
            worker,
            EventKind::WorkerStart {
                pid: 41_000 + worker as i32,
                pgid: 41_000 + worker as i32,
                attempt: 0,
            },
        ));
        // Trials of 9 s while memory lasts (staggered by 5 s between the workers)...
        let mut trial = 0u32;
        let offset = f64::from(worker) * 5.0;
        let mut t = offset;
        while t + 9.0 < GROWTH_S as f64 {
            let mut params = std::collections::BTreeMap::new();
            params.insert(
                "batch_size".to_string(),
                serde_json::json!([32, 64, 128][trial as usize % 3]),
            );
            events.push(event(
                t,
                worker,
                EventKind::TrialStart {
                    trial: trial.to_string().into(),
                    params: std::sync::Arc::new(
                        params.into_iter().map(|(k, v)| (k.into(), v)).collect(),
                    ),
                    source: TrialSource::Optuna,
                },
            ));
            events.push(event(
                t + 9.0,
                worker,
                EventKind::TrialEnd {
                    trial: trial.to_string().into(),
                    state: "complete".into(),
                    value: Some(serde_json::json!(0.5)),
                    memory: None,
                },
            ));
            trial += 1;
            t += TRIAL_S as f64;
        }
        write_brake_log(dir, worker, trial);
    }
    events.sort_by_key(|e| e.t_ns);
    let mut framed = Vec::new();
    for e in &events {
        encode(e, &mut framed).expect("encodes");
    }
    std::fs::write(dir.join("events.log"), framed).expect("events written");

    let mut samples = Vec::new();
    for second in 0..RUN_S {
        let t_ns = second * S;
        let workers: Vec<u64> = (0..2).map(|w| pss(w, second)).collect();
        let others = (1.35 * GIB) as u64;
        let available = TOTAL - workers.iter().sum::<u64>() - others;
        let processes = (0..2u32)
            .map(|w| ProcessSample {
                worker: w,
                pid: 41_000 + w as i32,
                rss: workers[w as usize] + (200 << 20),
                anon: workers[w as usize],
                file: 200 << 20,
                shmem: 0,
                swap: 0,
                pss: Some(workers[w as usize]),
                uss: Some(workers[w as usize]),
                gpu: None,
            })
            .collect();
        let pressure = if available < (2 * (1u64 << 30)) {
            4.0
        } else {
            0.0
        };
        let tick = Tick {
            t_ns,
            wall_ns: START_WALL_NS + t_ns,
            system: SystemSample {
                mem_total_bytes: TOTAL,
                mem_available_bytes: available,
                swap_total_bytes: 0,
                swap_free_bytes: 0,
                psi_some_avg10: Some(pressure * 2.0),
                psi_full_avg10: Some(pressure),
                psi_some_total_us: Some(second * 1000),
                psi_full_total_us: Some(second * 500),
                harness_rss_bytes: 30 << 20,
                ..SystemSample::default()
            },
            processes,
            gpus: Vec::new(),
            cgroups: Vec::new(),
        };
        encode(&tick, &mut samples).expect("encodes");
    }
    let log = dir.join("samples-000001.log");
    std::fs::write(&log, samples).expect("samples written");
    compact_segment(&log).expect("compacts");
    write_manifest(dir, &manifest()).expect("manifest written");
}

/// Once memory is short, the in-worker brake refuses each new trial (`trial` on), every 4 s,
/// in the worker's log.
fn write_brake_log(dir: &Path, worker: u32, trial: u32) {
    let mut log = String::new();
    let offset = f64::from(worker) * 5.0;
    let mut t = GROWTH_S as f64 + offset / 5.0;
    while t < RUN_S as f64 - 1.0 {
        log.push_str(&format!(
            "{t:.6} err [W] emergency brake: available memory 1.8 GiB, refusing trial {trial}\n"
        ));
        t += 4.0;
    }
    std::fs::create_dir_all(dir.join("logs")).expect("logs dir");
    std::fs::write(dir.join(format!("logs/worker-{worker}.log")), log).expect("log written");
}

/// The night's manifest: two Optuna workers, a run that never stopped cleanly.
fn manifest() -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        memwarden_version: "0.1.0".into(),
        mode: "run".into(),
        command: vec!["python".into(), "optuna_search.py".into()],
        workers: 2,
        host: "gpu-box".into(),
        boot_id: "00000000-0000-0000-0000-000000000000".into(),
        kernel: "6.8.0".into(),
        start_wall_ns: START_WALL_NS,
        start_rfc3339: "2026-11-22T22:00:00.000Z".into(),
        interval_ns: S,
        page_size: 4096,
        status: RunStatus::Running,
        end_wall_ns: None,
        end_reason: None,
        memory_cgroup: None,
        harness: None,
        orchestrator: None,
    }
}
