//! The processes of one worker's tree. A process joins when it appears among the children of a
//! process already tracked and leaves when its handle stops reading; it stays attributed to the
//! worker after its parent dies (an orphaned dataloader still belongs to the worker that forked
//! it).

use crate::freshness::ReadCadence;
use crate::probe::{Cheap, ProcRoot, ProcessHandle};
use crate::recording::EventKind;
use std::collections::BTreeMap;

pub struct Tracked {
    pub handle: ProcessHandle,
    /// When smaps_rollup was read (for the budget's "stalest first" and for freshness).
    pub rollups: ReadCadence,
    /// The last PSS read, which the policy's reading carries between rollups while fresh.
    pub last_pss: Option<u64>,
    pub rollup_cost_ns: u64,
    /// When the process joined the tree (ns since the start).
    pub seen_ns: u64,
    /// Its program changed and its PSS has not been read since: read it on this tick.
    pub exec_pending: bool,
    /// The run was told this process's PSS went stale; cleared by the next read.
    pub stale_said: bool,
    /// Its allowance of time with its memory map held by memwarden's reads.
    pub hold: crate::sampler::hold_budget::HoldBudget,
    /// Its resident size at the last tick, for the cost guess before its first read.
    pub rss_bytes: u64,
    /// Its resident size when its PSS was last read.
    pub rss_at_pss_bytes: u64,
    /// What its last few reads held its memory map for (the kernel's walk, `Rollup::hold_ns`),
    /// newest last; the least of them is what the next is expected to hold.
    pub recent_holds_ns: Vec<u64>,
}

impl Tracked {
    /// What a read of its PSS is expected to hold its memory map: the least of its last few
    /// measured holds (one read slowed by a busy machine must not make a small process
    /// costly), or a guess from its size before the first.
    pub fn expected_hold_ns(&self) -> u64 {
        let by_size = crate::sampler::hold_budget::estimated_hold_ns(self.rss_bytes);
        match self.recent_holds_ns.iter().min() {
            // At most half again what its size implies, so that a busy machine's slow walks do
            // not make a small process costly (a policy test's 300 MiB worker lost its
            // escalation once in a loaded full test run, plausibly so; not reproduced alone).
            Some(&least) => least.min(by_size.saturating_mul(3) / 2),
            None => self.rollup_cost_ns.max(by_size),
        }
    }

    /// Keeps a read's measured cost (for the CPU budget) and hold (for the target's).
    pub fn record_cost(&mut self, cost_ns: u64, hold_ns: u64) {
        const KEPT: usize = 4;
        if self.recent_holds_ns.len() == KEPT {
            self.recent_holds_ns.remove(0);
        }
        self.recent_holds_ns.push(hold_ns.max(1));
        self.rollup_cost_ns = cost_ns.max(1);
    }
}

impl Tracked {
    /// After an exec nothing measured of the old program stands for the new one.
    pub fn forget_program(&mut self) {
        self.rollups = ReadCadence::default();
        self.last_pss = None;
        self.rollup_cost_ns = crate::sampler::rollup_budget::UNKNOWN_COST_NS;
        self.recent_holds_ns.clear();
        self.exec_pending = true;
    }

    /// The last PSS read, while it is younger than `limit_ns` (see `freshness`).
    pub fn fresh_pss(&self, t_ns: u64, limit_ns: u64) -> Option<u64> {
        self.last_pss
            .filter(|_| self.rollups.is_fresh_within(t_ns, limit_ns))
    }

    /// The last PSS read moved by what RSS did since: a process read only in its trial gaps
    /// (`hold_budget`) can grow a lot between reads, and what it adds is its own, counted whole
    /// in PSS. For the policy, which must see that growth as it happens.
    pub fn pss_moved_with_rss(&self, pss: u64) -> u64 {
        (pss + self.rss_bytes).saturating_sub(self.rss_at_pss_bytes)
    }

    /// The run learns once per episode that this process's PSS is not known, once it has been
    /// tracked for longer than a read stays fresh (a process just seen waits for its first read).
    pub fn say_stale(&mut self, t_ns: u64, limit_ns: u64) -> Option<EventKind> {
        let since_ns = self.rollups.last_read_ns().unwrap_or(self.seen_ns);
        if self.stale_said || t_ns.saturating_sub(since_ns) <= limit_ns {
            return None;
        }
        self.stale_said = true;
        let message = format!(
            "no PSS read of pid {} for {:.1} s; the policy and the live view count its RSS until one succeeds",
            self.handle.pid,
            t_ns.saturating_sub(since_ns) as f64 / 1e9,
        );
        Some(EventKind::Note { message })
    }

    pub fn exec_event(&self) -> EventKind {
        EventKind::Exec {
            pid: self.handle.pid,
            start_ticks: self.handle.start_ticks,
            command: self.handle.command.clone(),
        }
    }
}

pub struct WorkerTree {
    pub worker: u32,
    pub processes: BTreeMap<i32, Tracked>,
    /// A trial boundary was seen: its costly processes are read in the gaps after trials.
    pub reports_trials: bool,
}

impl WorkerTree {
    pub fn new(worker: u32) -> Self {
        Self {
            worker,
            processes: BTreeMap::new(),
            reports_trials: false,
        }
    }

    /// Starts tracking `pid` as a root of this worker (a start, restart or attach).
    pub fn adopt(
        &mut self,
        root: &ProcRoot,
        pid: i32,
        t_ns: u64,
        events: &mut Vec<(u32, EventKind)>,
    ) -> bool {
        if self.processes.contains_key(&pid) {
            return true;
        }
        match ProcessHandle::try_open(root, pid) {
            Some(handle) => {
                self.track(handle, t_ns, events);
                true
            }
            None => false,
        }
    }

    fn track(&mut self, handle: ProcessHandle, t_ns: u64, events: &mut Vec<(u32, EventKind)>) {
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
                rollups: ReadCadence::default(),
                last_pss: None,
                rollup_cost_ns: crate::sampler::rollup_budget::UNKNOWN_COST_NS,
                seen_ns: t_ns,
                exec_pending: false,
                stale_said: false,
                hold: Default::default(),
                rss_bytes: 0,
                rss_at_pss_bytes: 0,
                recent_holds_ns: Vec::new(),
            },
        );
    }

    /// Reads the cheap counters of every tracked process, drops the ones that are gone and
    /// adopts new children: those of main threads every tick, those of all threads when
    /// `thorough` (a thread walk costs more than the rest of a tick, so the sampler asks once
    /// a second). Execs are looked for when status shows another program, and on every
    /// `thorough` tick for the exec of the same binary. Returns `(pid, counters)` for the
    /// processes read.
    pub fn sample(
        &mut self,
        root: &ProcRoot,
        thorough: bool,
        t_ns: u64,
        events: &mut Vec<(u32, EventKind)>,
    ) -> Vec<(i32, Cheap)> {
        let mut read = Vec::with_capacity(self.processes.len());
        let mut gone = Vec::new();
        let mut children = Vec::new();
        for (&pid, tracked) in self.processes.iter_mut() {
            match tracked.handle.try_cheap(thorough) {
                Some(cheap) => {
                    tracked.rss_bytes = cheap.rss;
                    read.push((pid, cheap));
                    if tracked.handle.try_detect_exec(thorough) {
                        tracked.forget_program();
                        events.push((self.worker, tracked.exec_event()));
                    }
                    let found = if thorough {
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
            if let Some(cheap) = handle.try_cheap(true) {
                read.push((child, cheap));
                self.track(handle, t_ns, events);
            }
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_carried_pss_stands_while_fresh_and_the_run_is_told_once_when_it_is_not() {
        let root = ProcRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/proc"));
        let mut tree = WorkerTree::new(0);
        assert!(tree.adopt(&root, 4242, 0, &mut Vec::new()));
        let tracked = tree.processes.get_mut(&4242).expect("bug: adopted");
        assert_eq!(tracked.fresh_pss(S, 2 * S), None, "never read");
        assert_eq!(tracked.say_stale(S, 2 * S), None, "just seen");
        tracked.rollups.read(S);
        tracked.last_pss = Some(42);
        assert_eq!(tracked.fresh_pss(3 * S, 2 * S), Some(42));
        assert_eq!(tracked.fresh_pss(3 * S + 1, 2 * S), None, "stale");
        let said = tracked.say_stale(3 * S + 1, 2 * S);
        assert!(
            matches!(&said, Some(EventKind::Note { message }) if message.starts_with("no PSS read of pid 4242 for 2.0 s")),
            "{said:?}"
        );
        assert_eq!(tracked.say_stale(9 * S, 2 * S), None, "said once");
        tracked.forget_program();
        assert_eq!(
            tracked.fresh_pss(9 * S, 2 * S),
            None,
            "nothing of the old program"
        );
        assert!(tracked.exec_pending);
    }

    #[test]
    fn a_carried_pss_moves_with_rss_for_the_policy() {
        let root = ProcRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/proc"));
        let mut tree = WorkerTree::new(0);
        assert!(tree.adopt(&root, 4242, 0, &mut Vec::new()));
        let tracked = tree.processes.get_mut(&4242).expect("bug: adopted");
        tracked.rss_at_pss_bytes = 300;
        tracked.rss_bytes = 340;
        assert_eq!(
            tracked.pss_moved_with_rss(200),
            240,
            "grew by 40 since the read"
        );
        tracked.rss_bytes = 100;
        assert_eq!(tracked.pss_moved_with_rss(150), 0, "never below nothing");
    }

    #[test]
    fn a_child_joins_its_parents_worker() {
        let root = ProcRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/proc"));
        let mut tree = WorkerTree::new(3);
        let mut events = Vec::new();
        assert!(tree.adopt(&root, 4242, 0, &mut events));
        assert!(
            !tree.adopt(&root, 99999, 0, &mut events),
            "a missing pid is not adopted"
        );
        let read: Vec<i32> = tree
            .sample(&root, false, 0, &mut events)
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
        assert_eq!(tree.sample(&root, false, 0, &mut events).len(), 2);
        assert!(
            events.is_empty(),
            "nothing new on the second tick: {events:?}"
        );
    }
}
