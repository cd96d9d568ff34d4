//! The parts of polars memwarden uses, under one prelude: frames and their columns
//! (polars-core), Parquet and CSV (polars-io). Not the `polars` facade: its `parquet` and `csv`
//! features turn on the streaming engine, and with it a cloud and HTTP stack (object_store,
//! reqwest, hyper, rustls). Nor its query engine (polars-lazy, -plan, -expr, -ops, -mem-engine):
//! memwarden's questions are per-tick sums and a few group-bys over small tables, plain Rust
//! over the columns, and the engine was a third of the binary (49.9 MB with it, 32.8 MB
//! without; issue 31).

// The same globs as polars' own prelude, which share a few names that memwarden never uses.
#[allow(ambiguous_glob_reexports)]
pub mod prelude {
    pub use polars_core::prelude::*;
    pub use polars_io::prelude::*;
}
