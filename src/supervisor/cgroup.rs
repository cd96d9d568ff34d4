//! Per-worker memory cgroups, on cgroup v1 and v2. Where memwarden may create cgroups below its
//! own (root on a v1 host, a delegated v2 subtree), each worker gets
//! `<our memory cgroup>/memwarden-<pid>/worker-N`, with a limit (`memory.max` /
//! `memory.limit_in_bytes`) and a soft line (`memory.high` / `memory.soft_limit_in_bytes`) when
//! the policy sets or implies them; the worker moves itself there before it runs its command
//! (see `SpawnOptions::cgroup_procs`). The sampler then reads a worker's memory from its cgroup
//! at every tick, whatever the size of its tree. Everywhere else `prepare` says why not, in one
//! line, and the run samples `/proc` process by process as before.
//!
//! memwarden removes only what it made: its own `memwarden-<pid>` at the end, and at the start
//! the `memwarden-<pid>` directories of runs whose memwarden is gone (a crash, a SIGKILL).

use crate::probe::cgroup::Version;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::policy::WorkerLimits as Limits;

/// One worker's cgroup.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerCgroup {
    pub version: Version,
    pub dir: PathBuf,
    pub limits: Limits,
}

impl WorkerCgroup {
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

/// The cgroups this run made; removed by `remove` (or on drop).
#[derive(Debug)]
pub struct WorkerCgroups {
    parent: PathBuf,
    pub workers: Vec<WorkerCgroup>,
    removed: bool,
}

/// Makes `memwarden-<owner>/worker-N` below `own` (this process's memory cgroup directory).
pub fn prepare(
    version: Version,
    own: &Path,
    owner: u32,
    workers: u32,
    limits: Limits,
) -> Result<WorkerCgroups, String> {
    let parent = own.join(format!("memwarden-{owner}"));
    let write = |path: PathBuf, value: &str| {
        std::fs::write(&path, value).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    if version == Version::V2 {
        // Enabling a controller for children fails where our cgroup holds processes itself (the
        // "no internal processes" rule) unless it is the root; that is the usual case without
        // systemd's Delegate=yes.
        write(own.join("cgroup.subtree_control"), "+memory")?;
    }
    std::fs::create_dir(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let mut made = WorkerCgroups {
        parent: parent.clone(),
        workers: Vec::new(),
        removed: false,
    };
    if version == Version::V2 {
        write(parent.join("cgroup.subtree_control"), "+memory")?;
    }
    let (max_file, high_file) = match version {
        Version::V2 => ("memory.max", "memory.high"),
        Version::V1 => ("memory.limit_in_bytes", "memory.soft_limit_in_bytes"),
    };
    for index in 0..workers {
        let dir = parent.join(format!("worker-{index}"));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        made.workers.push(WorkerCgroup {
            version,
            dir: dir.clone(),
            limits,
        });
        if let Some(max) = limits.max {
            write(dir.join(max_file), &max.to_string())?;
        }
        if let Some(high) = limits.high {
            write(dir.join(high_file), &high.to_string())?;
        }
    }
    Ok(made)
}

/// The live system's answer: below memwarden's own memory cgroup.
pub fn prepare_here(workers: u32, limits: Limits) -> Result<WorkerCgroups, String> {
    let (version, own) = crate::probe::cgroup::own_dir(
        &crate::probe::ProcRoot::default(),
        Path::new("/"),
        std::process::id() as i32,
    )?;
    prepare(version, &own, std::process::id(), workers, limits)
}

/// Removes what earlier runs left below `own`: `memwarden-<pid>` directories whose memwarden
/// (`alive`) is gone, and their empty `worker-N`. A leftover that still holds processes stays.
/// One line per directory found.
pub fn sweep_leftovers(own: &Path, alive: &dyn Fn(u32) -> bool) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(own) else {
        return Vec::new();
    };
    let mut said = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("memwarden-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if alive(pid) {
            continue;
        }
        let dir = entry.path();
        let left: Vec<PathBuf> = worker_dirs(&dir)
            .into_iter()
            .filter(|w| std::fs::remove_dir(w).is_err())
            .collect();
        said.push(match (left.is_empty(), std::fs::remove_dir(&dir)) {
            (true, Ok(())) => format!(
                "removed {}: the per-worker cgroups of an earlier memwarden (pid {pid}) that did not end cleanly",
                dir.display()
            ),
            _ => format!(
                "left {}: an earlier memwarden's (pid {pid}) cgroup still holds processes",
                dir.display()
            ),
        });
    }
    said
}

/// Sweeps below the live system's own memory cgroup; a memwarden is alive while its pid runs a
/// program named memwarden.
pub fn sweep_here() -> Vec<String> {
    let Ok((_, own)) = crate::probe::cgroup::own_dir(
        &crate::probe::ProcRoot::default(),
        Path::new("/"),
        std::process::id() as i32,
    ) else {
        return Vec::new();
    };
    sweep_leftovers(&own, &|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with("memwarden"))
    })
}

fn worker_dirs(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("worker-"))
        .map(|e| e.path())
        .collect()
}

/// The pids in a cgroup's `cgroup.procs` (`procs`), sorted. Read anew each time: v1 hands the
/// same pid list back to a file kept open for about a second, so a kept-open file would miss
/// changes.
pub fn members(procs: &Path) -> std::io::Result<Vec<i32>> {
    let text = std::fs::read_to_string(procs)?;
    let mut pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    pids.sort_unstable();
    Ok(pids)
}

impl WorkerCgroups {
    /// Kills what is left in each worker's cgroup (processes that left their worker's process
    /// group and outlived it) and removes the cgroups. One line per worker cgroup that held
    /// processes or could not be removed.
    pub fn remove(&mut self) -> Vec<String> {
        if self.removed {
            return Vec::new();
        }
        self.removed = true;
        let mut said = Vec::new();
        for worker in &self.workers {
            let left = members(&worker.procs()).unwrap_or_default();
            if !left.is_empty() {
                for pid in &left {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                said.push(format!(
                    "{} still held {} process(es) after its worker stopped (pids {}): killed with it",
                    worker.dir.display(),
                    left.len(),
                    left.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
                ));
            }
            // A killed process leaves its cgroup once it has been reaped.
            let deadline = Instant::now() + Duration::from_secs(2);
            while std::fs::remove_dir(&worker.dir).is_err() && worker.dir.exists() {
                if Instant::now() >= deadline {
                    said.push(format!("cannot remove {}", worker.dir.display()));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if std::fs::remove_dir(&self.parent).is_err() && self.parent.exists() {
            said.push(format!("cannot remove {}", self.parent.display()));
        }
        said
    }
}

impl Drop for WorkerCgroups {
    fn drop(&mut self) {
        for line in self.remove() {
            crate::console::say(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max: Some(1 << 30),
            high: Some(966_367_638),
        }
    }

    #[test]
    fn v2_limits_are_written_per_worker_below_our_cgroup() {
        let mount = tempfile::tempdir().expect("temp dir");
        let own = mount.path().join("jobs");
        std::fs::create_dir_all(&own).expect("mkdir");
        let mut made = prepare(Version::V2, &own, 77, 2, limits()).expect("prepared");
        assert_eq!(made.workers.len(), 2);
        let worker1 = &made.workers[1].dir;
        assert!(worker1.ends_with("memwarden-77/worker-1"), "{worker1:?}");
        let read = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
        assert_eq!(read(worker1, "memory.max"), "1073741824");
        assert_eq!(read(worker1, "memory.high"), "966367638");
        assert_eq!(read(&own, "cgroup.subtree_control"), "+memory");
        // The fake hierarchy's files make the directories non-empty: clear them as the kernel
        // would not need to.
        for w in &made.workers {
            for f in ["memory.max", "memory.high"] {
                std::fs::remove_file(w.dir.join(f)).expect("rm");
            }
        }
        std::fs::remove_file(own.join("memwarden-77/cgroup.subtree_control")).expect("rm");
        assert!(made.remove().is_empty());
        assert!(!own.join("memwarden-77").exists(), "removed at the end");
    }

    #[test]
    fn v1_writes_its_own_files_and_no_subtree_control() {
        let mount = tempfile::tempdir().expect("temp dir");
        let made = prepare(Version::V1, mount.path(), 5, 1, limits()).expect("prepared");
        let dir = &made.workers[0].dir;
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
        assert_eq!(read("memory.limit_in_bytes"), "1073741824");
        assert_eq!(read("memory.soft_limit_in_bytes"), "966367638");
        assert!(!mount.path().join("cgroup.subtree_control").exists());
        std::mem::forget(made); // the fake files keep the directories; nothing to remove
    }

    #[test]
    fn without_limits_only_the_directories_are_made() {
        let mount = tempfile::tempdir().expect("temp dir");
        let mut made = prepare(Version::V1, mount.path(), 6, 3, Limits::default()).expect("made");
        assert_eq!(
            std::fs::read_dir(&made.workers[2].dir)
                .expect("dir")
                .count(),
            0
        );
        assert!(made.remove().is_empty());
        assert!(!mount.path().join("memwarden-6").exists());
    }

    #[test]
    fn a_v2_cgroup_that_may_not_delegate_says_why() {
        let mount = tempfile::tempdir().expect("temp dir");
        let gone = mount.path().join("missing");
        let why = prepare(Version::V2, &gone, 1, 1, Limits::default()).expect_err("cannot");
        assert!(why.starts_with("cannot write "), "{why}");
        assert!(!why.contains('\n'));
    }

    #[test]
    fn leftovers_of_dead_runs_are_swept_and_live_ones_and_others_kept() {
        let own = tempfile::tempdir().expect("temp dir");
        for dir in [
            "memwarden-100/worker-0",
            "memwarden-100/worker-1",
            "memwarden-200/worker-0",
            "memwarden-300/worker-0",
            "someone-else/worker-0",
        ] {
            std::fs::create_dir_all(own.path().join(dir)).expect("mkdir");
        }
        // A worker cgroup with processes cannot be removed: a file stands in for them here.
        std::fs::write(own.path().join("memwarden-300/worker-0/held"), "").expect("write");
        let mut said = sweep_leftovers(own.path(), &|pid| pid == 200);
        said.sort();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].starts_with("left ") && said[0].contains("pid 300"),
            "{said:?}"
        );
        assert!(said[1].starts_with("removed ") && said[1].contains("pid 100"));
        assert!(!own.path().join("memwarden-100").exists());
        assert!(own.path().join("memwarden-200/worker-0").exists(), "alive");
        assert!(own.path().join("memwarden-300/worker-0").exists(), "busy");
        assert!(
            own.path().join("someone-else/worker-0").exists(),
            "not ours"
        );
    }
}
