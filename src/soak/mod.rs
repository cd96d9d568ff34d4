//! Soak tests: many workers for hours under the policy, then a verdict. The verdict and the
//! progress lines are pure (findings, exits, counters and the live status in; words out);
//! `publish` copies results off the box; `session` runs a soak beside the harness.

pub mod checkpoint;
mod judgement;
pub mod progress;
pub mod publish;
pub mod session;
#[cfg(test)]
mod tests;
pub use judgement::*;
