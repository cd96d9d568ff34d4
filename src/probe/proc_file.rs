//! Where /proc is, and how one of its files is read again through a handle kept open.

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

/// How a /proc file is generated, which decides when a read has reached the end.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Shown in one piece (status, smaps_rollup, meminfo, pressure, statm): the kernel fills a
    /// read entirely unless the end is reached, so a short read is the end. One syscall.
    OneRecord,
    /// A sequence of records (smaps): the kernel stops early before a record that does not
    /// fit, so only a read of zero bytes is the end.
    Records,
    /// A sequence of records of at most this many bytes each (`children`: a pid and a space).
    /// The kernel puts as many whole records into a read as fit its page-sized buffer and the
    /// caller's, so a read that left room for one more record reached the end: one syscall
    /// where `Records` needs a second that returns nothing.
    SmallRecords(usize),
}

/// The smallest buffer the kernel renders a seq_file into (one page on every architecture
/// Linux runs memwarden on; a larger page only makes the `SmallRecords` test stricter).
const SEQ_BUFFER_BYTES: usize = 4096;

/// Reads a whole /proc file from offset 0 into `buf` through an already-open handle and returns
/// its length; the content is `buf[..len]`. /proc files are generated on read, so re-reading an
/// open handle gives fresh values without an open(). `buf` keeps its length between calls so
/// it is not zeroed again each time.
pub(crate) fn read_fresh(
    file: &std::fs::File,
    buf: &mut Vec<u8>,
    layout: Layout,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut filled = 0;
    loop {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => return Ok(filled),
            Ok(n) => {
                let room = (buf.len() - filled).min(SEQ_BUFFER_BYTES);
                filled += n;
                match layout {
                    Layout::OneRecord if filled < buf.len() => return Ok(filled),
                    Layout::SmallRecords(record_bytes) if n + record_bytes < room => {
                        return Ok(filled)
                    }
                    _ => {}
                }
                if filled == buf.len() {
                    let grown = buf.len() * 2;
                    buf.resize(grown, 0);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
