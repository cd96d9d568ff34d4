//! Compaction of finished segments into Parquet (zstd), on a thread of its own so that polars
//! never runs on the sampling path, and in a child process (`memwarden compact-segment`) so
//! that the supervisor never holds a segment in memory. A segment's log is removed only after
//! its Parquet files are durable under their final names; a crash in between leaves both, and
//! readers prefer Parquet.

use super::tables::{gpu_frame, samples_frame, smaps_frame, system_frame};
use super::{
    cgroups_path, frame, gpu_path, schema::SmapsSnapshot, schema::Tick, system_path, RecordingError,
};
use crate::frames::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

pub struct Compactor {
    tx: mpsc::Sender<PathBuf>,
    handle: JoinHandle<Vec<RecordingError>>,
}

impl Compactor {
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let handle = std::thread::spawn(move || {
            let mut errors = Vec::new();
            for path in rx {
                errors.extend(compact_out_of_process(&path).err());
            }
            errors
        });
        Self { tx, handle }
    }

    /// A callback for the writer: queue a closed segment.
    pub fn queue(&self) -> Box<dyn FnMut(PathBuf) + Send> {
        let tx = self.tx.clone();
        Box::new(move |path| {
            let _ = tx.send(path);
        })
    }

    /// Compacts `extra` too (the segments still open at the end), then returns any failures.
    /// A failed compaction loses nothing: the log stays and readers use it.
    pub fn finish(self, extra: Vec<PathBuf>) -> Vec<RecordingError> {
        for path in extra {
            let _ = self.tx.send(path);
        }
        drop(self.tx);
        self.handle.join().unwrap_or_default()
    }
}

/// Compacts in a child process where this program is memwarden's own binary: compacting a
/// 10-minute segment of 8 workers at 100 Hz in the supervisor took it from 20 MiB to 215 MiB
/// for a moment, and polars' thread pool and the allocator kept 23 MiB of that for good. A
/// program that uses the library itself compacts in-process.
fn compact_out_of_process(log: &Path) -> Result<(), RecordingError> {
    let Some(exe) = std::env::current_exe()
        .ok()
        .filter(|exe| exe.file_name().is_some_and(|name| name == "memwarden"))
    else {
        let compacted = compact_segment(log);
        give_back_freed_memory();
        return compacted;
    };
    let out = std::process::Command::new(exe)
        .arg("compact-segment")
        .arg(log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|cause| RecordingError::Io {
            path: log.to_path_buf(),
            cause,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(RecordingError::Compaction {
        path: log.to_path_buf(),
        why: said
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or_else(|| out.status.to_string(), str::to_string),
    })
}

/// Compaction holds a whole segment in memory for a moment; glibc keeps what it freed in its
/// arenas, which measured as a harness that grew by ~38 MiB over its first compactions before
/// levelling off. Returning the free pages keeps the profiler's own footprint near its sampling
/// needs.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Compacts one `samples-N.log` or `smaps-N.log`.
pub fn compact_segment(log: &Path) -> Result<(), RecordingError> {
    let bytes = std::fs::read(log).map_err(|source| RecordingError::Io {
        path: log.to_path_buf(),
        cause: source,
    })?;
    let name = log.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let table = |source| RecordingError::Table {
        path: log.to_path_buf(),
        cause: source,
    };
    if let Some(index) = name
        .strip_prefix("samples-")
        .and_then(|n| n.strip_suffix(".log"))
    {
        let (ticks, _) = frame::decode_all::<Tick>(&bytes);
        let index: u32 = index.parse().unwrap_or(0);
        let dir = log.parent().unwrap_or(Path::new("."));
        // First: a reader takes the Parquet files once samples and system are both there.
        if ticks.iter().any(|t| !t.gpus.is_empty()) {
            write_parquet(
                &mut gpu_frame(&ticks).map_err(table)?,
                &gpu_path(dir, index),
            )?;
        }
        if ticks.iter().any(|t| !t.cgroups.is_empty()) {
            write_parquet(
                &mut super::tables::cgroups_frame(&ticks).map_err(table)?,
                &cgroups_path(dir, index),
            )?;
        }
        write_parquet(
            &mut system_frame(&ticks).map_err(table)?,
            &system_path(dir, index),
        )?;
        write_parquet(
            &mut samples_frame(&ticks).map_err(table)?,
            &log.with_extension("parquet"),
        )?;
    } else if name.starts_with("smaps-") {
        let (snapshots, _) = frame::decode_all::<SmapsSnapshot>(&bytes);
        write_parquet(
            &mut smaps_frame(&snapshots).map_err(table)?,
            &log.with_extension("parquet"),
        )?;
    } else {
        return Ok(());
    }
    std::fs::remove_file(log).map_err(|source| RecordingError::Io {
        path: log.to_path_buf(),
        cause: source,
    })
}

pub(crate) fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), RecordingError> {
    let io = |source| RecordingError::Io {
        path: path.to_path_buf(),
        cause: source,
    };
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(io)?;
    // Buffered: the Parquet writer writes its metadata a few bytes at a time, thousands of
    // system calls per segment straight to the file.
    let mut buffered = std::io::BufWriter::with_capacity(1 << 20, file);
    ParquetWriter::new(&mut buffered)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)
        .map_err(|source| RecordingError::Table {
            path: path.to_path_buf(),
            cause: source,
        })?;
    let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
