//! The Python side: the helper package and the allocation tracer, shipped inside the binary
//! (`python/` at build time), put on the workers' PYTHONPATH for each run (`install`), and what
//! the tracer reports read back into the recording as events (`ingest`).

mod ingest;
mod install;

pub use ingest::{Feed, Ingest, TraceRecord, NO_TRACER};
pub use install::{install, Inherited, Installed};
