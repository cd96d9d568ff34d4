//! CPU cost of sampling one process per tick, against the bare cost of reading the same /proc
//! files through already-open descriptors with no parsing (the physical limit).
//!
//! `cargo bench --bench sampling`. The target is a fixture worker holding 64 MiB.

use criterion::{criterion_group, criterion_main, Criterion};
use memwarden::probe::{ProcRoot, ProcessHandle};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::process::{Child, Command, Stdio};

struct Target(Child);

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn target(mib: u32) -> Target {
    let child = Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args([
            "fixture-worker",
            "--trials",
            "1",
            "--trial-ms",
            "600000",
            "--leak-mib",
            &mib.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("fixture worker starts");
    std::thread::sleep(std::time::Duration::from_millis(300 + u64::from(mib)));
    Target(child)
}

fn bare(files: &[File], buf: &mut [u8]) -> usize {
    files.iter().map(|f| f.read_at(buf, 0).unwrap_or(0)).sum()
}

fn bench(c: &mut Criterion) {
    let worker = target(64);
    let pid = worker.0.id() as i32;
    let root = ProcRoot::default();
    let mut handle = ProcessHandle::try_open(&root, pid).expect("target is alive");
    let mut buf = vec![0u8; 1 << 16];
    let open = |rel: &str| File::open(format!("/proc/{pid}/{rel}")).expect("proc file");

    let mut group = c.benchmark_group("status");
    let status = [open("status")];
    group.bench_function("bare read", |b| b.iter(|| bare(&status, &mut buf)));
    group.bench_function("memwarden cheap counters", |b| {
        b.iter(|| handle.try_cheap(true))
    });
    // Between status reads: statm shows the target's memory as it was (the target idles).
    group.bench_function("memwarden cheap counters, unchanged", |b| {
        b.iter(|| handle.try_cheap(false))
    });
    group.finish();

    let mut group = c.benchmark_group("tick per process");
    let tick_files = [open("status"), open(&format!("task/{pid}/children"))];
    group.bench_function("bare read", |b| b.iter(|| bare(&tick_files, &mut buf)));
    group.bench_function("memwarden", |b| {
        b.iter(|| (handle.try_cheap(false), handle.try_main_children()))
    });
    // Once a second the sampler walks every thread's children file instead.
    group.bench_function("memwarden, thread walk (1/s)", |b| {
        b.iter(|| handle.try_children())
    });
    group.finish();

    let mut group = c.benchmark_group("smaps_rollup 64 MiB");
    let rollup = [open("smaps_rollup")];
    group.bench_function("bare read", |b| b.iter(|| bare(&rollup, &mut buf)));
    group.bench_function("memwarden", |b| b.iter(|| handle.try_rollup()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
