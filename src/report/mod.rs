//! Incident reports: the post-mortem an expert would write by hand, as Markdown that reads on
//! GitHub and in a terminal. `render` is pure (a recording's facts and the analysis in, text
//! out); `plots` turns the analysis into plot data; the command writes the files.

mod document;
mod findings;
pub mod kernel_log;
pub mod pipeline;
pub mod plots;
mod policy;
mod sections;
mod timeline;
pub mod worker_log;

pub use crate::markdown::{code, escape};
pub use document::{render, PlotRef, ReportInput};
pub use kernel_log::{oom_kills, KernelTime, OomKill};
