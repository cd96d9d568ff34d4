//! `memwarden report`: the incident report and its plots (`report::pipeline`), written beside
//! the recording (or where `--out` says). Without a recording, from worker and kernel logs
//! alone.

use super::EXIT_OK;
use crate::cli::ReportArgs;
use crate::report::pipeline::{write_report_with, ReportJob};
use anyhow::Context;

pub fn report(args: ReportArgs) -> anyhow::Result<u8> {
    let job = ReportJob {
        run_dir: args.run_dir,
        out: args.out,
        svg: args.svg,
        kernel_logs: args.kernel_logs,
        worker_logs: args.worker_logs,
        no_host: args.no_host,
    };
    let (path, findings) = write_report_with(&job, None)?;
    if let Some(file) = &args.findings_json {
        // Without the per-trial list: the soak's supervisor reads this file at every
        // checkpoint, and a list that grows with the run (about 1 KiB of JSON per trial) would
        // grow the supervisor with it. `run.trials` keeps the count.
        let findings = crate::analysis::Findings {
            trials: Vec::new(),
            ..findings
        };
        let json = serde_json::to_string(&findings)?;
        crate::recording::write_atomically(file, json.as_bytes())
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    println!("{}", path.display());
    Ok(EXIT_OK)
}
