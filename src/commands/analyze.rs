//! `memwarden analyze`, `check` and `diff`: read recordings, run the analysis, print.

use super::{EXIT_BAD_INPUT, EXIT_FINDING, EXIT_OK};
use crate::analysis::{self, compare, gates, text, Findings};
use crate::cli::{AnalyzeArgs, CheckArgs, DiffArgs};
use std::io::Write;
use std::path::Path;

fn findings(dir: &Path, horizon: std::time::Duration) -> anyhow::Result<Findings> {
    Ok(analysis::analyze_run(dir, horizon)?.1)
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
    let (recording, findings) = analysis::analyze_run(&args.run_dir, analysis::HORIZON)?;
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
    let before = findings(&args.before, analysis::HORIZON)?;
    let after = findings(&args.after, analysis::HORIZON)?;
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
