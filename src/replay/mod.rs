//! Trial replay: which recorded trial (or which distinct parameter values, for bisecting) to run
//! again, and how its parameters reach the command: as `MEMWARDEN_TRIAL_PARAMS` (JSON) and as
//! `{name}` placeholders in its arguments, substituted into argv and never through a shell,
//! so a value is one argument, verbatim, whatever characters it holds.

mod plan;
pub mod verdict;

pub use plan::*;
