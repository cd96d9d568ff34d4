//! `memwarden demo`: the bundled default. Two fixture workers, worker 0 leaking 16 MiB a trial
//! (with noise and a transient spike to make it realistic), worker 1 healthy, about a minute.

use crate::cli::{DemoArgs, RecordArgs};
use crate::harness::Workload;
use std::time::Duration;

pub fn demo(args: DemoArgs) -> anyhow::Result<u8> {
    let exe = std::env::current_exe()?.to_string_lossy().into_owned();
    let argv: Vec<String> = [
        exe.as_str(),
        "fixture-worker",
        "--trials",
        &args.trials.to_string(),
        "--trial-ms",
        "1000",
        "--gap-ms",
        "500",
        "--leak-mib",
        "16",
        "--only-worker",
        "0",
        "--spike-mib",
        "64",
        "--noise-mib",
        "8",
        "--param",
        "batch_size=16,32,64",
        "--param",
        "lr=0.01,0.001",
    ]
    .map(str::to_string)
    .to_vec();
    let run_dir = args.out.unwrap_or_else(super::default_run_dir);
    let record = RecordArgs {
        out: Some(run_dir.clone()),
        interval: Duration::from_millis(100),
        rollup_cpu: 2.0,
        trial_regex: None,
        duration: None,
        segment: Duration::from_secs(600),
    };
    let code = super::record::record_and_report(
        &record,
        Duration::from_secs(5),
        Workload::Spawn { argv, workers: 2 },
    )?;
    eprintln!(
        "memwarden: demo done: worker 0 leaked 16 MiB per trial, worker 1 did not. Look with:\n  memwarden export {} --table trials\n  memwarden export {} --table samples",
        run_dir.display(),
        run_dir.display()
    );
    Ok(code)
}
