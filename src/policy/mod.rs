//! Enforcement: the policy file and the engine that applies it. The engine is pure: readings
//! and events go in, actions come out, and time is whatever the inputs say it is. The harness
//! runs it live (and carries out its actions); `simulate` runs the same engine over a recording.

mod config;
mod engine;
mod simulate;
mod threshold;

pub use config::{
    Brake, Conflict, Containment, Escalation, IoPriority, Policy, PolicyError, Restart, Start,
    WorkerLimits,
};
pub use engine::{Action, ActionKind, Answer, Counters, Engine, Input, Reading, WorkerMemory};
pub use simulate::{simulate, Recorded, SimulatedPoint, Simulation, Simulator, TickRow};
pub use threshold::Threshold;
