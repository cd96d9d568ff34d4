//! Worker processes: starting them in their own process groups, pumping and logging their
//! output, learning trial boundaries from it, and stopping them (SIGTERM to the group, a grace
//! period, then SIGKILL).

pub mod cgroup;
mod gate;
mod group_stopper;
mod guardian;
mod lines;
pub mod log_file;
mod output;
pub mod reaper;
mod spawn;
mod stop;
pub mod systemd;
mod tail;
pub mod trials;

pub use gate::{ask, Gate, GateQuestion, ANSWER_TIMEOUT};
pub use group_stopper::GroupStopper;
pub use guardian::{guard, Guardian};
pub use lines::{Line, LineSplitter};
pub use log_file::LogFile;
pub use output::{BoundarySink, NoteSink, WorkerOutput, MAX_LINE_BYTES};
pub use spawn::{
    group_alive, signal_group, signal_process, spawn_worker, try_reap, Exit, SpawnError,
    SpawnOptions,
};
pub use stop::{stop_on_signals, StopRequest};
pub use tail::Tail;
pub use trials::{TrialBoundary, TrialParser};
