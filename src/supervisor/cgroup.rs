//! Per-worker cgroup v2 memory limits. Where the v2 memory controller is mounted and our part of
//! the hierarchy is writable, each worker gets a cgroup of its own under
//! `<our cgroup>/memwarden-<pid>/worker-N` with `memory.max` and `memory.high`; the worker moves
//! itself there before it runs its command (see `SpawnOptions::cgroup_procs`). Everywhere else
//! this says why not, in one line, and the harness enforces the limit by sampling instead.

use std::path::{Path, PathBuf};

/// The per-worker `cgroup.procs` files, or why there are none.
pub fn prepare(
    mount: &Path,
    self_cgroup: &str,
    workers: u32,
    max_bytes: u64,
) -> Result<Vec<PathBuf>, String> {
    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).map_err(|_| {
        format!(
            "{} is not a cgroup v2 mount (cgroup v1 or none)",
            mount.display()
        )
    })?;
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return Err(
            "the cgroup v2 memory controller is not enabled here (it may be held by cgroup v1)"
                .into(),
        );
    }
    // `0::/user.slice/session-1.scope` in /proc/self/cgroup.
    let own = self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2 hierarchy")?;
    let base = mount.join(own.trim().trim_start_matches('/'));
    let parent = base.join(format!("memwarden-{}", std::process::id()));
    let write = |path: PathBuf, value: &str| {
        std::fs::write(&path, value).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    // Enabling a controller for children fails where our cgroup holds processes itself (the
    // "no internal processes" rule) unless it is the root; that is the usual case without
    // systemd's Delegate=yes.
    write(base.join("cgroup.subtree_control"), "+memory")?;
    std::fs::create_dir_all(&parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    write(parent.join("cgroup.subtree_control"), "+memory")?;
    let high = max_bytes / 10 * 9;
    (0..workers)
        .map(|index| {
            let dir = parent.join(format!("worker-{index}"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            write(dir.join("memory.max"), &max_bytes.to_string())?;
            write(dir.join("memory.high"), &high.to_string())?;
            Ok(dir.join("cgroup.procs"))
        })
        .collect()
}

/// The live system's answer.
pub fn prepare_here(workers: u32, max_bytes: u64) -> Result<Vec<PathBuf>, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    prepare(Path::new("/sys/fs/cgroup"), &own, workers, max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_written_per_worker_where_v2_memory_is_available() {
        let mount = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            mount.path().join("cgroup.controllers"),
            "cpu io memory pids\n",
        )
        .expect("write");
        std::fs::create_dir_all(mount.path().join("jobs")).expect("mkdir");
        let procs = prepare(mount.path(), "0::/jobs\n", 2, 1 << 30).expect("prepared");
        assert_eq!(procs.len(), 2);
        let worker1 = procs[1].parent().expect("dir");
        assert!(worker1.ends_with("worker-1"));
        let read = |name: &str| std::fs::read_to_string(worker1.join(name)).expect("read");
        assert_eq!(read("memory.max"), "1073741824");
        assert_eq!(read("memory.high"), "966367638");
    }

    #[test]
    fn without_the_v2_memory_controller_it_says_why() {
        let mount = tempfile::tempdir().expect("temp dir");
        let none = prepare(mount.path(), "0::/\n", 1, 1 << 30);
        assert!(none.is_err_and(|e| e.contains("not a cgroup v2 mount")));
        std::fs::write(mount.path().join("cgroup.controllers"), "cpu io pids\n").expect("write");
        let v1 = prepare(mount.path(), "0::/\n", 1, 1 << 30);
        assert!(v1.is_err_and(|e| e.contains("memory controller is not enabled")));
    }
}
