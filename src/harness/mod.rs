//! A recording session from start to end: creates the run directory, starts the writer, the
//! sampler and the workers (or adopts running processes), waits for the end (all workers
//! exited, a signal, or the duration), stops the workers and closes the recording in an order
//! that loses nothing: workers, then output pumps, then the sampler, then the writer, then
//! compaction, and last the manifest that says the run finished.

mod enforce;
mod output;
mod session;
mod workers;
pub use session::*;
