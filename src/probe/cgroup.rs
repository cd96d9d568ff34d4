//! The memory limit that applies to a process: the cgroup it runs in (cgroup v2, or v1's memory
//! controller), the nearest ancestor with a memory limit, and that cgroup's counters. Inside a
//! container, a Kubernetes pod, a Slurm job or a systemd slice this is the limit that ends in an
//! OOM kill, not the host's memory that /proc/meminfo shows.
//!
//! `/proc/PID/cgroup` and `/proc/PID/mountinfo` are parsed with procfs; the cgroup files live
//! under `fs_root` (`/` normally; a fake tree in tests), at the mount point mountinfo names.

use super::{read_fresh, Layout, ProcRoot};
use procfs::process::{MountInfo, MountInfos};
use procfs::{FromBufRead, ProcessCGroups};
use std::fs::File;
use std::path::{Path, PathBuf};

/// v1's "no limit" is the page counter's maximum, in bytes: any limit at or above this is none.
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// The cgroup whose limit applies (or the process's own, when no ancestor has one).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryCgroup {
    pub version: Version,
    /// As the kernel names it, relative to the hierarchy's root (`/kubepods/pod…/…`).
    pub path: String,
    /// Its directory on this machine.
    pub dir: PathBuf,
    /// `None`: no limit on it or any ancestor.
    pub limit_bytes: Option<u64>,
    /// The process's own cgroup directory (`dir` is the nearest with a limit).
    pub own: PathBuf,
}

/// One reading of a memory cgroup's counters; `None` where this version has no such counter.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupReading {
    pub usage_bytes: u64,
    /// Usage less inactive file pages: what the kubelet counts against the limit.
    pub working_set_bytes: u64,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
    pub failcnt: Option<u64>,
    pub psi_full_avg10: Option<f64>,
    /// By kind, from `memory.stat` (v2 `anon`, `file`, `shmem`, `kernel`, `sock`; v1
    /// `total_rss`, `total_cache`, `total_shmem`, `total_mapped_file`). v1's cache includes shmem.
    pub anon_bytes: Option<u64>,
    pub file_bytes: Option<u64>,
    pub shmem_bytes: Option<u64>,
    pub kernel_bytes: Option<u64>,
    pub sock_bytes: Option<u64>,
    pub mapped_file_bytes: Option<u64>,
    /// v2 `memory.events` `high`: how often the cgroup was throttled at `memory.high`.
    pub high: Option<u64>,
    /// v2 `memory.events` `max`: how often an allocation met `memory.max`.
    pub max: Option<u64>,
    /// v2 `memory.pressure` `full total=`: microseconds all its tasks were stalled on memory.
    pub psi_full_total_us: Option<u64>,
}

/// memwarden's own memory cgroup: the workers are its children, so its limit is theirs.
pub fn own(proc: &ProcRoot) -> Result<MemoryCgroup, String> {
    find(proc, Path::new("/"), std::process::id() as i32)
}

/// The memory cgroup of `pid` and the limit that applies to it. `Err` says in one line why
/// none could be found (no memory controller mounted, an unreadable file); that is normal
/// outside a container.
pub fn find(proc: &ProcRoot, fs_root: &Path, pid: i32) -> Result<MemoryCgroup, String> {
    let dir = proc.path().join(pid.to_string());
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    let groups = ProcessCGroups::from_buf_read(&read("cgroup")?[..])
        .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
    let mounts = MountInfos::from_buf_read(&read("mountinfo")?[..])
        .map_err(|e| format!("/proc/{pid}/mountinfo: {e}"))?;
    let v2 = groups.0.iter().find(|g| g.hierarchy == 0);
    let v2_mount = mounts.0.iter().find(|m| m.fs_type == "cgroup2");
    if let (Some(group), Some(mount)) = (v2, v2_mount) {
        let root = on_disk(fs_root, mount);
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            return Ok(nearest_limit(Version::V2, &root, mount, &group.pathname));
        }
    }
    let v1 = groups
        .0
        .iter()
        .find(|g| g.controllers.iter().any(|c| c == "memory"));
    let v1_mount = mounts
        .0
        .iter()
        .find(|m| m.fs_type == "cgroup" && m.super_options.contains_key("memory"));
    match (v1, v1_mount) {
        (Some(group), Some(mount)) => Ok(nearest_limit(
            Version::V1,
            &on_disk(fs_root, mount),
            mount,
            &group.pathname,
        )),
        _ => Err("no cgroup memory controller is mounted".into()),
    }
}

/// The memory cgroup `pid` is in itself (not the nearest with a limit): where per-worker
/// cgroups are made, below it.
pub fn own_dir(proc: &ProcRoot, fs_root: &Path, pid: i32) -> Result<(Version, PathBuf), String> {
    let found = find(proc, fs_root, pid)?;
    Ok((found.version, found.own))
}

fn on_disk(fs_root: &Path, mount: &MountInfo) -> PathBuf {
    fs_root.join(
        mount
            .mount_point
            .strip_prefix("/")
            .unwrap_or(&mount.mount_point),
    )
}

/// From the process's cgroup up to the hierarchy's root, the first with a limit.
fn nearest_limit(
    version: Version,
    mount_dir: &Path,
    mount: &MountInfo,
    path: &str,
) -> MemoryCgroup {
    // A mount of a sub-tree (a container's view) shows paths below its own root.
    let relative = path
        .strip_prefix(mount.root.trim_end_matches('/'))
        .unwrap_or(path)
        .trim_start_matches('/');
    let own = mount_dir.join(relative);
    let mut dir = own.clone();
    loop {
        if let Some(limit) = limit_of(version, &dir) {
            let below = dir.strip_prefix(mount_dir).unwrap_or(Path::new(""));
            return MemoryCgroup {
                version,
                path: format!("/{}", below.display()),
                dir,
                limit_bytes: Some(limit),
                own,
            };
        }
        if dir == mount_dir || !dir.pop() || !dir.starts_with(mount_dir) {
            break;
        }
    }
    MemoryCgroup {
        version,
        path: format!("/{relative}"),
        dir: own.clone(),
        limit_bytes: None,
        own,
    }
}

fn limit_of(version: Version, dir: &Path) -> Option<u64> {
    let file = match version {
        Version::V2 => "memory.max",
        Version::V1 => "memory.limit_in_bytes",
    };
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    let limit: u64 = text.trim().parse().ok()?; // v2's "max" does not parse: no limit
    (version == Version::V2 || limit < V1_UNLIMITED).then_some(limit)
}

/// A memory cgroup's counter files, kept open: cgroupfs files are generated on each read, so
/// reading an open one again gives fresh values without an open(), on every tick.
pub struct CgroupFiles {
    version: Version,
    usage: File,
    stat: File,
    events: Option<File>,
    pressure: Option<File>,
    oom_control: Option<File>,
    failcnt: Option<File>,
    buf: Vec<u8>,
}

impl CgroupFiles {
    pub fn open(cgroup: &MemoryCgroup) -> std::io::Result<Self> {
        Self::open_dir(cgroup.version, &cgroup.dir)
    }

    /// The counter files of the memory cgroup at `dir` (a worker's own, say).
    pub fn open_dir(version: Version, dir: &Path) -> std::io::Result<Self> {
        let open = |name: &str| File::open(dir.join(name));
        let v2 = version == Version::V2;
        Ok(Self {
            version,
            usage: open(if v2 {
                "memory.current"
            } else {
                "memory.usage_in_bytes"
            })?,
            stat: open("memory.stat")?,
            events: open("memory.events").ok().filter(|_| v2),
            pressure: open("memory.pressure").ok().filter(|_| v2),
            oom_control: open("memory.oom_control").ok().filter(|_| !v2),
            failcnt: open("memory.failcnt").ok().filter(|_| !v2),
            buf: Vec::new(),
        })
    }

    /// The counters now; an error once the cgroup is gone or unreadable.
    pub fn read(&mut self) -> std::io::Result<CgroupReading> {
        let usage_bytes = number(&read_text(&self.usage, &mut self.buf, Layout::OneRecord)?)?;
        let stat = read_text(&self.stat, &mut self.buf, Layout::Records)?;
        let optional = |file: &Option<File>, buf: &mut Vec<u8>| {
            file.as_ref()
                .and_then(|f| read_text(f, buf, Layout::OneRecord).ok())
                .unwrap_or_default()
        };
        let mut reading = match self.version {
            Version::V2 => {
                let inactive = field(&stat, "inactive_file");
                let events = optional(&self.events, &mut self.buf);
                let psi = optional(&self.pressure, &mut self.buf);
                CgroupReading {
                    working_set_bytes: usage_bytes.saturating_sub(inactive.unwrap_or(0)),
                    oom: field(&events, "oom"),
                    oom_kill: field(&events, "oom_kill"),
                    high: field(&events, "high"),
                    max: field(&events, "max"),
                    psi_full_avg10: full(&psi, "avg10"),
                    psi_full_total_us: full(&psi, "total"),
                    anon_bytes: field(&stat, "anon"),
                    file_bytes: field(&stat, "file"),
                    shmem_bytes: field(&stat, "shmem"),
                    kernel_bytes: field(&stat, "kernel"),
                    sock_bytes: field(&stat, "sock"),
                    mapped_file_bytes: field(&stat, "file_mapped"),
                    ..CgroupReading::default()
                }
            }
            Version::V1 => {
                let inactive = field(&stat, "total_inactive_file");
                let oom = optional(&self.oom_control, &mut self.buf);
                let failcnt = optional(&self.failcnt, &mut self.buf);
                CgroupReading {
                    working_set_bytes: usage_bytes.saturating_sub(inactive.unwrap_or(0)),
                    oom_kill: field(&oom, "oom_kill"),
                    failcnt: number(&failcnt).ok(),
                    anon_bytes: field(&stat, "total_rss"),
                    file_bytes: field(&stat, "total_cache"),
                    shmem_bytes: field(&stat, "total_shmem"),
                    mapped_file_bytes: field(&stat, "total_mapped_file"),
                    ..CgroupReading::default()
                }
            }
        };
        reading.usage_bytes = usage_bytes;
        Ok(reading)
    }
}

/// The counters of `cgroup` now, opening its files for this one read.
pub fn read(cgroup: &MemoryCgroup) -> std::io::Result<CgroupReading> {
    CgroupFiles::open(cgroup)?.read()
}

fn read_text(file: &File, buf: &mut Vec<u8>, layout: Layout) -> std::io::Result<String> {
    let len = read_fresh(file, buf, layout)?;
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}

fn number(text: &str) -> std::io::Result<u64> {
    text.trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("{:?} is not a number", text.trim())))
}

/// `name VALUE` lines (memory.stat, memory.events, memory.oom_control).
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// One field of the `full` line of a PSI file: `full(text, "avg10")` of
/// `full avg10=1.23 avg60=… total=123`.
fn full<T: std::str::FromStr>(text: &str, key: &str) -> Option<T> {
    let line = text.lines().find(|l| l.starts_with("full "))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(tree: &str) -> Result<MemoryCgroup, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cgroup")
            .join(tree);
        find(&ProcRoot::new(root.join("proc")), &root, 7)
    }

    #[test]
    fn a_limit_on_an_ancestor_only_is_the_one_that_applies() {
        let cgroup = found("v2-ancestor").expect("found");
        assert_eq!(cgroup.version, Version::V2);
        assert_eq!(cgroup.path, "/kubepods/pod1");
        assert_eq!(cgroup.limit_bytes, Some(1_610_612_736));
        let reading = read(&cgroup).expect("counters");
        assert_eq!(reading.usage_bytes, 1_073_741_824);
        assert_eq!(reading.working_set_bytes, 1_073_741_824 - 150_000_000);
        assert_eq!((reading.oom, reading.oom_kill), (Some(3), Some(2)));
        assert_eq!(reading.psi_full_avg10, Some(2.25));
        assert_eq!(reading.failcnt, None);
    }

    #[test]
    fn max_everywhere_is_no_limit_not_a_zero() {
        let cgroup = found("v2-unlimited").expect("found");
        assert_eq!(cgroup.path, "/user.slice");
        assert_eq!(cgroup.limit_bytes, None);
    }

    #[test]
    fn v1_finds_the_job_limit_under_the_unlimited_sentinel() {
        let cgroup = found("v1-job").expect("found");
        assert_eq!(cgroup.version, Version::V1);
        assert_eq!(cgroup.path, "/slurm/job_42");
        assert_eq!(cgroup.limit_bytes, Some(2_147_483_648));
        let reading = read(&cgroup).expect("counters");
        assert_eq!(reading.working_set_bytes, 1_500_000_000 - 250_000_000);
        assert_eq!((reading.oom_kill, reading.failcnt), (Some(10), Some(37)));
        assert_eq!(reading.oom, None);
    }

    #[test]
    fn no_memory_controller_is_one_line_not_a_limit() {
        let error = found("v2-no-memory").expect_err("no controller");
        assert_eq!(error, "no cgroup memory controller is mounted");
        assert!(found("nonexistent").is_err_and(|e| !e.contains('\n')));
    }

    #[test]
    fn a_vanished_cgroup_is_an_error_to_read_not_a_zero() {
        let mut cgroup = found("v2-ancestor").expect("found");
        cgroup.dir.push("gone");
        assert!(read(&cgroup).is_err());
    }

    /// Kept-open counter files re-read in place: garbage in one is an error for that tick (the
    /// sampler says so once and records nothing), never a zero; the next good read counts again.
    #[test]
    fn an_unreadable_counter_mid_run_is_an_error_until_it_reads_again() {
        let temp = tempfile::tempdir().expect("temp");
        let copy = |from: &Path, to: &Path| {
            for entry in walk(from) {
                let target = to.join(entry.strip_prefix(from).expect("under"));
                if entry.is_dir() {
                    std::fs::create_dir_all(&target).expect("mkdir");
                } else {
                    std::fs::copy(&entry, &target).expect("copy");
                }
            }
        };
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cgroup/v2-ancestor");
        copy(&fixture, temp.path());
        let cgroup = find(&ProcRoot::new(temp.path().join("proc")), temp.path(), 7).expect("found");
        let mut files = CgroupFiles::open(&cgroup).expect("open");
        let good = files.read().expect("reads");
        assert!(good.usage_bytes > 0);
        let current = cgroup.dir.join("memory.current");
        let before = std::fs::read(&current).expect("read");
        std::fs::write(&current, "garbage\n").expect("write in place");
        assert!(files.read().is_err(), "garbage is no reading");
        std::fs::write(&current, before).expect("restore");
        assert_eq!(files.read().expect("reads again"), good);
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut all = vec![dir.to_path_buf()];
        for entry in std::fs::read_dir(dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                all.extend(walk(&path));
            } else {
                all.push(path);
            }
        }
        all
    }

    #[test]
    fn this_machine_has_a_memory_cgroup() {
        // Any Linux with a memory controller; the limit may be none (the sentinel is not a limit).
        match find(
            &ProcRoot::default(),
            Path::new("/"),
            std::process::id() as i32,
        ) {
            Ok(cgroup) => {
                assert!(cgroup.limit_bytes.is_none_or(|l| l > 0 && l < V1_UNLIMITED));
                assert!(read(&cgroup).is_ok(), "{cgroup:?}");
            }
            Err(why) => panic!("memwarden reads a memory cgroup on every Linux it runs on: {why}"),
        }
    }
}
