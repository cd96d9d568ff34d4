//! `memwarden demo`: the bundled default. Two fixture workers for about a minute: worker 0
//! leaks 24 MiB in each trial with batch_size=64 (with noise and a transient spike to make it
//! realistic), worker 1 is healthy. Then the analysis of the recording.

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
        "24",
        "--leak-when",
        "batch_size=64",
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
        max_stall: Duration::from_millis(5),
        max_hold: 0.5,
        trial_regex: None,
        duration: None,
        segment: Duration::from_secs(600),
        log_cap: crate::supervisor::log_file::DEFAULT_CAP,
    };
    let config = record.harness_config(Duration::from_secs(5));
    let (code, concluded) = crate::attended::record_and_conclude(
        config,
        Workload::Spawn { argv, workers: 2 },
        &Default::default(),
    )?;
    let Some(concluded) = concluded else {
        anyhow::bail!("the demo's recording could not be analysed (see the warning above)");
    };
    println!("{}", crate::analysis::text::findings(&concluded.findings));
    let dir = run_dir.display();
    let report = concluded
        .report
        .map_or(String::new(), |r| r.display().to_string());
    eprintln!(
        "memwarden: demo done: worker 0 leaked 24 MiB in each trial with batch_size=64, worker 1 did not.\nThe report: {report}\nMore with:\n  memwarden analyze {dir} --json\n  memwarden check {dir} --max-growth 1MiB/trial\n  memwarden export {dir} --table trials"
    );
    Ok(code)
}
