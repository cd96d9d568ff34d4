//! Every few seconds, what `/dev/shm` holds and which of its files the workers' processes map;
//! an event when that changed. Listing a directory and reading a few `maps` files costs
//! microseconds, but not every tick: a tick stays the cheap counters.

use crate::probe::shm::{list, mapped_by};
use crate::probe::ProcRoot;
use crate::recording::{EventKind, SharedMemoryFile, SHARED_MEMORY_FILES};
use std::collections::BTreeSet;
use std::path::PathBuf;

const EVERY_NS: u64 = 5_000_000_000;
/// A change in the total smaller than this is not worth an event (sizes creep).
const CHANGE_BYTES: u64 = 1 << 20;

pub struct ShmWatch {
    dir: PathBuf,
    last_ns: Option<u64>,
    /// The last listing's total and file count.
    pub total: Option<(u64, u64)>,
    /// What the last event said: the files' names and the total.
    told: Option<(Vec<String>, u64)>,
    failed_said: bool,
}

impl ShmWatch {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            last_ns: None,
            total: None,
            told: None,
            failed_said: false,
        }
    }

    /// The next tick lists the directory, however recent the last listing.
    pub fn due_now(&mut self) {
        self.last_ns = None;
    }

    /// Lists the directory when due (the worker processes `pids` are asked which files they
    /// map); returns what to record: the listing when it changed, or a note once when it cannot
    /// be read.
    pub fn tick(
        &mut self,
        t_ns: u64,
        root: &ProcRoot,
        pids: impl Iterator<Item = i32>,
    ) -> Option<EventKind> {
        if self
            .last_ns
            .is_some_and(|last| t_ns.saturating_sub(last) < EVERY_NS)
        {
            return None;
        }
        self.last_ns = Some(t_ns);
        let files = match list(&self.dir) {
            Ok(files) => files,
            Err(error) => {
                self.total = None;
                if std::mem::replace(&mut self.failed_said, true) {
                    return None;
                }
                let message = format!(
                    "cannot list {} ({error}): shared memory outside the workers' trees is not recorded",
                    self.dir.display()
                );
                return Some(EventKind::Note { message });
            }
        };
        self.failed_said = false;
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        self.total = Some((total, files.len() as u64));
        let names: Vec<String> = files
            .iter()
            .take(SHARED_MEMORY_FILES)
            .map(|f| f.name.clone())
            .collect();
        let unchanged = self.told.as_ref().is_some_and(|(told, told_total)| {
            *told == names && told_total.abs_diff(total) < CHANGE_BYTES
        });
        if unchanged {
            return None;
        }
        self.told = Some((names, total));
        let mapped: BTreeSet<String> = if files.is_empty() {
            BTreeSet::new()
        } else {
            pids.flat_map(|pid| mapped_by(root, pid, &self.dir))
                .collect()
        };
        let more = files.len().saturating_sub(SHARED_MEMORY_FILES) as u64;
        Some(EventKind::SharedMemory {
            total_bytes: total,
            files: files
                .into_iter()
                .take(SHARED_MEMORY_FILES)
                .map(|f| SharedMemoryFile {
                    mapped: mapped.contains(&f.name),
                    name: f.name,
                    bytes: f.bytes,
                })
                .collect(),
            more,
        })
    }
}
