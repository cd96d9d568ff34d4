//! What `memwarden analyze` holds per trial: the peak RSS of the real binary on recordings
//! alike in everything (one hour of one worker at 10 Hz) but their number of trials, from 1,000
//! to 1,000,000 (sub-second trials, each with parameters and a memory reading at its end, as a
//! fast search or a pytest suite makes). The difference over the difference in trials is the
//! cost of a trial; the target is under 1 KB at a million trials.
//!
//! `cargo bench --bench trials_memory` (MEMWARDEN_BENCH_TRIALS=1000,100000 for other sizes).

use memwarden::recording::{
    compact_segment, encode, write_manifest, EndMemory, EndReader, Event, EventKind, Manifest,
    ProcessSample, RunStatus, SystemSample, Tick, TrialSource, FORMAT_VERSION,
};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const HZ: u64 = 10;
const TICKS: u64 = 3600 * HZ;
const START_WALL_NS: u64 = 1_795_000_000_000_000_000;

fn write(dir: &Path, trials: u64) {
    let mut events = Vec::new();
    let mut event = |t_ns: u64, kind: EventKind| {
        let e = Event {
            t_ns,
            wall_ns: START_WALL_NS + t_ns,
            worker: Some(0),
            kind,
        };
        encode(&e, &mut events).expect("encodes");
    };
    event(
        0,
        EventKind::WorkerStart {
            pid: 4242,
            pgid: 4242,
            attempt: 0,
        },
    );
    let span_ns = TICKS * 1_000_000_000 / HZ;
    let step = span_ns / (trials + 1);
    for i in 0..trials {
        let start = (i + 1) * step;
        let bs = if i % 2 == 0 { 16 } else { 64 };
        event(
            start,
            EventKind::TrialStart {
                trial: i.to_string().into(),
                params: std::sync::Arc::new(
                    [
                        ("lr".into(), serde_json::json!(1e-3 * (1 + i % 7) as f64)),
                        ("bs".into(), serde_json::json!(bs)),
                    ]
                    .into_iter()
                    .collect(),
                ),
                source: TrialSource::Optuna,
            },
        );
        event(
            start + step / 2,
            EventKind::TrialEnd {
                trial: i.to_string().into(),
                state: "complete".into(),
                value: Some(serde_json::json!(0.5)),
                memory: Some(EndMemory {
                    anon_bytes: (400 << 20) + i * 64,
                    file_bytes: 100 << 20,
                    shmem_bytes: 0,
                    read_by: EndReader::Worker,
                    delay_ns: 0,
                }),
            },
        );
    }
    std::fs::write(dir.join("events.log"), &events).expect("events written");
    let mut buf = Vec::new();
    for tick in 0..TICKS {
        let t_ns = tick * 1_000_000_000 / HZ;
        let rss = (500 << 20) + tick * 1024 * 1024 * 1024 / TICKS / 64;
        let tick = Tick {
            t_ns,
            wall_ns: START_WALL_NS + t_ns,
            system: SystemSample {
                mem_total_bytes: 33_285_996_544,
                mem_available_bytes: 20_000_000_000,
                harness_rss_bytes: 24 << 20,
                ..SystemSample::default()
            },
            processes: vec![ProcessSample {
                worker: 0,
                pid: 4242,
                rss,
                anon: rss * 4 / 5,
                file: rss / 5,
                shmem: 0,
                swap: 0,
                pss: (tick % 50 == 0).then_some(rss),
                uss: (tick % 50 == 0).then_some(rss * 4 / 5),
                gpu: None,
            }],
            gpus: Vec::new(),
            cgroups: Vec::new(),
        };
        encode(&tick, &mut buf).expect("encodes");
    }
    let segment = dir.join("samples-000001.log");
    std::fs::File::create(&segment)
        .and_then(|mut f| f.write_all(&buf))
        .expect("segment written");
    compact_segment(&segment).expect("compacts");
    write_manifest(dir, &manifest(span_ns)).expect("manifest written");
    let mut stop = Vec::new();
    encode(
        &Event {
            t_ns: span_ns,
            wall_ns: START_WALL_NS + span_ns,
            worker: None,
            kind: EventKind::Stop {
                reason: "bench".into(),
            },
        },
        &mut stop,
    )
    .expect("encodes");
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("events.log"))
        .and_then(|mut f| f.write_all(&stop))
        .expect("stop written");
}

/// The recording's manifest: one worker of `python search.py`, finished after `span_ns`.
fn manifest(span_ns: u64) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        memwarden_version: "bench".into(),
        mode: "run".into(),
        command: vec!["python".into(), "search.py".into()],
        workers: 1,
        host: "bench".into(),
        boot_id: "bench".into(),
        kernel: "bench".into(),
        start_wall_ns: START_WALL_NS,
        start_rfc3339: "2026-11-18T00:00:00Z".into(),
        interval_ns: 1_000_000_000 / HZ,
        page_size: 4096,
        status: RunStatus::Finished,
        end_wall_ns: Some(START_WALL_NS + span_ns),
        end_reason: Some("bench".into()),
        memory_cgroup: None,
        harness: None,
        orchestrator: None,
    }
}

/// Peak RSS (KiB) and wall time of `memwarden analyze DIR`, from the kernel's accounting of
/// the child.
fn analyze(dir: &Path) -> (u64, f64) {
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .arg("analyze")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("analyze starts");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 on our own child, with valid pointers to a status word and a rusage.
    let waited = unsafe { libc::wait4(pid.as_raw(), &mut status, 0, usage.as_mut_ptr()) };
    assert_eq!(waited, pid.as_raw(), "wait4");
    let _ = child.try_wait();
    // SAFETY: wait4 succeeded, so it filled the rusage.
    let usage = unsafe { usage.assume_init() };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) <= 1,
        "analyze failed: status {status}"
    );
    (usage.ru_maxrss as u64, started.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    // `--write N DIR`: the recording is written by a child of its own. The kernel starts an
    // exec'd child's peak RSS at its parent's (vfork shares the address space until the exec),
    // so a bench that built a million-trial recording itself reported its own peak as
    // analyze's: the figure for 1,000 trials read 84.6 MiB, analyze alone peaks at 42.
    if let Some(at) = args.iter().position(|a| a == "--write") {
        let trials = args[at + 1].parse().expect("--write N DIR");
        write(Path::new(&args[at + 2]), trials);
        return;
    }
    let sizes: Vec<u64> = std::env::var("MEMWARDEN_BENCH_TRIALS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000]);
    let mut measured = Vec::new();
    for &trials in &sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = std::process::Command::new(std::env::current_exe().expect("own path"))
            .arg("--write")
            .arg(trials.to_string())
            .arg(dir.path())
            .status()
            .expect("writer starts");
        assert!(written.success(), "writing the recording failed: {written}");
        // MEMWARDEN_BENCH_KEEP=DIR keeps a copy of each recording there (DIR/N), for profiling.
        if let Some(keep) = std::env::var_os("MEMWARDEN_BENCH_KEEP") {
            let copy = Path::new(&keep).join(trials.to_string());
            let _ = std::fs::create_dir_all(&copy);
            for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
                let _ = std::fs::copy(entry.path(), copy.join(entry.file_name()));
            }
        }
        let events_mib = std::fs::metadata(dir.path().join("events.log"))
            .map(|m| m.len())
            .unwrap_or(0) as f64
            / 1048576.0;
        let (peak_kib, seconds) = analyze(dir.path());
        println!(
            "{trials:>9} trials: analyze peak RSS {:>7.1} MiB, {seconds:>6.2} s (events.log {events_mib:.0} MiB)",
            peak_kib as f64 / 1024.0
        );
        measured.push((trials, peak_kib));
    }
    if let (Some(&(n0, r0)), Some(&(n1, r1))) = (measured.first(), measured.last()) {
        if n1 > n0 {
            let per_trial = (r1 as f64 - r0 as f64) * 1024.0 / (n1 - n0) as f64;
            println!("per trial: {per_trial:.0} bytes (from {n0} to {n1} trials)");
        }
    }
}
