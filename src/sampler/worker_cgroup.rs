//! A worker's own memory cgroup, as the sampler reads it: its counters every tick (one read for
//! the whole tree, whatever its size), its members to see the tree change, and what the policy
//! may assume of the tree between per-process reads. The tiers in `sampler`'s header say when
//! the per-process reads still run.

use crate::policy::WorkerMemory;
use crate::probe::cgroup::{CgroupFiles, CgroupReading};
use crate::recording::{EventKind, WorkerCgroupSample};
use crate::supervisor::cgroup::WorkerCgroup;
use std::collections::{BTreeMap, BTreeSet};

/// Trees of up to this many processes are read process by process every tick, as without a
/// cgroup: the analysis's per-process series (a spike within a second, a rate without trial
/// boundaries) need every tick, and a small tree costs little.
pub const DENSE_TREE: usize = 8;

/// Above that, a worker's processes are read about this many process-reads a second at most
/// (once a second at least, and at every trial boundary and change of members): a tree of 300
/// every 3.75 s. Its cgroup stands for the whole tree on every tick.
const PROCESS_READS_PER_SECOND: u64 = 80;

/// A kill at a worker's own limit this soon after its start says the limit is too small to
/// start it.
const STARTUP_NS: u64 = 10_000_000_000;

/// What a tick reads of a worker's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// As without a cgroup (a small tree, or none yet).
    EveryTick,
    /// All of them, children of every thread included.
    All,
    /// None: the cgroup stands for the tree.
    Skip,
}

pub struct CgroupWatch {
    pub cgroup: WorkerCgroup,
    /// Ticks since its processes were last read in a large tree.
    since_read: u64,
    /// When its cgroup last went from no members to some: the worker's (re)start.
    started_ns: Option<u64>,
    files: CgroupFiles,
    members: Vec<i32>,
    /// The last reading, for the counters' rises.
    last: Option<WorkerCgroupSample>,
    /// At the last per-process read: the cgroup's anonymous and shared bytes, and the tree's
    /// memory as the per-process reads found it.
    at_full: Option<(u64, WorkerMemory)>,
}

impl CgroupWatch {
    pub fn open(cgroup: WorkerCgroup) -> std::io::Result<Self> {
        Ok(Self {
            files: CgroupFiles::open_dir(cgroup.version, &cgroup.dir)?,
            cgroup,
            since_read: 0,
            started_ns: None,
            members: Vec::new(),
            last: None,
            at_full: None,
        })
    }

    /// The counters now, and whether the set of processes in the cgroup changed since the last
    /// read (a process started or ended: the tree must be walked).
    pub fn read(&mut self, worker: u32, t_ns: u64) -> std::io::Result<(WorkerCgroupSample, bool)> {
        let reading = self
            .files
            .read()
            .map_err(|e| std::io::Error::new(e.kind(), format!("memory counters: {e}")))?;
        let was_empty = self.members.is_empty();
        let changed = self.read_members()?;
        if was_empty && !self.members.is_empty() {
            self.started_ns = Some(t_ns);
        }
        let mut sample = sample(worker, &reading);
        sample.limit_bytes = self.cgroup.limits.max;
        Ok((sample, changed))
    }

    fn read_members(&mut self) -> std::io::Result<bool> {
        let members = crate::supervisor::cgroup::members(&self.cgroup.procs())
            .map_err(|e| std::io::Error::new(e.kind(), format!("cgroup.procs: {e}")))?;
        let changed = members != self.members;
        self.members = members;
        Ok(changed)
    }

    /// Whether this tick reads the worker's processes (`processes` tracked now).
    pub fn plan(
        &mut self,
        processes: usize,
        ticks_per_second: u64,
        changed: bool,
        boundary: bool,
    ) -> Plan {
        if processes <= DENSE_TREE {
            self.since_read = 0;
            return Plan::EveryTick;
        }
        let n = processes as u64;
        let period =
            ticks_per_second.max((n * ticks_per_second).div_ceil(PROCESS_READS_PER_SECOND));
        self.since_read += 1;
        if changed || boundary || self.since_read >= period {
            self.since_read = 0;
            Plan::All
        } else {
            Plan::Skip
        }
    }

    /// After a per-process read: what the tree held then, beside the cgroup's count.
    pub fn per_process_read(&mut self, cgroup_bytes: u64, memory: WorkerMemory) {
        self.at_full = Some((cgroup_bytes, memory));
    }

    /// Between per-process reads: the tree's memory at the last one, moved by what the cgroup's
    /// anonymous and shared memory did since (what a tree adds there is its own, counted whole
    /// in PSS). `None` before the first per-process read.
    pub fn carried(&self, cgroup_bytes: u64) -> Option<WorkerMemory> {
        let (then, memory) = self.at_full?;
        Some(WorkerMemory {
            pss_bytes: (memory.pss_bytes + cgroup_bytes).saturating_sub(then),
            cgroup_bytes: Some(cgroup_bytes),
            ..memory
        })
    }

    /// What the counters' rises since the last reading tell: a kill by the kernel's OOM killer
    /// in this cgroup, at its own limit or a limit above it.
    ///
    /// A kill at its own limit within seconds of the worker's start (its cgroup's members
    /// went from none to some) says the limit is below what it needs to start.
    pub fn news(&mut self, now: &WorkerCgroupSample, t_ns: u64) -> Vec<EventKind> {
        let running_ns = self.started_ns.map(|s| t_ns.saturating_sub(s));
        let last = self.last.replace(now.clone());
        let Some(last) = last else {
            return Vec::new();
        };
        let rose = |f: fn(&WorkerCgroupSample) -> Option<u64>| {
            f(now).zip(f(&last)).is_some_and(|(n, l)| n > l)
        };
        if !rose(|s| s.oom_kill) {
            return Vec::new();
        }
        let kills = now.oom_kill.unwrap_or(0) - last.oom_kill.unwrap_or(0);
        // v2 counts `oom` where the limit was met (and above); v1 counts a failed charge
        // against this cgroup's own limit in its failcnt.
        let own = rose(|s| s.oom) || rose(|s| s.failcnt);
        let size = |bytes: u64| crate::units::size(bytes as f64);
        let message = match (own, self.cgroup.limits.max) {
            (true, Some(max)) if running_ns.is_some_and(|ns| ns < STARTUP_NS) => format!(
                "worker {}: killed at its own limit of {} by the kernel's OOM killer {:.1} s after it started: the limit is below what it needs to start; raise containment.memory_max (or the budget), or run fewer workers",
                now.worker,
                size(max),
                running_ns.unwrap_or(0) as f64 / 1e9
            ),
            (true, Some(max)) => format!(
                "worker {}: {kills} process(es) killed at its own limit of {} by the kernel's OOM killer (its cgroup {}); the other workers were not touched",
                now.worker,
                size(max),
                self.cgroup.dir.display()
            ),
            _ => format!(
                "worker {}: {kills} process(es) of its cgroup killed by the kernel's OOM killer for a limit above its own",
                now.worker
            ),
        };
        vec![EventKind::Note { message }]
    }
}

/// The workers' own cgroups that still read, as the sampler's tick uses them.
#[derive(Default)]
pub struct Watches(BTreeMap<u32, CgroupWatch>);

impl Watches {
    /// Opens each worker's cgroup; one line for each that cannot be opened.
    pub fn open(cgroups: &BTreeMap<u32, WorkerCgroup>) -> (Self, Vec<(u32, String)>) {
        let mut watches = BTreeMap::new();
        let mut lost = Vec::new();
        for (&worker, cgroup) in cgroups {
            match CgroupWatch::open(cgroup.clone()) {
                Ok(watch) => {
                    watches.insert(worker, watch);
                }
                Err(e) => lost.push((worker, lost_line(worker, cgroup, &e))),
            }
        }
        (Self(watches), lost)
    }

    /// Reads each worker's cgroup. Returns the readings and what this tick reads of each such
    /// worker's processes (`CgroupWatch::plan`, from `tracked`: how many it has now, and
    /// `boundaries`: the workers at a trial boundary). What the counters tell goes to `events`.
    /// A cgroup that stops reading (removed, its hierarchy changed) is given up with one note,
    /// and its worker read process by process from then on.
    pub fn read(
        &mut self,
        t_ns: u64,
        ticks_per_second: u64,
        boundaries: &BTreeSet<u32>,
        tracked: &dyn Fn(u32) -> usize,
        events: &mut Vec<(u32, EventKind)>,
    ) -> (Vec<WorkerCgroupSample>, BTreeMap<u32, Plan>) {
        let mut samples = Vec::new();
        let mut plans = BTreeMap::new();
        let mut lost = Vec::new();
        for (&worker, watch) in self.0.iter_mut() {
            match watch.read(worker, t_ns) {
                Ok((sample, changed)) => {
                    events.extend(watch.news(&sample, t_ns).into_iter().map(|e| (worker, e)));
                    let boundary = boundaries.contains(&worker);
                    let plan = watch.plan(tracked(worker), ticks_per_second, changed, boundary);
                    plans.insert(worker, plan);
                    samples.push(sample);
                }
                Err(e) => lost.push((worker, e)),
            }
        }
        for (worker, e) in lost {
            if let Some(watch) = self.0.remove(&worker) {
                let message = lost_line(worker, &watch.cgroup, &e);
                events.push((worker, EventKind::Note { message }));
            }
        }
        (samples, plans)
    }

    /// The policy's view of each worker with a cgroup: its anonymous and shared bytes, and on
    /// ticks that did not read its processes (`Plan::Skip`) the tree's memory carried from the
    /// last that did.
    pub fn memory(
        &mut self,
        samples: &[WorkerCgroupSample],
        plans: &BTreeMap<u32, Plan>,
        memory: &mut BTreeMap<u32, WorkerMemory>,
    ) {
        for sample in samples {
            let Some(watch) = self.0.get_mut(&sample.worker) else {
                continue;
            };
            let held = held(sample);
            if plans.get(&sample.worker) == Some(&Plan::Skip) {
                if let Some(carried) = watch.carried(held) {
                    memory.insert(sample.worker, carried);
                }
            } else if let Some(read) = memory.get_mut(&sample.worker) {
                read.cgroup_bytes = Some(held);
                watch.per_process_read(held, *read);
            }
        }
    }
}

fn lost_line(worker: u32, cgroup: &WorkerCgroup, error: &std::io::Error) -> String {
    format!(
        "worker {worker}: its cgroup {} cannot be read ({error}); its memory is read process by process from now on",
        cgroup.dir.display()
    )
}

/// The anonymous and shared memory of a reading: what only a restart frees.
pub fn held(sample: &WorkerCgroupSample) -> u64 {
    sample.anon_bytes.unwrap_or(sample.usage_bytes) + sample.shmem_bytes.unwrap_or(0)
}

fn sample(worker: u32, r: &CgroupReading) -> WorkerCgroupSample {
    WorkerCgroupSample {
        worker,
        limit_bytes: None,
        usage_bytes: r.usage_bytes,
        anon_bytes: r.anon_bytes,
        file_bytes: r.file_bytes,
        shmem_bytes: r.shmem_bytes,
        kernel_bytes: r.kernel_bytes,
        sock_bytes: r.sock_bytes,
        mapped_file_bytes: r.mapped_file_bytes,
        oom: r.oom,
        oom_kill: r.oom_kill,
        failcnt: r.failcnt,
        high: r.high,
        max: r.max,
        psi_full_total_us: r.psi_full_total_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::cgroup::Version;
    use std::path::Path;

    const MIB: u64 = 1 << 20;

    fn v1_files(dir: &Path, anon: u64, failcnt: u64, oom_kill: u64, procs: &str) {
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).expect(name);
        write("memory.usage_in_bytes", format!("{}\n", anon + 10 * MIB));
        write(
            "memory.stat",
            format!("cache 0\nrss {anon}\ntotal_cache {}\ntotal_rss {anon}\ntotal_shmem {}\ntotal_mapped_file 0\ntotal_inactive_file 0\n", 10 * MIB, 2 * MIB),
        );
        write(
            "memory.oom_control",
            format!("oom_kill_disable 0\nunder_oom 0\noom_kill {oom_kill}\n"),
        );
        write("memory.failcnt", format!("{failcnt}\n"));
        write("cgroup.procs", procs.to_string());
    }

    fn watch(dir: &Path) -> CgroupWatch {
        CgroupWatch::open(WorkerCgroup {
            version: Version::V1,
            dir: dir.to_path_buf(),
            limits: crate::policy::WorkerLimits {
                max: Some(150 * MIB),
                high: None,
            },
        })
        .expect("opens")
    }

    #[test]
    fn the_cgroup_reads_the_whole_tree_and_sees_its_members_change() {
        let dir = tempfile::tempdir().expect("temp");
        v1_files(dir.path(), 100 * MIB, 0, 0, "12\n10\n");
        let mut watch = watch(dir.path());
        let (sample, changed) = watch.read(3, 0).expect("reads");
        assert!(changed, "the first read is a change");
        assert_eq!(sample.worker, 3);
        assert_eq!(sample.limit_bytes, Some(150 * MIB));
        assert_eq!(sample.anon_bytes, Some(100 * MIB));
        assert_eq!(sample.shmem_bytes, Some(2 * MIB));
        assert_eq!(held(&sample), 102 * MIB, "anonymous and shared");
        assert!(!watch.read(3, 0).expect("reads").1, "same members");
        std::fs::write(dir.path().join("cgroup.procs"), "10\n12\n40\n").expect("write");
        assert!(watch.read(3, 0).expect("reads").1, "a process joined");
        std::fs::remove_file(dir.path().join("cgroup.procs")).expect("rm");
        let lost = watch.read(3, 0).expect_err("gone");
        assert!(lost.to_string().starts_with("cgroup.procs: "), "{lost}");
    }

    /// A small tree is read every tick; a large one about 80 process-reads a second, once a
    /// second at least, and at once at a boundary or a change of members.
    #[test]
    fn a_large_tree_is_read_as_often_as_its_size_allows() {
        let dir = tempfile::tempdir().expect("temp");
        v1_files(dir.path(), 100 * MIB, 0, 0, "10\n");
        let mut watch = watch(dir.path());
        let reads = |watch: &mut CgroupWatch, processes: usize, ticks: usize| {
            (0..ticks)
                .map(|_| watch.plan(processes, 10, false, false))
                .filter(|p| *p != Plan::Skip)
                .count()
        };
        assert_eq!(watch.plan(8, 10, false, false), Plan::EveryTick);
        assert_eq!(reads(&mut watch, 8, 100), 100, "small: every tick");
        assert_eq!(
            reads(&mut watch, 30, 100),
            10,
            "30 processes: once a second"
        );
        assert_eq!(reads(&mut watch, 300, 380), 10, "300: every 3.8 s");
        assert_eq!(watch.plan(300, 10, false, true), Plan::All, "a boundary");
        assert_eq!(watch.plan(300, 10, false, false), Plan::Skip);
        assert_eq!(
            watch.plan(300, 10, true, false),
            Plan::All,
            "a member came or went"
        );
    }

    /// Between per-process reads the tree's memory moves with the cgroup's count, never below
    /// nothing; before the first per-process read there is nothing to carry.
    #[test]
    fn between_per_process_reads_the_tree_moves_with_its_cgroup() {
        let dir = tempfile::tempdir().expect("temp");
        v1_files(dir.path(), 100 * MIB, 0, 0, "10\n");
        let mut watch = watch(dir.path());
        assert_eq!(watch.carried(100 * MIB), None);
        let read = WorkerMemory {
            pss_bytes: 90 * MIB,
            pss_stale: true,
            ..WorkerMemory::default()
        };
        watch.per_process_read(100 * MIB, read);
        let grown = watch.carried(130 * MIB).expect("carried");
        assert_eq!(grown.pss_bytes, 120 * MIB);
        assert_eq!(grown.cgroup_bytes, Some(130 * MIB));
        assert!(grown.pss_stale, "what was stale stays so");
        assert_eq!(watch.carried(0).expect("carried").pss_bytes, 0);
    }

    #[test]
    fn a_kill_at_its_own_limit_is_told_apart_from_one_for_a_limit_above() {
        let dir = tempfile::tempdir().expect("temp");
        v1_files(dir.path(), 100 * MIB, 0, 0, "10\n");
        let mut watch = watch(dir.path());
        let mut news = |failcnt, kills| {
            v1_files(dir.path(), 100 * MIB, failcnt, kills, "10\n");
            let (sample, _) = watch.read(0, 0).expect("reads");
            watch
                .news(&sample, 60_000_000_000)
                .into_iter()
                .map(|e| match e {
                    EventKind::Note { message } => message,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        assert!(news(0, 0).is_empty(), "the first reading is the baseline");
        assert!(news(5, 0).is_empty(), "a failed charge alone is no kill");
        let own = news(9, 1);
        assert!(
            own[0].starts_with("worker 0: 1 process(es) killed at its own limit of 150.0 MiB"),
            "{own:?}"
        );
        let above = news(9, 3);
        assert!(
            above[0].starts_with("worker 0: 2 process(es) of its cgroup killed by the kernel's OOM killer for a limit above its own"),
            "{above:?}"
        );
        // Killed at its own limit 1.5 s after it started: the limit is too small to start it.
        v1_files(dir.path(), 0, 0, 0, "");
        let mut fresh = super::tests::watch(dir.path());
        let (sample, _) = fresh.read(0, 0).expect("reads");
        assert!(fresh.news(&sample, 0).is_empty());
        v1_files(dir.path(), 20 * MIB, 0, 0, "10\n");
        let (sample, _) = fresh.read(0, 500_000_000).expect("reads");
        assert!(fresh.news(&sample, 500_000_000).is_empty());
        v1_files(dir.path(), 0, 3, 1, "");
        let (sample, _) = fresh.read(0, 2_000_000_000).expect("reads");
        let said = fresh.news(&sample, 2_000_000_000);
        assert!(
            matches!(&said[..], [EventKind::Note { message }] if message.contains("1.5 s after it started: the limit is below what it needs to start")),
            "{said:?}"
        );
    }
}
