//! Past one machine: runs published into a layout of Parquet tables partitioned by host and run
//! (`layout`, specified in FORMAT.md), written by `publish` and read across runs by `query`
//! (polars, lazily) for `memwarden fleet`, and by DuckDB, polars or Spark as they are. No fleet
//! service: a directory (or its copy in object storage) is the whole interface.

pub mod layout;
pub mod publish;
pub mod query;
pub mod report;
mod tables;

pub use publish::{publish, PublishError, Published};
pub use query::FleetError;
