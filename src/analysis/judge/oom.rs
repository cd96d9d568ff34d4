//! The kernel's OOM kills, known from the memory cgroup's `oom_kill` counter rather than from
//! the kernel log (which a container usually cannot read). Pure: the counter's rises, the
//! workers' exits and vanished processes in, kills out.
//!
//! A worker's main process that died of SIGKILL near a rise of the counter was killed by the
//! kernel: memwarden's own SIGKILL comes only after a stop it asked for, which is not a failure
//! and not counted here. A rise that no such exit explains is matched to a process of a
//! worker's tree that vanished then (a DataLoader, a child the OOM killer chose: "probably"),
//! else left unmatched: a process outside memwarden's trees, in the same cgroup.

use crate::analysis::kind::Kind;
pub use crate::analysis::load::loaded::Ended;
use serde::{Deserialize, Serialize};

/// What the cgroup's counter says about the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OomKills {
    /// `cgroup v1 /path`: whose counter it is.
    pub cgroup: String,
    pub limit_bytes: Option<f64>,
    /// How far the counter rose during the run.
    pub counted: u64,
    pub kills: Vec<OomKill>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OomKill {
    /// When the counter showed it (ns since the start).
    pub t_ns: u64,
    pub worker: Option<u32>,
    pub pid: Option<i32>,
    /// The worker's main process, whose SIGKILL exit the counter explains; otherwise a process
    /// of the tree that vanished then, probably the one killed.
    pub main: bool,
    /// The worker's tree at its last sample before the kill, in `memory_kind`.
    pub memory_bytes: Option<f64>,
    pub memory_kind: Option<Kind>,
    /// Killed at the worker's own cgroup limit (this many bytes), its cgroup's counters say;
    /// the other workers were not touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_limit_bytes: Option<f64>,
}

/// A rise of a worker cgroup's kill counter: when (`t_ns`), how many, and its own limit where
/// the kills were at it.
pub type WorkerRise = (u64, u64, Option<u64>);

/// One reading of a worker's cgroup: `t_ns`, its kill counter, its own-limit events (v2 `oom`,
/// v1 `failcnt`), its limit.
pub type WorkerReading = (u64, u64, u64, Option<u64>);

/// What a worker's own cgroup counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerCounts {
    pub worker: u32,
    pub rises: Vec<WorkerRise>,
}

/// A worker cgroup's readings in time order (`t_ns`, `oom_kill`, its own-limit events: v2
/// `oom`, v1 `failcnt`; its limit) into its kills, each at its own limit where the own-limit
/// events rose with it.
pub fn worker_rises(readings: &[WorkerReading]) -> Vec<WorkerRise> {
    let mut rises = Vec::new();
    for pair in readings.windows(2) {
        let ((_, kills, own, _), (t, kills_now, own_now, limit)) = (pair[0], pair[1]);
        if let Some(count) = rise(Some(kills), kills_now) {
            rises.push((t, count, limit.filter(|_| own_now > own)));
        }
    }
    rises
}

/// Every kill the counters show, in time order. Those the workers' own cgroups counted go to
/// their workers (at their own limit where the cgroup says so), matched to their own exits; the
/// cgroup in force keeps only the kills that no worker counted within `slack_ns` (v2 counts a
/// child's kills in its ancestors too), matched as `match_kills` does to the exits left.
pub fn all_kills(
    parent: &[(u64, u64)],
    workers: &[WorkerCounts],
    ended: &[Ended],
    slack_ns: u64,
    memory: &dyn Fn(u32, u64) -> Option<(Kind, f64)>,
) -> Vec<OomKill> {
    let mut parent = parent.to_vec();
    let mut kills = Vec::new();
    for counts in workers {
        for &(t, n, _) in &counts.rises {
            let mut left = n;
            for rise in parent
                .iter_mut()
                .filter(|(pt, _)| pt.abs_diff(t) <= slack_ns)
            {
                let taken = rise.1.min(left);
                rise.1 -= taken;
                left -= taken;
            }
        }
        let own: Vec<Ended> = ended
            .iter()
            .filter(|e| e.worker == counts.worker)
            .copied()
            .collect();
        let rises: Vec<(u64, u64)> = counts.rises.iter().map(|&(t, n, _)| (t, n)).collect();
        // `match_kills` gives `n` kills per rise, in order: each takes its rise's limit.
        let limits = counts
            .rises
            .iter()
            .flat_map(|&(_, n, limit)| std::iter::repeat_n(limit, n as usize));
        for (mut kill, limit) in match_kills(&rises, &own, slack_ns, memory)
            .into_iter()
            .zip(limits)
        {
            kill.worker = Some(counts.worker);
            kill.own_limit_bytes = limit.map(|l| l as f64);
            kills.push(kill);
        }
    }
    parent.retain(|(_, n)| *n > 0);
    let left: Vec<Ended> = ended
        .iter()
        .filter(|e| {
            !kills
                .iter()
                .any(|k| k.pid == Some(e.pid) && k.t_ns == e.t_ns)
        })
        .copied()
        .collect();
    kills.extend(match_kills(&parent, &left, slack_ns, memory));
    kills.sort_by_key(|k| k.t_ns);
    kills
}

/// Matches each kill the counter counted (`rises`: `(t_ns, how many)`) to the nearest ended
/// process within `slack_ns`, main processes first. `memory(worker, t_ns)` is the tree's memory
/// at its last sample before `t_ns`.
pub fn match_kills(
    rises: &[(u64, u64)],
    ended: &[Ended],
    slack_ns: u64,
    memory: &dyn Fn(u32, u64) -> Option<(Kind, f64)>,
) -> Vec<OomKill> {
    let mut used = vec![false; ended.len()];
    let mut kills = Vec::new();
    for &(t, count) in rises {
        for _ in 0..count {
            let nearest = |main: bool, used: &[bool]| {
                ended
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| !used[*i] && e.main == main && e.t_ns.abs_diff(t) <= slack_ns)
                    .min_by_key(|(_, e)| e.t_ns.abs_diff(t))
                    .map(|(i, _)| i)
            };
            let Some(i) = nearest(true, &used).or_else(|| nearest(false, &used)) else {
                kills.push(OomKill {
                    t_ns: t,
                    worker: None,
                    pid: None,
                    main: false,
                    memory_bytes: None,
                    memory_kind: None,
                    own_limit_bytes: None,
                });
                continue;
            };
            used[i] = true;
            let e = ended[i];
            let memory = memory(e.worker, e.t_ns);
            kills.push(OomKill {
                t_ns: e.t_ns,
                worker: Some(e.worker),
                pid: Some(e.pid),
                main: e.main,
                memory_bytes: memory.map(|(_, bytes)| bytes),
                memory_kind: memory.map(|(kind, _)| kind),
                own_limit_bytes: None,
            });
        }
    }
    kills
}

/// The counter's rises from its readings in time order: the first reading is the baseline
/// (kills before the run are not the run's), and a drop means another cgroup's counter (the one
/// in force changed), a new baseline.
pub fn rises(readings: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut last: Option<u64> = None;
    let mut rises = Vec::new();
    for (t, value) in readings {
        if let Some(count) = rise(last, value) {
            rises.push((t, count));
        }
        last = Some(value);
    }
    rises
}

/// How far one reading rose over the one before it (`None`: the first reading, no rise, or a
/// drop); for a reader that gets readings one at a time (the live status).
pub fn rise(before: Option<u64>, value: u64) -> Option<u64> {
    before.filter(|&b| value > b).map(|b| value - b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// v1 counts a worker's kill in its own cgroup only, v2 in its ancestors too: the kill is
    /// the worker's once, at its own limit where its own-limit events rose with it.
    #[test]
    fn a_workers_own_cgroup_names_its_kills_and_the_parent_does_not_count_them_again() {
        let limit = Some(150 << 20);
        let readings = [
            (0, 0, 0, limit),
            (100 * MS, 0, 0, limit),
            (200 * MS, 1, 62, limit), // at its own limit: failcnt rose with the kill
            (300 * MS, 1, 62, limit),
            (900 * MS, 2, 62, limit), // a kill for a limit above its own
        ];
        let rises = worker_rises(&readings);
        assert_eq!(rises, vec![(200 * MS, 1, limit), (900 * MS, 1, None)]);
        let ended = [
            Ended {
                worker: 0,
                pid: 10,
                t_ns: 210 * MS,
                main: true,
            },
            Ended {
                worker: 1,
                pid: 20,
                t_ns: 5000 * MS,
                main: true,
            },
        ];
        // The parent (v2) counted the first kill as well, and one of another worker.
        let parent = [(200 * MS, 1), (5000 * MS, 1)];
        let counts = [WorkerCounts { worker: 0, rises }];
        let kills = all_kills(&parent, &counts, &ended, 300 * MS, &|_, _| None);
        assert_eq!(kills.len(), 3, "the first kill counted once: {kills:?}");
        assert_eq!(
            (kills[0].worker, kills[0].pid, kills[0].main),
            (Some(0), Some(10), true)
        );
        assert_eq!(kills[0].own_limit_bytes, Some(150.0 * 1024.0 * 1024.0));
        assert_eq!((kills[1].worker, kills[1].own_limit_bytes), (Some(0), None));
        assert_eq!(kills[1].pid, None, "worker 1's exit is not worker 0's kill");
        assert_eq!(
            (kills[2].worker, kills[2].pid, kills[2].own_limit_bytes),
            (Some(1), Some(20), None),
            "the parent's own kill"
        );
        // Two rises of one worker within the slack take two exits, never one twice.
        let twice = [WorkerCounts {
            worker: 0,
            rises: vec![(200 * MS, 1, None), (300 * MS, 1, None)],
        }];
        let kills = all_kills(&[], &twice, &ended, 300 * MS, &|_, _| None);
        assert_eq!(
            kills.iter().map(|k| k.pid).collect::<Vec<_>>(),
            [Some(10), None]
        );
    }

    #[test]
    fn the_counter_rises_from_its_first_reading_and_starts_again_after_a_drop() {
        let readings = [(0, 3), (10, 3), (20, 5), (30, 5), (40, 1), (50, 2)];
        assert_eq!(rises(readings), vec![(20, 2), (50, 1)]);
        assert!(rises([(0, 7)]).is_empty(), "kills before the run");
    }

    #[test]
    fn a_kill_goes_to_the_sigkilled_main_process_first_then_to_a_vanished_child() {
        let ended = [
            Ended {
                worker: 1,
                pid: 20,
                t_ns: 1000 * MS,
                main: false,
            },
            Ended {
                worker: 0,
                pid: 10,
                t_ns: 1040 * MS,
                main: true,
            },
            Ended {
                worker: 1,
                pid: 21,
                t_ns: 5000 * MS,
                main: false,
            },
        ];
        let memory = |worker: u32, _| Some((Kind::Pss, 100.0 * (worker + 1) as f64));
        let kills = match_kills(
            &[(1010 * MS, 2), (5100 * MS, 1), (9000 * MS, 1)],
            &ended,
            300 * MS,
            &memory,
        );
        let who: Vec<String> = kills
            .iter()
            .map(|k| format!("{:?} {:?} {} {:?}", k.worker, k.pid, k.main, k.memory_bytes))
            .collect();
        assert_eq!(
            who,
            [
                "Some(0) Some(10) true Some(100.0)",
                "Some(1) Some(20) false Some(200.0)",
                "Some(1) Some(21) false Some(200.0)",
                "None None false None",
            ]
        );
    }
}
