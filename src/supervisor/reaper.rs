//! memwarden as the workers' child subreaper (`PR_SET_CHILD_SUBREAPER`), and in a container as
//! its PID 1: a process whose parent died is reparented to memwarden instead of to init, so a
//! DataLoader worker or a daemon that a worker left behind stays attributed to that worker, is
//! stopped with it, and is reaped here (a subreaper that never waited would pile up zombies).
//!
//! Which of our children are such orphans: every child we did not start ourselves. The harness
//! starts its workers and the guardian in process groups of their own and everything else (a
//! `dmesg`, a publish command) in its own group, which another part of memwarden waits for; so an
//! orphan is a child that is neither a known worker nor the guardian and whose group is not ours.
//! An orphan belongs to the worker whose process group it is in, or else to the one its
//! environment names (`MEMWARDEN_WORKER`, which every process a worker starts inherits unless it
//! clears its environment): a daemon that called `setsid` keeps the second.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use procfs::process::Process;
use std::collections::BTreeSet;

/// Makes this process the subreaper of everything it starts.
pub fn become_subreaper() -> Result<(), String> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("cannot become the workers' child subreaper ({e})"))
}

/// One of our children that we did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub pid: i32,
    pub pgid: i32,
    pub worker: Option<u32>,
    pub command: String,
    pub zombie: bool,
}

/// The worker an orphan belongs to: the one whose process group it is in, else the one its
/// environment names (only where that worker exists).
pub fn attribute(pgid: i32, env_worker: Option<u32>, workers: &[(u32, i32)]) -> Option<u32> {
    workers
        .iter()
        .find(|(_, group)| *group == pgid)
        .or_else(|| workers.iter().find(|(index, _)| Some(*index) == env_worker))
        .map(|(index, _)| *index)
}

/// Our children that are not in `known` (worker main processes, the guardian) and not in our
/// own process group. `workers` pairs each worker with its process group.
pub fn orphans(known: &BTreeSet<i32>, workers: &[(u32, i32)]) -> Vec<Orphan> {
    let Ok(me) = Process::myself() else {
        return Vec::new();
    };
    let own_group = nix::unistd::getpgrp().as_raw();
    let Ok(tasks) = me.tasks() else {
        return Vec::new();
    };
    let children: BTreeSet<i32> = tasks
        .filter_map(|task| task.ok()?.children().ok())
        .flatten()
        .map(|pid| pid as i32)
        .filter(|pid| !known.contains(pid))
        .collect();
    children
        .into_iter()
        .filter_map(|pid| {
            let process = Process::new(pid).ok()?;
            let stat = process.stat().ok()?;
            if stat.pgrp == own_group {
                return None;
            }
            let env_worker = process.environ().ok().and_then(|env| {
                env.get(std::ffi::OsStr::new("MEMWARDEN_WORKER"))?
                    .to_str()?
                    .parse()
                    .ok()
            });
            // Its program's name, not its command line: notes are shown where arguments (which
            // may carry secrets) are not.
            let command = process
                .cmdline()
                .ok()
                .and_then(|argv| argv.into_iter().next())
                .and_then(|arg0| arg0.rsplit('/').next().map(str::to_string))
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| stat.comm.clone());
            Some(Orphan {
                pid,
                pgid: stat.pgrp,
                worker: attribute(stat.pgrp, env_worker, workers),
                command,
                zombie: stat.state == 'Z',
            })
        })
        .collect()
}

/// Processes of the tree under `root` that left its process group `own_pgid` (a `setsid`, a
/// `setpgid`): each with its group. The walk stops at [`TREE_LIMIT`] processes, so a fork bomb
/// cannot make it unbounded.
pub fn escaped_groups(root: i32, own_pgid: i32) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    let mut queue = vec![root];
    let mut seen = BTreeSet::new();
    while let Some(pid) = queue.pop() {
        if !seen.insert(pid) || seen.len() > TREE_LIMIT {
            continue;
        }
        let Ok(process) = Process::new(pid) else {
            continue;
        };
        if let Ok(stat) = process.stat() {
            if stat.pgrp != own_pgid && stat.pgrp > 1 && pid != root {
                out.push((pid, stat.pgrp));
            }
        }
        if let Ok(tasks) = process.tasks() {
            queue.extend(
                tasks
                    .filter_map(|task| task.ok()?.children().ok())
                    .flatten()
                    .map(|child| child as i32),
            );
        }
    }
    out
}

/// The most processes [`escaped_groups`] looks at in one tree.
pub const TREE_LIMIT: usize = 4096;

/// Reaps `pid` if it has exited: true when it is gone.
pub fn reap(pid: i32) -> bool {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => false,
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => true,
        Ok(_) => false,
        // ECHILD: not (or no longer) our child.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphan_belongs_to_its_group_else_to_the_worker_its_environment_names() {
        let workers = [(0, 100), (1, 200)];
        assert_eq!(attribute(200, Some(0), &workers), Some(1), "group first");
        assert_eq!(attribute(555, Some(0), &workers), Some(0), "setsid daemon");
        assert_eq!(attribute(555, Some(7), &workers), None, "no such worker");
        assert_eq!(attribute(555, None, &workers), None);
    }
}
