//! The live view of a run: `status` folds its records into what it looks like now, `view` turns
//! that into lines, `tail` reads a recording as it is written (`watch`), and `follow` draws the
//! view until the run ends and then says how it ended.

mod follow;
mod status;
mod tail;
#[cfg(test)]
mod tests;
mod view;

pub use follow::{draw_until, follow, observer, Followed};
pub use status::{LiveStatus, LiveWorker, SharedStatus, TreeMemory, WorkerState};
pub use tail::Tail;
pub use view::{body_lines, frame, run_line};
