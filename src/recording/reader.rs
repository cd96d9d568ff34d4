//! Reading a run directory back, whatever state the harness left it in: compacted or not,
//! cleanly finished or cut off by a crash. Damaged records are skipped and counted.

use super::events::Event;
use super::manifest::{read_manifest, Manifest};
use super::schema::{SmapsSnapshot, Tick};
use super::tables::{self, trials_from_events, Trial};
use super::{
    cgroups_path, columns, frame, gpu_path, stream_path, system_path, RecordingError, Stream,
};
use crate::frames::prelude::*;
use crate::recording::layout::{file_name, RunKey};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What reading skipped; shown to the user so damage is never silent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    pub garbled_records: usize,
    pub torn_tail_bytes: usize,
    /// Sealed (Parquet) segments that could not be read and were left out, as a torn log
    /// segment is.
    pub torn_segments: usize,
}

impl ReadStats {
    /// What was skipped, in one line; `None` when nothing was.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.garbled_records > 0 {
            parts.push(format!("{} damaged record(s)", self.garbled_records));
        }
        if self.torn_tail_bytes > 0 {
            parts.push(format!(
                "{} byte(s) of a torn final record",
                self.torn_tail_bytes
            ));
        }
        if self.torn_segments > 0 {
            parts.push(format!(
                "{} unreadable sealed segment(s) (their samples are missing)",
                self.torn_segments
            ));
        }
        let last = parts.pop()?;
        Some(match parts.is_empty() {
            true => format!("skipped {last}"),
            false => format!("skipped {} and {last}", parts.join(", ")),
        })
    }
}

pub struct Recording {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Sorted by time.
    pub events: Vec<Event>,
    pub stats: std::cell::Cell<ReadStats>,
    source: Source,
}

/// Where the tables are: a run directory, or a run published into the fleet layout
/// (`memwarden publish`), whose sealed segments read the same.
enum Source {
    Dir,
    Published { dest: PathBuf, key: RunKey },
}

impl Recording {
    /// A run directory, or a published run named by its `DEST/runs/host=H/run=R` partition.
    pub fn open(dir: &Path) -> Result<Self, RecordingError> {
        if let Some((dest, key)) = crate::recording::layout::published_run(dir) {
            return Self::open_published(dir, dest, key);
        }
        let manifest = read_manifest(dir)?;
        let events_path = stream_path(dir, Stream::Events, 0, "log");
        let io = |cause| RecordingError::Io {
            path: events_path.clone(),
            cause,
        };
        let (mut events, decode) = match std::fs::File::open(&events_path) {
            Ok(file) => {
                frame::decode_from::<Event>(std::io::BufReader::with_capacity(1 << 16, file))
                    .map_err(io)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(cause) => return Err(io(cause)),
        };
        events.sort_by_key(|e| e.t_ns);
        // Grown by doubling: up to half of it spare, for as long as the recording is open.
        events.shrink_to_fit();
        let recording = Self {
            dir: dir.to_path_buf(),
            manifest,
            events,
            stats: Default::default(),
            source: Source::Dir,
        };
        recording.count(decode);
        Ok(recording)
    }

    /// A sealed table's file for segment `index`: `samples`, `system`, `gpu` or `smaps`.
    fn parquet(&self, table: &str, index: u32) -> PathBuf {
        match &self.source {
            Source::Published { dest, key } => key.partition(dest, table).join(file_name(index)),
            Source::Dir => match table {
                "samples" => stream_path(&self.dir, Stream::Samples, index, "parquet"),
                "system" => system_path(&self.dir, index),
                "gpu" => gpu_path(&self.dir, index),
                "cgroups" => cgroups_path(&self.dir, index),
                _ => stream_path(&self.dir, Stream::Smaps, index, "parquet"),
            },
        }
    }

    fn count(&self, decode: frame::DecodeStats) {
        let mut stats = self.stats.get();
        stats.garbled_records += decode.garbled;
        stats.torn_tail_bytes += decode.torn_tail_bytes;
        self.stats.set(stats);
    }

    /// A run marked finished whose events end before its stop event: `events.log` was cut
    /// (a copy that stopped short, a full disk, a hand), so trials after the cut are missing.
    pub fn events_cut_short(&self) -> bool {
        self.manifest.status == super::RunStatus::Finished
            && matches!(self.source, Source::Dir)
            && !self
                .events
                .iter()
                .any(|e| matches!(e.kind, super::EventKind::Stop { .. }))
    }

    pub fn trials(&self) -> Vec<Trial> {
        trials_from_events(&self.events)
    }

    /// The policy file the run was recorded under (`policy.toml`), where it kept one.
    pub fn policy_text(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("policy.toml")).ok()
    }

    /// Per-process samples, all segments, in time order.
    pub fn samples(&self) -> Result<DataFrame, RecordingError> {
        self.all_segments(
            |index| self.segment(index, false, None),
            tables::samples_frame,
        )
    }

    /// System-wide samples (one row per tick).
    pub fn system(&self) -> Result<DataFrame, RecordingError> {
        self.all_segments(
            |index| self.segment(index, true, None),
            tables::system_frame,
        )
    }

    /// Each worker's own cgroup per tick (FORMAT.md `cgroups-N.parquet`), all segments.
    pub fn cgroups(&self) -> Result<DataFrame, RecordingError> {
        self.all_segments(|index| self.cgroups_segment(index), tables::cgroups_frame)
    }

    /// One table of every sample segment, one after the other; `empty`'s columns without any.
    fn all_segments(
        &self,
        segment: impl Fn(u32) -> Result<DataFrame, RecordingError>,
        empty: fn(&[Tick]) -> PolarsResult<DataFrame>,
    ) -> Result<DataFrame, RecordingError> {
        let mut out: Option<DataFrame> = None;
        for index in self.sample_segments()? {
            append(&mut out, segment(index)?, &self.dir)?;
        }
        match out {
            Some(df) => Ok(df),
            None => empty(&[]).map_err(|source| RecordingError::Table {
                path: self.dir.clone(),
                cause: source,
            }),
        }
    }

    /// The sample segments present, in time order, for reading one at a time.
    pub fn sample_segments(&self) -> Result<Vec<u32>, RecordingError> {
        Ok(self.segment_indexes("samples-")?.into_iter().collect())
    }

    fn segment(
        &self,
        index: u32,
        system: bool,
        columns: Option<&[&str]>,
    ) -> Result<DataFrame, RecordingError> {
        let (samples, system_frame) = if system {
            (Some(&[][..]), columns)
        } else {
            (columns, Some(&[][..]))
        };
        let (samples, system_frame) = self.segment_frames(index, samples, system_frame)?;
        Ok(if system { system_frame } else { samples })
    }

    /// One segment's per-process and system samples together, each with only its `columns`
    /// when given (an empty list gives an empty frame). A raw log segment is decoded once for
    /// both, so its damage is counted once.
    pub fn segment_frames(
        &self,
        index: u32,
        sample_columns: Option<&[&str]>,
        system_columns: Option<&[&str]>,
    ) -> Result<(DataFrame, DataFrame), RecordingError> {
        let samples_parquet = self.parquet("samples", index);
        let system_parquet = self.parquet("system", index);
        let wanted = |columns: Option<&[&str]>| columns.is_none_or(|c| !c.is_empty());
        let log = stream_path(&self.dir, Stream::Samples, index, "log");
        if samples_parquet.exists() && system_parquet.exists() {
            let read = |table: &str, path: &Path, columns: Option<&[&str]>| {
                if wanted(columns) {
                    read_segment_table(table, path, columns)
                } else {
                    Ok(DataFrame::empty())
                }
            };
            match (
                read("samples", &samples_parquet, sample_columns),
                read("system", &system_parquet, system_columns),
            ) {
                (Ok(samples), Ok(system)) => return Ok((samples, system)),
                // A torn sealed segment is left out, counted, like a torn record; its raw log,
                // where it is still there, stands in for it.
                _ if !log.exists() => {
                    self.torn_segment();
                    let ticks: [Tick; 0] = [];
                    return self.frames_of(&ticks, &log, sample_columns, system_columns);
                }
                _ => {}
            }
        }
        let ticks: Vec<Tick> = self.decode_log(&log)?;
        self.frames_of(&ticks, &log, sample_columns, system_columns)
    }

    fn torn_segment(&self) {
        let mut stats = self.stats.get();
        stats.torn_segments += 1;
        self.stats.set(stats);
    }

    fn frames_of(
        &self,
        ticks: &[Tick],
        log: &Path,
        sample_columns: Option<&[&str]>,
        system_columns: Option<&[&str]>,
    ) -> Result<(DataFrame, DataFrame), RecordingError> {
        let table = |source| RecordingError::Table {
            path: log.to_path_buf(),
            cause: source,
        };
        let select =
            |frame: &dyn Fn() -> PolarsResult<DataFrame>, columns: Option<&[&str]>| match columns {
                Some([]) => Ok(DataFrame::empty()),
                Some(columns) => frame()
                    .and_then(|f| f.select(columns.iter().copied()))
                    .map_err(table),
                None => frame().map_err(table),
            };
        Ok((
            select(&|| tables::samples_frame(ticks), sample_columns)?,
            select(&|| tables::system_frame(ticks), system_columns)?,
        ))
    }

    /// One segment's GPU device samples (`t_ns`, `device`, `used`, `total`, `utilization`);
    /// empty where none were measured. A raw log is decoded again here without counting its
    /// damage a second time.
    pub fn gpu_segment(&self, index: u32) -> Result<DataFrame, RecordingError> {
        self.optional_table(index, "gpu", tables::gpu_frame)
    }

    /// One segment's per-worker cgroup samples (FORMAT.md `cgroups-N.parquet`); empty where no
    /// worker had a cgroup of its own.
    pub fn cgroups_segment(&self, index: u32) -> Result<DataFrame, RecordingError> {
        self.optional_table(index, "cgroups", tables::cgroups_frame)
    }

    /// A table written only for segments that hold its rows: its Parquet once the segment is
    /// sealed (absent: no rows), else decoded from the raw log again without counting its
    /// damage a second time.
    fn optional_table(
        &self,
        index: u32,
        table: &str,
        frame_of: fn(&[Tick]) -> PolarsResult<DataFrame>,
    ) -> Result<DataFrame, RecordingError> {
        let samples_parquet = self.parquet("samples", index);
        if samples_parquet.exists() && self.parquet("system", index).exists() {
            let path = self.parquet(table, index);
            return if path.exists() {
                read_segment_table(table, &path, None)
            } else {
                frame_of(&[]).map_err(|source| RecordingError::Table {
                    path,
                    cause: source,
                })
            };
        }
        let log = stream_path(&self.dir, Stream::Samples, index, "log");
        let bytes = std::fs::read(&log).unwrap_or_default();
        let (ticks, _) = frame::decode_all::<Tick>(&bytes);
        frame_of(&ticks).map_err(|source| RecordingError::Table {
            path: log,
            cause: source,
        })
    }

    /// The trial-boundary memory maps, one row per (condensed) mapping.
    pub fn smaps(&self) -> Result<DataFrame, RecordingError> {
        let mut out: Option<DataFrame> = None;
        for index in self.smaps_segments()? {
            append(&mut out, self.smaps_segment(index)?, &self.dir)?;
        }
        match out {
            Some(df) => Ok(df),
            None => tables::smaps_frame(&[]).map_err(|source| RecordingError::Table {
                path: self.dir.clone(),
                cause: source,
            }),
        }
    }

    pub fn smaps_segments(&self) -> Result<Vec<u32>, RecordingError> {
        Ok(self.segment_indexes("smaps-")?.into_iter().collect())
    }

    pub fn smaps_segment(&self, index: u32) -> Result<DataFrame, RecordingError> {
        let parquet = self.parquet("smaps", index);
        let log = stream_path(&self.dir, Stream::Smaps, index, "log");
        if parquet.exists() {
            match read_parquet(&parquet, None) {
                Ok(frame) => return Ok(frame),
                Err(_) if !log.exists() => {
                    self.torn_segment();
                    return tables::smaps_frame(&[]).map_err(|source| RecordingError::Table {
                        path: parquet,
                        cause: source,
                    });
                }
                Err(_) => {}
            }
        }
        let snapshots: Vec<SmapsSnapshot> = self.decode_log(&log)?;
        tables::smaps_frame(&snapshots).map_err(|source| RecordingError::Table {
            path: log,
            cause: source,
        })
    }

    pub fn events_frame(&self) -> Result<DataFrame, RecordingError> {
        tables::events_frame(&self.events).map_err(|source| RecordingError::Table {
            path: self.dir.clone(),
            cause: source,
        })
    }

    pub fn sites_frame(&self) -> Result<DataFrame, RecordingError> {
        tables::sites_frame(&self.events).map_err(|source| RecordingError::Table {
            path: self.dir.clone(),
            cause: source,
        })
    }

    pub fn trials_frame(&self) -> Result<DataFrame, RecordingError> {
        tables::trials_frame(&self.trials()).map_err(|source| RecordingError::Table {
            path: self.dir.clone(),
            cause: source,
        })
    }

    fn decode_log<T: serde::de::DeserializeOwned>(
        &self,
        log: &Path,
    ) -> Result<Vec<T>, RecordingError> {
        let bytes = match std::fs::read(log) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(RecordingError::Io {
                    path: log.to_path_buf(),
                    cause: source,
                })
            }
        };
        let (records, decode) = frame::decode_all(&bytes);
        self.count(decode);
        Ok(records)
    }

    /// Segment numbers present for a stream prefix, as logs or Parquet files.
    fn segment_indexes(&self, prefix: &str) -> Result<BTreeSet<u32>, RecordingError> {
        let (dir, prefix) = match &self.source {
            Source::Dir => (self.dir.clone(), prefix),
            Source::Published { dest, key } => {
                (key.partition(dest, prefix.trim_end_matches('-')), "")
            }
        };
        let entries = match std::fs::read_dir(&dir) {
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && !matches!(self.source, Source::Dir) =>
            {
                return Ok(BTreeSet::new())
            }
            other => other,
        }
        .map_err(|source| RecordingError::Io {
            path: dir.clone(),
            cause: source,
        })?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let rest = name.strip_prefix(prefix)?;
                let (number, extension) = rest.split_once('.')?;
                matches!(extension, "log" | "parquet").then(|| number.parse().ok())?
            })
            .collect())
    }
}

/// A sealed segment's table, its columns under today's names whatever format wrote it (see
/// `columns::rename_format_1`); a column asked for is found under its format-1 name too.
fn read_segment_table(
    table: &str,
    path: &Path,
    columns: Option<&[&str]>,
) -> Result<DataFrame, RecordingError> {
    let asked: Option<Vec<&str>> = columns.map(|names| {
        names
            .iter()
            .flat_map(|name| [Some(*name), columns::format_1_name(table, name)])
            .flatten()
            .collect()
    });
    let mut df = read_parquet(path, asked.as_deref())?;
    columns::rename_format_1(table, &mut df).map_err(|cause| RecordingError::Table {
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(df)
}

pub(crate) fn read_parquet(
    path: &Path,
    columns: Option<&[&str]>,
) -> Result<DataFrame, RecordingError> {
    let file = std::fs::File::open(path).map_err(|source| RecordingError::Io {
        path: path.to_path_buf(),
        cause: source,
    })?;
    let table = |source| RecordingError::Table {
        path: path.to_path_buf(),
        cause: source,
    };
    let mut reader = ParquetReader::new(file);
    // Columns added in later versions (the cgroup's) are absent from older segments: asked for,
    // they are left out rather than failing the read; a reader that needs one says so itself.
    let columns = match columns {
        Some(columns) => {
            let schema = reader.schema().map_err(table)?;
            Some(
                columns
                    .iter()
                    .filter(|c| schema.contains(c))
                    .map(|s| s.to_string())
                    .collect(),
            )
        }
        None => None,
    };
    reader.with_columns(columns).finish().map_err(table)
}

fn append(out: &mut Option<DataFrame>, part: DataFrame, dir: &Path) -> Result<(), RecordingError> {
    match out {
        None => *out = Some(part),
        Some(df) => {
            df.vstack_mut_owned(part)
                .map_err(|source| RecordingError::Table {
                    path: dir.to_path_buf(),
                    cause: source,
                })?;
        }
    }
    Ok(())
}

mod published;
