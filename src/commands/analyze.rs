//! `memwarden analyze`, `check` and `diff`: read recordings, run the analysis, print.

use super::{EXIT_BAD_INPUT, EXIT_FINDING, EXIT_OK};
use crate::analysis::{self, compare, gates, text, Findings, Options};
use crate::cli::{AnalyzeArgs, CheckArgs, DiffArgs};
use crate::recording::Recording;
use std::io::Write;
use std::path::Path;

/// How far ahead `analyze` and `check` forecast unless told.
pub(super) const HORIZON: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

pub(super) fn findings(dir: &Path, horizon: std::time::Duration) -> anyhow::Result<Findings> {
    let recording = Recording::open(dir)?;
    recording.manifest.check_version(dir)?;
    let options = Options {
        horizon_hours: horizon.as_secs_f64() / 3600.0,
        live: recording.manifest.still_recording(),
        ..Options::default()
    };
    Ok(analysis::analyze(&recording, &options)?)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub(super) fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

pub fn analyze(args: AnalyzeArgs) -> anyhow::Result<u8> {
    let findings = findings(&args.run_dir, args.horizon)?;
    if args.json {
        print(&json(&findings)?)?;
    } else {
        print(&text::findings(&findings))?;
    }
    Ok(EXIT_OK)
}

pub fn check(args: CheckArgs) -> anyhow::Result<u8> {
    let recording = Recording::open(&args.run_dir)?;
    recording.manifest.check_version(&args.run_dir)?;
    let options = Options {
        horizon_hours: HORIZON.as_secs_f64() / 3600.0,
        live: recording.manifest.still_recording(),
        ..Options::default()
    };
    let findings = analysis::analyze(&recording, &options)?;
    let crashes = gates::crashes(&recording.events);
    let report = match gates::check(&findings, args.kind, args.max_growth, &crashes) {
        Ok(report) => report,
        Err(reason) => {
            eprintln!(
                "memwarden: error: cannot judge {}: {reason}",
                args.run_dir.display()
            );
            return Ok(EXIT_BAD_INPUT);
        }
    };
    if args.json {
        print(&json(&report)?)?;
    }
    let summary = text::check(&report);
    if report.passed {
        if !args.json {
            print(&summary)?;
        }
        return Ok(EXIT_OK);
    }
    if report.outcome == gates::Outcome::Exceeds {
        eprint!("memwarden: growth over budget\n{summary}");
        Ok(EXIT_FINDING)
    } else if !report.faults.is_empty() {
        eprint!("memwarden: the run cannot pass\n{summary}");
        Ok(EXIT_FINDING)
    } else {
        eprint!(
            "memwarden: not enough data to judge: a gate that cannot see does not pass\n{summary}"
        );
        Ok(crate::exit::EXIT_NOT_ENOUGH_DATA)
    }
}

pub fn diff(args: DiffArgs) -> anyhow::Result<u8> {
    let horizon = std::time::Duration::from_secs(12 * 3600);
    let before = findings(&args.before, horizon)?;
    let after = findings(&args.after, horizon)?;
    let kind = args
        .kind
        .unwrap_or_else(|| compare::leak_kind(&before, &after));
    let comparison = match compare::diff(&before, &after, kind) {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("memwarden: error: cannot compare: {reason}");
            return Ok(EXIT_BAD_INPUT);
        }
    };
    if args.json {
        print(&json(&comparison)?)?;
    } else {
        print(&text::comparison(&comparison))?;
    }
    Ok(if comparison.change == compare::Change::More {
        EXIT_FINDING
    } else {
        EXIT_OK
    })
}
