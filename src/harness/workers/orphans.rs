//! Processes that leave their worker's tree: orphans reparented to memwarden (adopted into their
//! worker's group, or stopped with it) and escapees from a worker's process group found in its
//! cgroup or its tree.

use super::*;

impl Workers<'_> {
    /// Stops the orphans of worker `index` (of every worker with `None`) that left its process
    /// group; the ones still in it go with the group.
    pub(super) fn stop_orphans(&mut self, index: Option<u32>, grace: Duration, now: Instant) {
        let groups: BTreeSet<i32> = self.workers.values().map(|w| w.pgid).collect();
        for (&pgid, &worker) in &self.escaped {
            if index.is_none_or(|i| i == worker) && !groups.contains(&pgid) && group_alive(pgid) {
                self.stopper.stop(pgid, grace, now);
            }
        }
        for orphan in self.orphans.values() {
            // An orphan no worker claims came from some worker's tree all the same (only they
            // are below us): it is stopped when the run ends.
            let ours = match orphan.worker {
                Some(w) => index.is_none_or(|i| i == w),
                None => index.is_none(),
            };
            // Its group now: an orphan adopted between its fork and its `setsid` has left the
            // group it was seen in.
            let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(orphan.pid)))
                .map_or(orphan.pgid, |pgid| pgid.as_raw());
            if ours && pgid > 1 && !groups.contains(&pgid) {
                self.stopper.stop(pgid, grace, now);
            }
        }
    }

    /// Looks through our children for orphans (at most every [`ORPHAN_SCAN`]): a new one joins
    /// its worker's tree and the guardian's watch, and one that exited is reaped.
    pub(super) fn tend_orphans(&mut self) {
        let now = Instant::now();
        if self.last_orphan_scan.is_some_and(|t| now < t + ORPHAN_SCAN) {
            return;
        }
        self.last_orphan_scan = Some(now);
        self.tend_escapees();
        if !self.subreaper {
            return;
        }
        let known: BTreeSet<i32> = self
            .workers
            .values()
            .filter(|w| w.adopted.is_none() && w.exited.is_none())
            .map(|w| w.pid)
            .chain(self.guardian.as_ref().map(Guardian::pid))
            .collect();
        let groups: Vec<(u32, i32)> = self
            .workers
            .values()
            .filter(|w| w.adopted.is_none())
            .map(|w| (w.index, w.pgid))
            .collect();
        let found = reaper::orphans(&known, &groups);
        let mut present = BTreeSet::new();
        for orphan in found {
            if orphan.zombie {
                if !reaper::reap(orphan.pid) {
                    present.insert(orphan.pid);
                }
                continue;
            }
            present.insert(orphan.pid);
            if let Some(known) = self.orphans.get_mut(&orphan.pid) {
                if known.pgid != orphan.pgid {
                    // It left the group it was adopted in (a `setsid` after its parent died):
                    // the guardian watches the new one.
                    known.pgid = orphan.pgid;
                    let own_group = groups.iter().all(|(_, g)| *g != orphan.pgid);
                    if own_group && orphan.pgid > 1 && self.orphan_groups.insert(orphan.pgid) {
                        if let Some(guardian) = self.guardian.as_mut() {
                            guardian.watch(orphan.pgid);
                        }
                    }
                }
                continue;
            }
            self.adopt_orphan(&orphan, &groups);
            self.orphans.insert(orphan.pid, orphan);
        }
        self.orphans.retain(|pid, _| present.contains(pid));
    }

    /// Hands every process group that a worker's process moved to (`setsid`, `setpgid`) to the
    /// guardian, so a killed harness leaves no escapee holding memory, and says so once.
    pub(super) fn tend_escapees(&mut self) {
        let live: Vec<(u32, i32, i32)> = self
            .workers
            .values()
            .filter(|w| w.adopted.is_none() && w.exited.is_none())
            .map(|w| (w.index, w.pid, w.pgid))
            .collect();
        let worker_groups: BTreeSet<i32> = live.iter().map(|(_, _, g)| *g).collect();
        for (index, pid, pgid) in live {
            if !self.walk_due(index) {
                continue;
            }
            for (escapee, group) in reaper::escaped_groups(pid, pgid) {
                if worker_groups.contains(&group) || self.escaped.contains_key(&group) {
                    continue;
                }
                self.escaped.insert(group, index);
                self.orphan_groups.insert(group);
                if let Some(guardian) = self.guardian.as_mut() {
                    guardian.watch(group);
                }
                let message = format!("pid {escapee} of worker {index} left its process group for group {group} (a setsid or setpgid): memwarden watches that group too and stops it with the worker, also should memwarden itself be killed");
                self.event(Some(index), EventKind::Note { message });
            }
        }
        self.escaped.retain(|pgid, _| group_alive(*pgid));
    }

    /// Whether a worker's tree is walked for escapees now: every scan without a cgroup of its
    /// own; with one, when its members changed (a process came or went) and every 5 s for a
    /// process that left its group without forking, since a walk of a large tree every 200 ms
    /// costs more than the sampler (3.4 ms a tick for 300 processes).
    pub(super) fn walk_due(&mut self, index: u32) -> bool {
        const EVERY: Duration = Duration::from_secs(5);
        let Some(procs) = self.cgroups.get(&index) else {
            return true;
        };
        let Ok(members) = crate::supervisor::cgroup::members(procs) else {
            return true;
        };
        let due = self
            .walked
            .get(&index)
            .is_none_or(|(last, at)| *last != members || at.elapsed() >= EVERY);
        if due {
            self.walked.insert(index, (members, Instant::now()));
        }
        due
    }

    pub(super) fn adopt_orphan(&mut self, orphan: &reaper::Orphan, groups: &[(u32, i32)]) {
        let (pid, name) = (orphan.pid, &orphan.command);
        let Some(worker) = orphan.worker else {
            let own_group = groups.iter().all(|(_, g)| *g != orphan.pgid);
            if own_group && orphan.pgid > 1 && self.orphan_groups.insert(orphan.pgid) {
                if let Some(guardian) = self.guardian.as_mut() {
                    guardian.watch(orphan.pgid);
                }
            }
            let message = format!("pid {pid} ({name}) was reparented to memwarden but names no worker (neither its process group nor its environment does): it came from a worker's tree, so memwarden stops it when the run ends");
            self.event(None, EventKind::Note { message });
            return;
        };
        let _ = self.sampler.send(Control::Adopt { worker, pid });
        let own_group = groups.iter().all(|(_, g)| *g != orphan.pgid);
        if own_group && orphan.pgid > 1 && self.orphan_groups.insert(orphan.pgid) {
            if let Some(guardian) = self.guardian.as_mut() {
                guardian.watch(orphan.pgid);
            }
        }
        let message = format!("pid {pid} ({name}) outlived its parent and was reparented to memwarden: it stays with worker {worker} and is stopped with it");
        self.event(Some(worker), EventKind::Note { message });
    }
}
