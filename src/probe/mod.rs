//! Everything that reads /proc (and, later, NVML). Nothing else in memwarden touches them.
//!
//! Every reader takes a root directory (`/proc` normally; a fake tree built from captured kernel
//! text in tests) and parses bytes with the procfs crate. A process that vanishes mid-read is
//! normal: readers return `None`, never an error and never a zero sample.

mod process;
mod smaps;
mod system;

pub use process::{Cheap, ProcessHandle, Rollup};
pub use smaps::condense;
pub use system::{host_facts, HostFacts, SystemProbe};

use std::path::{Path, PathBuf};

/// Where /proc lives. Tests point it at a fake tree.
#[derive(Debug, Clone)]
pub struct ProcRoot(PathBuf);

impl Default for ProcRoot {
    fn default() -> Self {
        Self(PathBuf::from("/proc"))
    }
}

impl ProcRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// Reads a whole /proc file from offset 0 into `buf` through an already-open handle. /proc files
/// are generated on read, so re-reading an open handle gives fresh values without an open().
pub(crate) fn read_fresh(file: &std::fs::File, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    buf.clear();
    if buf.capacity() < 4096 {
        buf.reserve(4096);
    }
    loop {
        let filled = buf.len();
        buf.resize(buf.capacity(), 0);
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => {
                buf.truncate(filled);
                return Ok(());
            }
            Ok(n) => {
                buf.truncate(filled + n);
                if buf.len() == buf.capacity() {
                    buf.reserve(buf.capacity());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(filled),
            Err(e) => {
                buf.truncate(filled);
                return Err(e);
            }
        }
    }
}
