//! The policy engine. It owns no clock, process or file: each input carries its time, and the
//! actions it returns are carried out by the harness (live) or by the simulator. One rule per
//! method; every action says why, and what memory looked like at that moment.
//!
//! **Liveness.** The brake is a queue in front of trials; only a restart frees memory. Once the
//! brake is on, within `escalation.after` + `restart.grace` + one tick, either the brake is off,
//! or some worker is free to run a trial (running and not held), or a restart is under way (a
//! worker stopping). It holds because a held trial counts as refused again every `brake.wait` (a
//! paused worker as a cooperative one asking again), escalation comes after `after_brakes`
//! refusals or after `after`, and the worker it picks is stopped at once when paused or between
//! trials, else at its trial's end and at the latest `restart.grace` later; when no worker can be
//! picked an `escalate` action says why. `liveness.rs` checks it on random interleavings.

mod brake;
mod dispatch;
mod lifecycle;
#[cfg(test)]
mod liveness;
#[cfg(test)]
mod tests;
mod vocabulary;

pub use dispatch::Engine;
use dispatch::{share, PendingRestart, Phase, Worker};
pub use vocabulary::{Action, ActionKind, Answer, Counters, Input, Reading, WorkerMemory};
