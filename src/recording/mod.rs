//! The on-disk recording: a run directory holding a manifest and append-only, checksummed
//! streams, with finished sample segments compacted to Parquet. `writer` is the only code that
//! appends, `reader` the only code that reads; FORMAT.md at the repository root documents the
//! layout for other tools.

mod compact;
mod frame;
mod manifest;
mod reader;
mod schema;
mod tables;
mod writer;

pub use compact::{compact_segment, Compactor};
pub use frame::{decode_all, encode, DecodeStats};
pub use manifest::{
    read_manifest, redact, redact_command_line, write_atomically, write_manifest, Manifest,
    RunStatus, MANIFEST_FILE,
};
pub use reader::{ReadStats, Recording};
pub use schema::*;
pub use tables::{trials_from_events, worker_pids, Trial};
pub use writer::{Record, RecordSender, RecordingWriter, WriterConfig, WriterStats};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{0}: no such directory")]
    NotADirectory(PathBuf),
    #[error("{0}: not a memwarden run directory (no manifest.json)")]
    NotARun(PathBuf),
    #[error("{path}: unreadable manifest: {cause}")]
    BadManifest {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("{dir}: recording format {found} is newer than this memwarden reads ({supported})")]
    NewerFormat {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    Table {
        path: PathBuf,
        cause: polars::error::PolarsError,
    },
    #[error("the recording writer thread panicked")]
    WriterPanicked,
}

/// The streams of a run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Ticks; compacted into `samples-N.parquet` (processes) and `system-N.parquet`.
    Samples,
    /// Trial-boundary memory maps; compacted into `smaps-N.parquet`.
    Smaps,
    /// Events; a single small file, never compacted.
    Events,
}

/// `samples-000001.log`, `system-000001.parquet`, `events.log`, ...
pub(crate) fn stream_path(dir: &Path, stream: Stream, index: u32, extension: &str) -> PathBuf {
    match stream {
        Stream::Events => dir.join(format!("events.{extension}")),
        Stream::Samples => dir.join(format!("samples-{index:06}.{extension}")),
        Stream::Smaps => dir.join(format!("smaps-{index:06}.{extension}")),
    }
}

pub(crate) fn system_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("system-{index:06}.parquet"))
}

/// `gpu-000001.parquet`: written only for segments that hold GPU device samples.
pub(crate) fn gpu_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("gpu-{index:06}.parquet"))
}
