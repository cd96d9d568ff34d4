//! The policy engine. It owns no clock, process or file: each input carries its time, and the
//! actions it returns are carried out by the harness (live) or by the simulator. One rule per
//! method; every action says why, and what memory looked like at that moment.

mod brake;
mod dispatch;
mod lifecycle;
#[cfg(test)]
mod tests;
mod vocabulary;

pub use dispatch::Engine;
use dispatch::{share, PendingRestart, Phase, Worker};
pub use vocabulary::{Action, ActionKind, Answer, Counters, Input, Reading, WorkerMemory};
