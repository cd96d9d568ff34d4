//! memwarden's integration tests: one binary, one module per area. Tests that spawn processes
//! use the real `memwarden` binary and its fixture worker, stay far below 2 GiB all together,
//! and reap everything they start.

mod analysis;
mod boundary;
mod cgroups;
mod cli;
mod containers;
mod exec;
mod fleet;
mod fuzz;
mod gpu;
mod holders;
mod hostile;
mod house;
mod live;
mod metrics;
mod observer;
mod overnight;
mod parsers;
mod policy;
mod probe;
mod pytest;
mod python;
mod recording;
mod replay;
mod report;
mod run;
mod soak;
mod util;
mod wording;
