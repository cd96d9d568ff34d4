//! Worker processes: starting them in their own process groups, pumping and logging their
//! output, learning trial boundaries from it, and stopping them (SIGTERM to the group, a grace
//! period, then SIGKILL).

mod guardian;
mod lines;
mod output;
mod spawn;
mod stop;
mod tail;
pub mod trials;

pub use guardian::{guard, Guardian};
pub use lines::{Line, LineSplitter};
pub use output::{BoundarySink, WorkerOutput, MAX_LINE_BYTES};
pub use spawn::{group_alive, signal_group, spawn_worker, try_reap, Exit, SpawnError};
pub use stop::{stop_on_signals, StopRequest};
pub use tail::Tail;
pub use trials::{TrialBoundary, TrialParser};
