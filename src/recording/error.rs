//! What can go wrong reading or writing a recording; each error names the file.

use std::path::PathBuf;

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
    #[error("{path}: impossible manifest: {what}")]
    ImpossibleManifest { path: PathBuf, what: String },
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
        cause: polars_core::error::PolarsError,
    },
    #[error("{path}: compaction failed: {why}")]
    Compaction { path: PathBuf, why: String },
    #[error("the recording writer thread panicked")]
    WriterPanicked,
}
