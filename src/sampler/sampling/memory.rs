//! The sampler's reads of memory beyond the cheap counters: PSS under the CPU budget and each
//! costly process's hold allowance, each worker's tree memory for the policy, and the memory no
//! tree accounts for.

use super::*;

#[derive(Debug, Default)]
pub(super) struct Placed {
    pub(super) trial_ends: u64,
    pub(super) reads: u64,
    pub(super) put_off: u64,
    pub(super) said: bool,
}

/// How long a costly process of a worker that has not reported a trial waits before it is read
/// without trials to place its reads after.
pub(super) const LEARN_TRIALS_NS: u64 = 2_000_000_000;

/// The run is told once per process that its reads go into the gaps after trials.
fn placed_note(tracked: &tree::Tracked, hold_ns: u64, limits: HoldLimits) -> EventKind {
    let message = format!(
        "pid {} ({}): reading its PSS and mappings holds its memory map for about {:.0} ms, so they are read only in the gaps after its trials, and within {}% of its time: at most about every {:.0} s",
        tracked.handle.pid,
        tracked.handle.command,
        hold_ns as f64 / 1e6,
        limits.fraction * 100.0,
        limits.period_ns(2 * hold_ns) as f64 / 1e9,
    );
    EventKind::Note { message }
}

impl SamplerLoop {
    /// `/dev/shm` (when due) and the memory in use that no tree accounts for.
    pub(super) fn outside_trees(
        &mut self,
        t_ns: u64,
        system: &mut SystemSample,
        memory: &BTreeMap<u32, WorkerMemory>,
    ) {
        if let Some(shm) = self.shm.as_mut() {
            let pids = self
                .workers
                .values()
                .flat_map(|w| w.processes.keys().copied());
            if let Some(kind) = shm.tick(t_ns, &self.config.root, pids) {
                self.records.event_now(&self.clock, None, kind);
            }
            system.shm_bytes = shm.total.map(|(bytes, _)| bytes);
            system.shm_files = shm.total.map(|(_, files)| files);
        }
        if !self.workers.is_empty() {
            let used = match (system.cgroup_limit_bytes, system.cgroup_working_set_bytes) {
                (Some(_), Some(working_set)) => working_set,
                _ => system
                    .mem_total_bytes
                    .saturating_sub(system.mem_available_bytes),
            };
            let trees: u64 = memory.values().map(|m| m.pss_bytes).sum();
            system.outside_trees_bytes = Some(used.saturating_sub(trees));
        }
    }

    /// Reads PSS where the CPU budget and each target's hold allowance let it (see
    /// `hold_budget`). Returns the costly processes read at their worker's trial end now: their
    /// mappings may be snapshotted too.
    pub(super) fn read_rollups(
        &mut self,
        t_ns: u64,
        forced: &BTreeSet<u32>,
        ends: &BTreeSet<u32>,
        processes: &mut [ProcessSample],
        events: &mut Vec<(u32, EventKind)>,
    ) -> BTreeSet<(u32, i32)> {
        let mut candidates = Vec::new();
        let mut sample_of = Vec::new();
        let mut placed_now = BTreeSet::new();
        for (index, p) in processes.iter().enumerate() {
            let Some(tree) = self.workers.get_mut(&p.worker) else {
                continue;
            };
            let reports_trials = tree.reports_trials;
            let Some(tracked) = tree.processes.get_mut(&p.pid) else {
                continue;
            };
            let hold_ns = tracked.expected_hold_ns();
            let at_boundary = forced.contains(&p.worker) || tracked.exec_pending;
            let limits = self.config.hold;
            let forced_read = if !limits.is_costly(hold_ns) {
                at_boundary
            } else if reports_trials {
                // In the gap after a trial, PSS and the mappings together, when they fit.
                if !ends.contains(&p.worker) {
                    continue;
                }
                let key = (p.worker, p.pid);
                let placed = self.placed.entry(key).or_default();
                placed.trial_ends += 1;
                if !tracked.hold.fits(t_ns, 2 * hold_ns, limits.fraction) {
                    placed.put_off += 1;
                    continue;
                }
                placed.reads += 1;
                if !placed.said {
                    placed.said = true;
                    events.push((p.worker, placed_note(tracked, hold_ns, limits)));
                }
                placed_now.insert(key);
                true
            } else if t_ns.saturating_sub(tracked.seen_ns) < LEARN_TRIALS_NS {
                // A process just seen: its worker may yet report trials (a start slowed by a
                // wrapper or a move into a cgroup of its own), whose gaps are where its
                // allowance should go.
                continue;
            } else if tracked.hold.fits(t_ns, hold_ns, limits.fraction) {
                // No trials, no gaps: wherever the allowance lets it.
                false
            } else {
                continue;
            };
            candidates.push(Candidate {
                last_read_ns: tracked.rollups.last_read_ns(),
                cost_ns: tracked.rollup_cost_ns,
                forced: forced_read,
            });
            sample_of.push(index);
        }
        for chosen in self.budget.choose(t_ns, &candidates) {
            let sample = &mut processes[sample_of[chosen]];
            let Some(tracked) = self
                .workers
                .get_mut(&sample.worker)
                .and_then(|w| w.processes.get_mut(&sample.pid))
            else {
                continue;
            };
            let mut charged = candidates[chosen].cost_ns;
            let mut rollup = tracked.handle.try_rollup();
            if rollup.is_none() && tracked.handle.try_detect_exec(true) {
                // The read failed because its descriptor belonged to the program before an
                // exec that status did not show (the same binary again): read the new one.
                tracked.forget_program();
                events.push((sample.worker, tracked.exec_event()));
                self.budget.correct(charged, 0);
                charged = 0;
                rollup = tracked.handle.try_rollup();
            }
            match rollup {
                Some(rollup) => {
                    self.budget.correct(charged, rollup.cost_ns);
                    tracked.record_cost(rollup.cost_ns, rollup.hold_ns);
                    let placed = placed_now.contains(&(sample.worker, sample.pid));
                    if placed || self.config.hold.is_costly(tracked.expected_hold_ns()) {
                        // The mappings read after it at a trial end hold about as long.
                        let reads = 1 + u64::from(placed);
                        tracked.hold.charge(reads * rollup.hold_ns);
                    }
                    tracked.rollups.read(t_ns);
                    tracked.last_pss = Some(rollup.pss);
                    tracked.rss_at_pss_bytes = tracked.rss_bytes;
                    tracked.exec_pending = false;
                    tracked.stale_said = false;
                    sample.pss = Some(rollup.pss);
                    sample.uss = Some(rollup.uss);
                    self.stats.rollups += 1;
                }
                None => self.budget.correct(charged, 0),
            }
        }
        placed_now
    }

    /// Once the run ends: each costly process whose reads were put off at some trial ends.
    pub(super) fn say_put_off(&self) {
        for ((worker, pid), placed) in &self.placed {
            if placed.put_off == 0 {
                continue;
            }
            let message = format!(
                "pid {pid}: its PSS and mappings were read at {} of its worker's {} trial ends, less often than once per trial, to keep memwarden's hold on its memory map under {}% of its time",
                placed.reads,
                placed.trial_ends,
                self.config.hold.fraction * 100.0
            );
            self.records
                .event_now(&self.clock, Some(*worker), EventKind::Note { message });
        }
    }

    /// Each worker's tree memory for the policy, counted into the sampler's health: a fresh
    /// PSS read stands in between rollups; RSS for a process whose PSS was never read or went
    /// stale, which the run is told once per process.
    pub(super) fn tree_memory(
        &mut self,
        t_ns: u64,
        processes: &[ProcessSample],
        events: &mut Vec<(u32, EventKind)>,
    ) -> BTreeMap<u32, WorkerMemory> {
        let interval_ns = self.config.interval.as_nanos() as u64;
        let (budget, hold) = (&self.budget, self.config.hold);
        let expected_gap_ns = |tracked: &tree::Tracked| {
            let gap = budget.guaranteed_period_ns(tracked.rollup_cost_ns, processes.len());
            let hold_ns = tracked.expected_hold_ns();
            if hold.is_costly(hold_ns) {
                // Its reads wait for its hold allowance as well (`hold_budget`).
                gap.max(hold.period_ns(2 * hold_ns))
            } else {
                gap
            }
        };
        let mut workers: BTreeMap<u32, (WorkerMemory, bool)> = BTreeMap::new();
        for sample in processes {
            let (memory, all_read) = workers
                .entry(sample.worker)
                .or_insert((WorkerMemory::default(), true));
            *all_read &= sample.pss.is_some();
            let tracked = self
                .workers
                .get_mut(&sample.worker)
                .and_then(|w| w.processes.get_mut(&sample.pid));
            let limit_ns = tracked
                .as_ref()
                .map(|t| t.rollups.limit_ns(interval_ns, expected_gap_ns(t)));
            let carried = tracked.as_ref().zip(limit_ns).and_then(|(t, limit_ns)| {
                let pss = t.fresh_pss(t_ns, limit_ns)?;
                Some(if hold.is_costly(t.expected_hold_ns()) {
                    t.pss_moved_with_rss(pss)
                } else {
                    pss
                })
            });
            match sample.pss.or(carried) {
                Some(pss) => memory.pss_bytes += pss,
                None => {
                    memory.pss_bytes += sample.rss;
                    memory.pss_stale = true;
                    if let (Some(tracked), Some(limit_ns)) = (tracked, limit_ns) {
                        events.extend(
                            tracked
                                .say_stale(t_ns, limit_ns)
                                .map(|e| (sample.worker, e)),
                        );
                    }
                }
            }
            if let Some(gpu) = sample.gpu {
                *memory.gpu_bytes.get_or_insert(0) += gpu;
            }
        }
        workers
            .into_iter()
            .map(|(worker, (memory, all_read))| {
                self.stats
                    .health
                    .entry(worker)
                    .or_default()
                    .count(all_read, !memory.pss_stale);
                (worker, memory)
            })
            .collect()
    }
}
