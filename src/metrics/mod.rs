//! Live numbers for Prometheus: `exposition` turns the live status into the Prometheus text
//! format (pure), `export` serves it on `/metrics` and writes it for node_exporter's textfile
//! collector, each from a thread of its own that only reads a copy of the status; `http` is the
//! small server with fixed limits that answers scrapes.
//!
//! Why the `prometheus` crate and not `prometheus-client`: the readers here are Prometheus,
//! `promtool check metrics` and node_exporter's textfile collector, which all parse the
//! Prometheus text format. `prometheus-client` writes only OpenMetrics (a counter's `# TYPE`
//! line names it without `_total`, `# EOF`, an `info` type), which `promtool check metrics`
//! rejects ("memwarden_worker_trials_total no help text") and the textfile collector misreads.

mod export;
mod exposition;
pub mod http;
#[cfg(test)]
mod tests;

pub use export::{Exporter, MetricsError, MetricsOptions, TEXTFILE};
pub use exposition::render;
