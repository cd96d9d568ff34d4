//! Everything that reads /proc and NVML. Nothing else in memwarden touches them.
//!
//! Every reader takes a root directory (`/proc` normally; a fake tree built from captured kernel
//! text in tests) and parses bytes with the procfs crate. A process that vanishes mid-read is
//! normal: readers return `None`, never an error and never a zero sample.

pub mod cgroup;
pub mod gpu;
mod proc_file;
mod process;
pub mod shm;
mod smaps;
mod system;

pub use proc_file::ProcRoot;
pub(crate) use proc_file::{read_fresh, Layout};
pub use process::{scan_status, tree_cheap_now, Cheap, ProcessHandle, Rollup};
pub use smaps::condense;
pub use system::{boot_wall_ns, host_facts, HostFacts, SystemProbe};
