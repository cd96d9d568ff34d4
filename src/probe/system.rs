//! System-wide memory and pressure, plus the facts about the host a manifest records.

use super::{read_fresh, Layout, ProcRoot};
use crate::recording::SystemSample;
use procfs::{FromBufRead, FromRead, MemoryPressure};
use std::fs::File;

/// How often the cgroup in force is looked up again.
const REFIND: std::time::Duration = std::time::Duration::from_secs(10);

/// memwarden's own memory cgroup with its counter files open, where it has one.
fn open_own_cgroup(
    root: &ProcRoot,
) -> Option<(super::cgroup::MemoryCgroup, super::cgroup::CgroupFiles)> {
    let cgroup = super::cgroup::own(root).ok()?;
    let files = super::cgroup::CgroupFiles::open(&cgroup).ok()?;
    Some((cgroup, files))
}

pub struct SystemProbe {
    /// The memory cgroup whose limit applies to memwarden and its workers, looked up again
    /// every `REFIND` (a limit can be resized, a process moved).
    cgroup: Option<(super::cgroup::MemoryCgroup, super::cgroup::CgroupFiles)>,
    root: ProcRoot,
    found_at: std::time::Instant,
    /// A failed cgroup read not yet told; `cgroup_trouble` hands it out once per episode.
    trouble: Option<String>,
    troubled: bool,
    meminfo: File,
    /// `None` on kernels without PSI: recorded as absent, never as zero pressure.
    pressure: Option<File>,
    own_statm: Option<File>,
    page_size: u64,
    buf: Vec<u8>,
}

impl SystemProbe {
    pub fn open(root: &ProcRoot) -> std::io::Result<Self> {
        Ok(Self {
            cgroup: open_own_cgroup(root),
            root: root.clone(),
            found_at: std::time::Instant::now(),
            trouble: None,
            troubled: false,
            meminfo: File::open(root.path().join("meminfo"))?,
            pressure: File::open(root.path().join("pressure/memory")).ok(),
            own_statm: File::open(root.path().join("self/statm")).ok(),
            page_size: page_size(),
            buf: Vec::new(),
        })
    }

    pub fn has_pressure(&self) -> bool {
        self.pressure.is_some()
    }

    /// The memory cgroup in force, when there is one.
    pub fn cgroup(&self) -> Option<&super::cgroup::MemoryCgroup> {
        self.cgroup.as_ref().map(|(c, _)| c)
    }

    /// A cgroup read that failed since the last call, said once until reads work again.
    pub fn cgroup_trouble(&mut self) -> Option<String> {
        self.trouble.take()
    }

    fn sample_cgroup(&mut self, sample: &mut SystemSample) {
        if self.found_at.elapsed() >= REFIND {
            self.found_at = std::time::Instant::now();
            let moved = super::cgroup::own(&self.root)
                .ok()
                .filter(|found| self.cgroup.as_ref().is_none_or(|(c, _)| c != found));
            if let Some(found) = moved {
                if let Ok(files) = super::cgroup::CgroupFiles::open(&found) {
                    self.cgroup = Some((found, files));
                }
            }
        }
        let Some((cgroup, files)) = &mut self.cgroup else {
            return;
        };
        match files.read() {
            Ok(r) => {
                self.troubled = false;
                sample.cgroup_limit_bytes = cgroup.limit_bytes;
                sample.cgroup_usage_bytes = Some(r.usage_bytes);
                sample.cgroup_working_set_bytes = Some(r.working_set_bytes);
                sample.cgroup_oom = r.oom;
                sample.cgroup_oom_kill = r.oom_kill;
                sample.cgroup_failcnt = r.failcnt;
                sample.cgroup_psi_full_avg10 = r.psi_full_avg10.map(|p| p as f32);
            }
            Err(e) if !self.troubled => {
                self.troubled = true;
                self.trouble = Some(format!(
                    "cannot read the memory cgroup {} ({e}): its counters are not recorded until it reads again",
                    cgroup.path
                ));
            }
            Err(_) => {}
        }
    }

    pub fn sample(&mut self) -> std::io::Result<SystemSample> {
        let len = read_fresh(&self.meminfo, &mut self.buf, Layout::OneRecord)?;
        let meminfo = scan_meminfo(&self.buf[..len]).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "meminfo lacks MemTotal")
        })?;
        let mut sample = SystemSample {
            mem_total_bytes: meminfo.mem_total,
            // Kernels before 3.14 lack MemAvailable; free + cached is the classic estimate.
            mem_available_bytes: meminfo
                .mem_available
                .unwrap_or(meminfo.mem_free + meminfo.cached),
            swap_total_bytes: meminfo.swap_total,
            swap_free_bytes: meminfo.swap_free,
            ..SystemSample::default()
        };
        if let Some(file) = &self.pressure {
            if let Ok(len) = read_fresh(file, &mut self.buf, Layout::OneRecord) {
                if let Ok(psi) = MemoryPressure::from_buf_read(&self.buf[..len]) {
                    sample.psi_some_avg10 = Some(psi.some.avg10);
                    sample.psi_full_avg10 = Some(psi.full.avg10);
                    sample.psi_some_total_us = Some(psi.some.total);
                    sample.psi_full_total_us = Some(psi.full.total);
                }
            }
        }
        self.sample_cgroup(&mut sample);
        if let Some(file) = &self.own_statm {
            if let Ok(len) = read_fresh(file, &mut self.buf, Layout::OneRecord) {
                let resident =
                    procfs::process::StatM::from_read(&self.buf[..len]).map(|s| s.resident);
                sample.harness_rss_bytes = resident.unwrap_or(0) * self.page_size;
            }
        }
        Ok(sample)
    }
}

/// The lines of /proc/meminfo a sample keeps, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeminfoFields {
    pub mem_total: u64,
    pub mem_free: u64,
    pub mem_available: Option<u64>,
    pub cached: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// Six lines of /proc/meminfo, found by a scan. procfs's `Meminfo` parses all ~55 lines into
/// a hash map first, on every tick; the scan stops after the last line it needs (SwapFree,
/// the 16th). `None` without MemTotal. Checked against procfs in the tests.
pub fn scan_meminfo(text: &[u8]) -> Option<MeminfoFields> {
    let mut fields = MeminfoFields::default();
    let mut total = None;
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let kib = || {
            line[colon + 1..]
                .split(|b| b.is_ascii_whitespace())
                .find(|word| !word.is_empty())
                .and_then(|word| std::str::from_utf8(word).ok()?.parse::<u64>().ok())
                .map(|kib| kib * 1024)
        };
        match &line[..colon] {
            b"MemTotal" => total = kib(),
            b"MemFree" => fields.mem_free = kib().unwrap_or(0),
            b"MemAvailable" => fields.mem_available = kib(),
            b"Cached" => fields.cached = kib().unwrap_or(0),
            b"SwapTotal" => fields.swap_total = kib().unwrap_or(0),
            b"SwapFree" => {
                fields.swap_free = kib().unwrap_or(0);
                break;
            }
            _ => {}
        }
    }
    fields.mem_total = total?;
    Some(fields)
}

pub fn page_size() -> u64 {
    procfs::page_size()
}

#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub host: String,
    pub boot_id: String,
    pub kernel: String,
}

pub fn host_facts(root: &ProcRoot) -> HostFacts {
    let read = |rel: &str| {
        std::fs::read_to_string(root.path().join(rel))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    HostFacts {
        host: read("sys/kernel/hostname"),
        boot_id: read("sys/kernel/random/boot_id"),
        kernel: read("sys/kernel/osrelease"),
    }
}

/// When the running kernel booted (wall-clock ns since the epoch), from `btime` in /proc/stat;
/// it places `dmesg` times, which count from boot.
pub fn boot_wall_ns(root: &ProcRoot) -> Option<u64> {
    // procfs's KernelStats parses all of /proc/stat and needs the clock tick rate for that;
    // one field under an injectable root is a line scan.
    let stat = std::fs::read_to_string(root.path().join("stat")).ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime * 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::Meminfo;

    fn procfs_fields(text: &[u8]) -> MeminfoFields {
        let m = Meminfo::from_buf_read(text).expect("bug: procfs parses meminfo");
        MeminfoFields {
            mem_total: m.mem_total,
            mem_free: m.mem_free,
            mem_available: m.mem_available,
            cached: m.cached,
            swap_total: m.swap_total,
            swap_free: m.swap_free,
        }
    }

    #[test]
    fn the_meminfo_scan_agrees_with_procfs() {
        let fixture = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/proc/meminfo"
        ))
        .expect("bug: fixture");
        assert_eq!(scan_meminfo(&fixture), Some(procfs_fields(&fixture)));
        // This machine's, read once (the two parses see the same bytes).
        if let Ok(live) = std::fs::read("/proc/meminfo") {
            assert_eq!(scan_meminfo(&live), Some(procfs_fields(&live)));
        }
        let old_kernel: Vec<u8> = String::from_utf8_lossy(&fixture)
            .lines()
            .filter(|line| !line.starts_with("MemAvailable"))
            .flat_map(|line| format!("{line}\n").into_bytes())
            .collect();
        assert_eq!(
            scan_meminfo(&old_kernel).and_then(|f| f.mem_available),
            None
        );
        assert_eq!(scan_meminfo(b"MemFree: 1 kB\n"), None, "no MemTotal");
    }
}
