//! `memwarden report`: the incident report and its plots, written beside the recording (or
//! where `--out` says).

use super::EXIT_OK;
use crate::analysis::{self, Options};
use crate::cli::ReportArgs;
use crate::plot::Format;
use crate::probe::{boot_wall_ns, host_facts, ProcRoot};
use crate::recording::Recording;
use crate::report::{self, oom_kills, ReportInput};
use anyhow::Context;
use std::path::{Path, PathBuf};

pub fn report(args: ReportArgs) -> anyhow::Result<u8> {
    let path = write_report(&args)?;
    println!("{}", path.display());
    Ok(EXIT_OK)
}

/// Writes `report.md` and `plots/`; returns the report's path.
pub fn write_report(args: &ReportArgs) -> anyhow::Result<PathBuf> {
    let mut recording = Recording::open(&args.run_dir)?;
    recording.manifest.check_version(&args.run_dir)?;
    for (worker, log) in args.worker_logs.iter().enumerate() {
        let worker = worker as u32;
        let has_trials = recording.events.iter().any(|e| {
            e.worker == Some(worker)
                && matches!(e.kind, crate::recording::EventKind::TrialEnd { .. })
        });
        if has_trials {
            eprintln!(
                "memwarden: note: worker {worker} has recorded trials; {} is not used",
                log.display()
            );
            continue;
        }
        let text = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
        recording.events.extend(report::worker_log::trial_events(
            &String::from_utf8_lossy(&text),
            worker,
            recording.manifest.start_wall_ns,
        ));
    }
    recording.events.sort_by_key(|e| e.t_ns);
    let analysis = analysis::analyze_with_series(&recording, &Options::default())?;
    let year = year_of(recording.manifest.start_wall_ns);
    let mut kills = Vec::new();
    for log in &args.kernel_logs {
        let text = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
        kills.extend(oom_kills(&String::from_utf8_lossy(&text), year));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("report"));
    let plots_dir = out.join("plots");
    std::fs::create_dir_all(&plots_dir)
        .with_context(|| format!("cannot create {}", plots_dir.display()))?;
    let format = if args.svg { Format::Svg } else { Format::Png };
    let plots = report::plots::write_plots(
        &analysis,
        recording.manifest.start_wall_ns,
        &plots_dir,
        format,
    )?;
    let root = ProcRoot::new("/proc");
    let current_boot_id = Some(host_facts(&root).boot_id).filter(|b| !b.is_empty());
    let same_boot = current_boot_id.as_deref() == Some(recording.manifest.boot_id.as_str());
    let input = ReportInput {
        manifest: &recording.manifest,
        events: &recording.events,
        analysis: &analysis,
        kills: &kills,
        current_boot_id: if args.no_host { None } else { current_boot_id },
        boot_wall_ns: if same_boot && !args.no_host {
            boot_wall_ns(&root)
        } else {
            None
        },
        data_files: data_files(&args.run_dir)?,
        plots,
        reporter_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let text = report::render(&input);
    let path = out.join("report.md");
    crate::recording::write_atomically(&path, text.as_bytes())?;
    Ok(path)
}

fn year_of(wall_ns: u64) -> i32 {
    let stamp = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(wall_ns),
    )
    .to_string();
    stamp.get(..4).and_then(|y| y.parse().ok()).unwrap_or(1970)
}

fn data_files(dir: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file()
                .then(|| (e.file_name().to_string_lossy().into_owned(), meta.len()))
        })
        .collect();
    files.sort();
    Ok(files)
}
