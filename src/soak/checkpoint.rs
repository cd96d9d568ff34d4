//! Soak checkpoints: every `--checkpoint`, the report so far and the verdict so far (from the
//! findings and the live counters) into `RUN_DIR/checkpoint/`, replaced whole, then published;
//! and the verdict file itself.

use super::publish::{publish, Publisher};
use super::{judge, SoakVerdict};
use crate::analysis::Findings;
use crate::harness::SharedStatus;
use crate::recording::write_atomically;
use crate::report::pipeline::{write_report_with, ReportJob};
use anyhow::Context;
use std::path::{Path, PathBuf};

pub fn write_verdict(path: &Path, verdict: &SoakVerdict) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(verdict)?;
    write_atomically(path, json.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn report(run_dir: &Path, out: Option<PathBuf>) -> anyhow::Result<(PathBuf, Findings)> {
    write_report_with(&ReportJob::for_run(run_dir, out, false), None)
}

/// `RUN_DIR/checkpoint/`: the report so far and the verdict so far (from the findings and the
/// live counters), replaced whole each time; then published.
pub fn checkpoint(
    run_dir: &Path,
    live: &SharedStatus,
    budget: Option<crate::analysis::gates::GrowthBudget>,
    publishers: &[Publisher],
) {
    let fresh = run_dir.join("checkpoint.partial");
    let kept = run_dir.join("checkpoint");
    let written = (|| -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&fresh);
        let (_, findings) = report(run_dir, Some(fresh.clone()))?;
        let status = live.lock().map(|s| s.clone()).unwrap_or_default();
        let verdict = judge(
            &findings,
            budget,
            &[],
            &[],
            &status.counters,
            status.elapsed_ns as f64 / 1e9,
        );
        write_verdict(&fresh.join("verdict.json"), &verdict)?;
        let _ = std::fs::remove_dir_all(&kept);
        std::fs::rename(&fresh, &kept).context("cannot move the checkpoint in place")?;
        Ok(())
    })();
    match written {
        Ok(()) => {
            for publisher in publishers {
                say_published(publish(run_dir, publisher));
            }
        }
        Err(error) => eprintln!(
            "memwarden: warning: checkpoint failed: {}",
            crate::exit::describe(&error)
        ),
    }
}

pub fn say_published(result: Result<String, String>) {
    match result {
        Ok(what) => eprintln!("memwarden: published: {what}"),
        Err(why) => eprintln!("memwarden: warning: publish failed: {why}"),
    }
}
