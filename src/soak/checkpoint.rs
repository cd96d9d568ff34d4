//! Soak checkpoints: every `--checkpoint`, the report so far and the verdict so far (from the
//! findings and the live counters) into `RUN_DIR/checkpoint/`, replaced whole, then published;
//! and the verdict file itself.
//!
//! The report is written by a child process (`memwarden report`), not by the supervisor: an
//! analysis takes a hundred MiB and more, which a process keeps once it has had it, and the
//! supervisor must stay the smallest process on a box short of memory; a child that fails or
//! hangs costs a checkpoint, never the soak.

use super::publish::{publish, Publisher};
use super::{judge, SoakVerdict};
use crate::analysis::Findings;
use crate::live::SharedStatus;
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
        let findings = report_in_child(run_dir, &fresh, CHILD_LIMIT)?;
        let status = live.lock().map(|s| s.clone()).unwrap_or_default();
        let verdict = judge(
            &findings,
            budget,
            &[],
            &[],
            &status.engine.clone().unwrap_or_default(),
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
            "memwarden: warning: checkpoint failed: {}; the soak goes on",
            crate::exit::describe(&error)
        ),
    }
}

/// A checkpoint's report that takes longer than this is given up (and its child killed).
const CHILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// `memwarden report RUN_DIR --out OUT` in a child process; its findings come back as JSON.
fn report_in_child(
    run_dir: &Path,
    out: &Path,
    limit: std::time::Duration,
) -> anyhow::Result<Findings> {
    let findings_file = run_dir.join("checkpoint-findings.json.partial");
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("report")
        .arg(run_dir)
        .arg("--out")
        .arg(out)
        .arg("--findings-json")
        .arg(&findings_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the report's process")?;
    let Some(status) = super::publish::wait_or_kill(&mut child, limit)? else {
        anyhow::bail!(
            "the report's process took longer than {} and was killed",
            crate::units::duration(limit.as_secs_f64())
        );
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    if !status.success() {
        let why = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        anyhow::bail!("the report's process failed ({status}): {why}");
    }
    let json = std::fs::read(&findings_file).context("the report's process left no findings")?;
    let _ = std::fs::remove_file(&findings_file);
    serde_json::from_slice(&json).context("the report's findings do not read")
}

pub fn say_published(result: Result<String, String>) {
    match result {
        Ok(what) => eprintln!("memwarden: published: {what}"),
        Err(why) => eprintln!("memwarden: warning: publish failed: {why}"),
    }
}
