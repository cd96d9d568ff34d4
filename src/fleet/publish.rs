//! `memwarden publish`: a finished (or crashed) recording's sealed tables into the fleet layout,
//! with its findings as tables of their own, so questions across hosts and runs need not
//! re-read raw samples. Everything is written into a staging directory inside DEST first and
//! moved into place table by table, `runs` last: a reader sees a run whole once its `runs` row
//! exists, and a publish cut off half-way is redone by the next.

use crate::analysis::{self, Options};
use crate::frames::prelude::*;
use crate::recording::layout::columns::{MANIFEST_JSON, RECORD};
use crate::recording::layout::{file_name, RunKey, TABLES};
use crate::recording::{read_parquet, Manifest, Recording, RecordingError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error(
        "{0}: still being recorded (its memwarden is alive); publish it once the run has ended"
    )]
    StillRecording(PathBuf),
    #[error("{0}: this is a published run already")]
    AlreadyPublished(PathBuf),
    #[error("{dest} already holds another run {run} from host {host} (started {started}); rename the run directory or publish into another destination")]
    Conflict {
        dest: PathBuf,
        host: String,
        run: String,
        started: String,
    },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    Table { path: PathBuf, cause: PolarsError },
}

/// What a publish did.
#[derive(Debug)]
pub struct Published {
    pub key: RunKey,
    /// `DEST/runs/host=H/run=R`: what `check`, `diff` and `analyze` take.
    pub run_path: PathBuf,
    /// The run was there already, the same run: nothing was written.
    pub already: bool,
    /// Rows written per table.
    pub rows: Vec<(&'static str, usize)>,
    /// Findings could not be drawn (no samples): the tables are published without them.
    pub note: Option<String>,
}

pub fn publish(run_dir: &Path, dest: &Path) -> Result<Published, PublishError> {
    if crate::recording::layout::published_run(run_dir).is_some() {
        return Err(PublishError::AlreadyPublished(run_dir.to_path_buf()));
    }
    let recording = Recording::open(run_dir)?;
    let manifest = &recording.manifest;
    if manifest.still_recording() {
        return Err(PublishError::StillRecording(run_dir.to_path_buf()));
    }
    let name = std::fs::canonicalize(run_dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".into());
    let key = RunKey::new(&manifest.host, &name);
    let run_path = key.partition(dest, "runs");
    if let Some(existing) = published_manifest(&run_path.join(file_name(1)))? {
        if existing.start_wall_ns == manifest.start_wall_ns && existing.boot_id == manifest.boot_id
        {
            return Ok(Published {
                key,
                run_path,
                already: true,
                rows: Vec::new(),
                note: None,
            });
        }
        return Err(PublishError::Conflict {
            dest: dest.to_path_buf(),
            host: key.host,
            run: key.run,
            started: existing.start_rfc3339,
        });
    }
    let staging =
        dest.join(".staging")
            .join(format!("{}-{}-{}", key.host, key.run, std::process::id()));
    let result = stage(&recording, run_dir, &staging).and_then(|(rows, note)| {
        move_into_place(&staging, dest, &key)?;
        Ok(Published {
            key: key.clone(),
            run_path: run_path.clone(),
            already: false,
            rows,
            note,
        })
    });
    // `.staging` itself stays: other hosts may be publishing through it right now.
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// The manifest a published run's `runs` row keeps, if that row exists.
fn published_manifest(path: &Path) -> Result<Option<Manifest>, PublishError> {
    if !path.exists() {
        return Ok(None);
    }
    let table = read_parquet(path, Some(&[MANIFEST_JSON]))?;
    let text = table
        .column(MANIFEST_JSON)
        .and_then(|c| c.str().cloned())
        .ok()
        .and_then(|c| c.get(0).map(str::to_string));
    let manifest = text.and_then(|t| serde_json::from_str::<Manifest>(&t).ok());
    match manifest {
        Some(m) => Ok(Some(m)),
        None => Err(PublishError::Table {
            path: path.to_path_buf(),
            cause: PolarsError::ComputeError("no manifest in the runs row".into()),
        }),
    }
}

type Staged = (Vec<(&'static str, usize)>, Option<String>);

fn stage(recording: &Recording, run_dir: &Path, staging: &Path) -> Result<Staged, PublishError> {
    let start = recording.manifest.start_wall_ns;
    let mut rows: Vec<(&'static str, usize)> = Vec::new();
    let mut count = |table: &'static str, n: usize| match rows.iter_mut().find(|r| r.0 == table) {
        Some(row) => row.1 += n,
        None => rows.push((table, n)),
    };
    for index in recording.sample_segments()? {
        let (mut samples, mut system) = recording.segment_frames(index, None, None)?;
        with_wall_clock(&mut samples, "t_ns", "wall_ns", start, staging)?;
        count("samples", write(staging, "samples", index, &mut samples)?);
        count("system", write(staging, "system", index, &mut system)?);
        let mut gpu = recording.gpu_segment(index)?;
        if gpu.height() > 0 {
            with_wall_clock(&mut gpu, "t_ns", "wall_ns", start, staging)?;
            count("gpu", write(staging, "gpu", index, &mut gpu)?);
        }
    }
    for index in recording.smaps_segments()? {
        let mut smaps = recording.smaps_segment(index)?;
        with_wall_clock(&mut smaps, "t_ns", "wall_ns", start, staging)?;
        count("smaps", write(staging, "smaps", index, &mut smaps)?);
    }
    let mut events = recording.events_frame()?;
    let records: Vec<String> = recording
        .events
        .iter()
        .map(|e| serde_json::to_string(e).expect("bug: an event always serializes"))
        .collect();
    add(&mut events, Column::new(RECORD.into(), records), staging)?;
    count("events", write(staging, "events", 1, &mut events)?);
    let mut trials = recording.trials_frame()?;
    with_wall_clock(&mut trials, "start_ns", "start_wall_ns", start, staging)?;
    with_wall_clock(&mut trials, "end_ns", "end_wall_ns", start, staging)?;
    count("trials", write(staging, "trials", 1, &mut trials)?);
    // What the copy skipped (analysis reads the recording again and would count it twice).
    let skipped = recording.stats.get();
    let (findings, note) = match analysis::analyze(recording, &Options::default()) {
        Ok(findings) => (Some(findings), None),
        Err(error) => (None, Some(format!("no findings: {error}"))),
    };
    if let Some(findings) = &findings {
        let mut table = super::tables::findings_frame(recording, findings)
            .map_err(|cause| table_error(staging, cause))?;
        count("findings", write(staging, "findings", 1, &mut table)?);
        let mut table = super::tables::parameters_frame(findings)
            .map_err(|cause| table_error(staging, cause))?;
        count("parameters", write(staging, "parameters", 1, &mut table)?);
    }
    let mut runs = super::tables::runs_frame(
        recording,
        findings.as_ref(),
        run_dir,
        &study(run_dir),
        skipped,
    )
    .map_err(|cause| table_error(staging, cause))?;
    count("runs", write(staging, "runs", 1, &mut runs)?);
    Ok((rows, note))
}

/// Adds `wall` (nanoseconds since the Unix epoch) from `ns` (since the run started), so rows
/// from many hosts line up on one clock.
fn with_wall_clock(
    df: &mut DataFrame,
    ns: &str,
    wall: &str,
    start_wall_ns: u64,
    staging: &Path,
) -> Result<(), PublishError> {
    let Ok(column) = df.column(ns) else {
        return Ok(());
    };
    let values: Vec<Option<u64>> = column
        .u64()
        .map_err(|cause| table_error(staging, cause))?
        .iter()
        .map(|v| v.map(|ns| start_wall_ns + ns))
        .collect();
    add(df, Column::new(wall.into(), values), staging)
}

fn add(df: &mut DataFrame, column: Column, staging: &Path) -> Result<(), PublishError> {
    df.with_column(column)
        .map(|_| ())
        .map_err(|cause| table_error(staging, cause))
}

fn table_error(path: &Path, cause: PolarsError) -> PublishError {
    PublishError::Table {
        path: path.to_path_buf(),
        cause,
    }
}

/// Writes `staging/TABLE/NNNNNN.parquet` (zstd, synced); returns its rows.
fn write(
    staging: &Path,
    table: &str,
    index: u32,
    df: &mut DataFrame,
) -> Result<usize, PublishError> {
    let dir = staging.join(table);
    let io = |path: &Path, cause| PublishError::Io {
        path: path.to_path_buf(),
        cause,
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let path = dir.join(file_name(index));
    let mut file = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
    ParquetWriter::new(&mut file)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)
        .map_err(|cause| table_error(&path, cause))?;
    file.sync_all().map_err(|e| io(&path, e))?;
    Ok(df.height())
}

/// Moves each staged table into its partition, `runs` last. A partition left by a publish that
/// was cut off (no `runs` row, so no reader counts it) is replaced.
fn move_into_place(staging: &Path, dest: &Path, key: &RunKey) -> Result<(), PublishError> {
    let io = |path: &Path, cause| PublishError::Io {
        path: path.to_path_buf(),
        cause,
    };
    for table in TABLES {
        let staged = staging.join(table);
        if !staged.exists() {
            continue;
        }
        let target = key.partition(dest, table);
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(|e| io(&target, e))?;
        }
        let parent = target.parent().expect("a partition has a parent");
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        std::fs::rename(&staged, &target).map_err(|e| io(&target, e))?;
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// The Optuna study the workers ran, from their logs (`A new study created in RDB with name:
/// x`, `Using an existing study with name 'x'`), where they said.
fn study(run_dir: &Path) -> Option<String> {
    static STUDY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?:study created in \w+ with name: (\S+)|Using an existing study with name '([^']+)')",
        )
        .expect("bug: a valid regex")
    });
    let logs = std::fs::read_dir(run_dir.join("logs")).ok()?;
    let mut paths: Vec<PathBuf> = logs.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    paths.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        let caps = STUDY.captures(&text)?;
        caps.get(1).or(caps.get(2)).map(|m| m.as_str().to_string())
    })
}
