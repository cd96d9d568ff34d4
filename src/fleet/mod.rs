//! Past one machine: runs published into a layout of Parquet tables partitioned by host and run
//! (`recording::layout`, specified in FORMAT.md), written by `publish` and read across runs by
//! `query` for `memwarden fleet`, and by DuckDB, polars or Spark as they are. No fleet
//! service: a directory (or its copy in object storage) is the whole interface.

pub mod publish;
pub mod query;
pub mod report;
mod tables;
pub mod terminal;

pub use publish::{publish, PublishError, Published};
pub use query::FleetError;
