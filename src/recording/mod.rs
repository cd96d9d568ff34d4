//! The on-disk recording: a run directory holding a manifest and append-only, checksummed
//! streams, with finished sample segments compacted to Parquet. `writer` is the only code that
//! appends, `reader` the only code that reads; FORMAT.md at the repository root documents the
//! layout for other tools. `layout` names the published form of runs (a Parquet table per
//! kind, partitioned by host and run), which the reader opens as it opens a run directory.

pub mod columns;
mod compact;
mod error;
mod events;
mod frame;
pub mod layout;
mod manifest;
mod paths;
mod reader;
mod schema;
mod tables;
mod trial_events;
mod writer;

pub use compact::{compact_segment, Compactor};
pub use error::RecordingError;
pub use events::*;
pub use frame::{decode_all, encode, DecodeStats};
pub use manifest::{
    read_manifest, write_atomically, write_manifest, HarnessProcess, Manifest, MemoryCgroupInfo,
    Orchestrator, RunStatus, MANIFEST_FILE,
};
pub(crate) use paths::{cgroups_path, gpu_path, stream_path, system_path};
pub use paths::{default_run_dir, Stream};
pub(crate) use reader::read_parquet;
pub use reader::{ReadStats, Recording};
pub use schema::*;
pub use tables::{trials_from_events, worker_pids, Trial};
pub use trial_events::{pair_trials, TrialEvents};
pub use writer::{Observer, Record, RecordSender, RecordingWriter, WriterConfig, WriterStats};
