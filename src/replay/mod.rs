//! Trial replay: which recorded trial to run again, or for bisecting which parameter values to
//! try one at a time from a clean baseline (`design`), how the parameters reach the command
//! (`plan`: `MEMWARDEN_TRIAL_PARAMS`, `{name}` placeholders substituted into argv and never
//! through a shell, and Optuna's own `enqueue_trial` through python/memwarden/_replay.py), and
//! what the repeats show, after a warm-up and against a noise floor (`verdict`). `session`
//! records each case through the harness and runs a bisection.

pub mod design;
mod plan;
pub mod session;
#[cfg(test)]
mod testing;
pub mod verdict;

pub use plan::*;
