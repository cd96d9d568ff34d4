//! Full smaps snapshots at trial boundaries, on a thread of their own so a slow snapshot of a big
//! process never delays a tick. Each process is reopened by pid and checked against its start
//! time, so a recycled pid is never snapshotted in its place.

use super::sampling::SnapshotJob;
use crate::probe::{condense, ProcRoot, ProcessHandle};
use crate::recording::{Record, RecordSender, SmapsSnapshot};
use std::sync::mpsc::Receiver;

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
