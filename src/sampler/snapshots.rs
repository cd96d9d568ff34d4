//! Full smaps snapshots at trial boundaries, on a thread of their own so a slow snapshot of a big
//! process never delays a tick. Each process is reopened by pid and checked against its start
//! time, so a recycled pid is never snapshotted in its place.

use crate::probe::{condense, ProcRoot, ProcessHandle};
use crate::recording::{Boundary, Record, RecordSender, SmapsSnapshot};
use std::sync::mpsc::Receiver;

/// One worker's processes to snapshot at one of its trial boundaries, each by pid and start
/// time.
pub(super) struct SnapshotJob {
    pub t_ns: u64,
    pub worker: u32,
    pub processes: Vec<(i32, u64)>,
    pub trial: String,
    pub boundary: Boundary,
}

pub(super) fn snapshot_worker(root: ProcRoot, jobs: Receiver<SnapshotJob>, records: RecordSender) {
    for job in jobs {
        for (pid, start_ticks) in job.processes {
            // Reopened by pid: the start time proves it is still the same process.
            let Some(mut handle) = ProcessHandle::try_open(&root, pid) else {
                continue;
            };
            if handle.start_ticks != start_ticks {
                continue;
            }
            let Some(maps) = handle.try_smaps() else {
                continue;
            };
            records.send(Record::Smaps(SmapsSnapshot {
                t_ns: job.t_ns,
                worker: job.worker,
                pid,
                trial: Some(job.trial.clone()),
                boundary: job.boundary,
                mappings: condense(&maps),
            }));
        }
    }
}
