//! The parts of polars memwarden uses, under one prelude: frames and their columns
//! (polars-core), Parquet and CSV (polars-io), and lazy queries run by the in-memory engine
//! (polars-lazy). Not the `polars` facade: its `parquet` and `csv` features turn on the
//! streaming engine, and with it a cloud and HTTP stack (object_store, reqwest, hyper, rustls):
//! 89 more crates. Without it, polars scans no files (`scan_parquet` runs only on the streaming
//! engine): Parquet is read eagerly with `ParquetReader`, then queried lazily.

// The same globs as polars' own prelude, which share a few names (`slice`) that memwarden
// never uses.
#[allow(ambiguous_glob_reexports)]
pub mod prelude {
    pub use polars_core::prelude::*;
    pub use polars_io::prelude::*;
    pub use polars_lazy::prelude::*;
}
