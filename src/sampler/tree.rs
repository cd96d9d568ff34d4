//! The processes of one worker's tree. A process joins when it appears among the children of a
//! process already tracked and leaves when its handle stops reading; it stays attributed to the
//! worker after its parent dies (an orphaned dataloader still belongs to the worker that forked
//! it).

use crate::probe::{Cheap, ProcRoot, ProcessHandle};
use crate::recording::EventKind;
use std::collections::BTreeMap;

pub struct Tracked {
    pub handle: ProcessHandle,
    pub last_rollup_ns: Option<u64>,
    /// The last PSS read, which the policy's reading carries between rollups.
    pub last_pss: Option<u64>,
    pub rollup_cost_ns: u64,
}

pub struct WorkerTree {
    pub worker: u32,
    pub processes: BTreeMap<i32, Tracked>,
}

impl WorkerTree {
    pub fn new(worker: u32) -> Self {
        Self {
            worker,
            processes: BTreeMap::new(),
        }
    }

    /// Starts tracking `pid` as a root of this worker (a start, restart or attach).
    pub fn adopt(&mut self, root: &ProcRoot, pid: i32, events: &mut Vec<(u32, EventKind)>) -> bool {
        if self.processes.contains_key(&pid) {
            return true;
        }
        match ProcessHandle::try_open(root, pid) {
            Some(handle) => {
                self.track(handle, events);
                true
            }
            None => false,
        }
    }

    fn track(&mut self, handle: ProcessHandle, events: &mut Vec<(u32, EventKind)>) {
        events.push((
            self.worker,
            EventKind::ProcessSeen {
                pid: handle.pid,
                ppid: handle.ppid,
                start_ticks: handle.start_ticks,
                command: handle.command.clone(),
            },
        ));
        self.processes.insert(
            handle.pid,
            Tracked {
                handle,
                last_rollup_ns: None,
                last_pss: None,
                rollup_cost_ns: crate::sampler::budget::UNKNOWN_COST_NS,
            },
        );
    }

    /// Reads the cheap counters of every tracked process, drops the ones that are gone and
    /// adopts new children: those of main threads every tick, those of all threads when
    /// `all_threads` (a thread walk costs more than the rest of a tick, so the sampler asks once
    /// a second). Returns `(pid, counters)` for the processes read.
    pub fn sample(
        &mut self,
        root: &ProcRoot,
        all_threads: bool,
        events: &mut Vec<(u32, EventKind)>,
    ) -> Vec<(i32, Cheap)> {
        let mut read = Vec::with_capacity(self.processes.len());
        let mut gone = Vec::new();
        let mut children = Vec::new();
        for (&pid, tracked) in self.processes.iter_mut() {
            match tracked.handle.try_cheap() {
                Some(cheap) => {
                    read.push((pid, cheap));
                    let found = if all_threads {
                        tracked.handle.try_children()
                    } else {
                        tracked.handle.try_main_children()
                    };
                    for child in found {
                        children.push((pid, child));
                    }
                }
                None => gone.push(pid),
            }
        }
        for pid in gone {
            self.processes.remove(&pid);
            events.push((self.worker, EventKind::ProcessGone { pid }));
        }
        for (parent, child) in children {
            if self.processes.contains_key(&child) {
                continue;
            }
            // The child list was read a moment ago: check the pid still names a child of
            // `parent`, not a process that took the pid since.
            let Some(handle) = ProcessHandle::try_open(root, child) else {
                continue;
            };
            if handle.ppid != parent {
                continue;
            }
            let mut handle = handle;
            if let Some(cheap) = handle.try_cheap() {
                read.push((child, cheap));
                self.track(handle, events);
            }
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_joins_its_parents_worker() {
        let root = ProcRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/proc"));
        let mut tree = WorkerTree::new(3);
        let mut events = Vec::new();
        assert!(tree.adopt(&root, 4242, &mut events));
        assert!(
            !tree.adopt(&root, 99999, &mut events),
            "a missing pid is not adopted"
        );
        let read: Vec<i32> = tree
            .sample(&root, false, &mut events)
            .iter()
            .map(|(pid, _)| *pid)
            .collect();
        assert_eq!(read, vec![4242, 4243]);
        let seen: Vec<(u32, i32, i32)> = events
            .iter()
            .filter_map(|(w, e)| match e {
                EventKind::ProcessSeen { pid, ppid, .. } => Some((*w, *pid, *ppid)),
                _ => None,
            })
            .collect();
        assert_eq!(seen, vec![(3, 4242, 1), (3, 4243, 4242)]);
        events.clear();
        assert_eq!(tree.sample(&root, false, &mut events).len(), 2);
        assert!(
            events.is_empty(),
            "nothing new on the second tick: {events:?}"
        );
    }
}
