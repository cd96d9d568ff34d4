//! GPU memory, behind a small interface: NVML (the `nvml` feature; the library is loaded at run
//! time, so memwarden builds and runs without it) or a fake for tests. Where there is no driver,
//! library or GPU, opening fails with the reason, and the recording says GPU data is unavailable
//! rather than showing zeros.
//!
//! NVML reports pids as the host sees them. A process in a nested pid namespace is matched
//! through its `NSpid` line; where NVML lists pids this /proc does not have at all (memwarden in
//! a container), per-worker attribution is impossible and only device totals are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct GpuDevice {
    pub index: u32,
    pub name: String,
    pub used_bytes: u64,
    pub total_bytes: u64,
    /// Percent of the last sample period a kernel ran, where the driver says.
    pub utilization_percent: Option<u32>,
}

/// A process with a compute or graphics context on a device.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProcess {
    pub device: u32,
    /// As the driver (the host) sees it.
    pub pid: u32,
    /// `None` where the driver cannot tell (e.g. some virtualised setups).
    pub used_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSnapshot {
    pub devices: Vec<GpuDevice>,
    pub processes: Vec<GpuProcess>,
}

pub trait GpuSource: Send {
    fn sample(&mut self) -> Result<GpuSnapshot, String>;
}

/// The GPU source for this machine: the fake named by `MEMWARDEN_FAKE_GPU` (tests), else NVML.
/// `Err` says why there is none.
pub fn open() -> Result<Box<dyn GpuSource>, String> {
    if let Some(dir) = std::env::var_os("MEMWARDEN_FAKE_GPU") {
        return Ok(Box::new(FakeGpu::new(dir)));
    }
    open_nvml()
}

#[cfg(feature = "nvml")]
fn open_nvml() -> Result<Box<dyn GpuSource>, String> {
    use nvml_wrapper::error::NvmlError;
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| match e {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            "no NVIDIA driver library (libnvidia-ml.so) on this machine".to_string()
        }
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".to_string(),
        other => format!("NVML could not start: {other}"),
    })?;
    let count = nvml.device_count().map_err(|e| format!("NVML: {e}"))?;
    if count == 0 {
        return Err("NVML found no GPU".into());
    }
    let names = (0..count)
        .map(|i| {
            nvml.device_by_index(i)
                .and_then(|d| d.name())
                .unwrap_or_else(|_| format!("GPU {i}"))
        })
        .collect();
    Ok(Box::new(Nvml { nvml, names }))
}

#[cfg(not(feature = "nvml"))]
fn open_nvml() -> Result<Box<dyn GpuSource>, String> {
    Err("this memwarden was built without NVML (the `nvml` feature)".into())
}

/// The handle stays open for the whole run; devices are looked up by index each time (cheap,
/// and a `Device` borrows the handle).
#[cfg(feature = "nvml")]
struct Nvml {
    nvml: nvml_wrapper::Nvml,
    names: Vec<String>,
}

#[cfg(feature = "nvml")]
impl GpuSource for Nvml {
    fn sample(&mut self) -> Result<GpuSnapshot, String> {
        use nvml_wrapper::enums::device::UsedGpuMemory;
        let mut snapshot = GpuSnapshot::default();
        for (index, name) in (0u32..).zip(&self.names) {
            let device = self
                .nvml
                .device_by_index(index)
                .map_err(|e| format!("GPU {index}: {e}"))?;
            let memory = device
                .memory_info()
                .map_err(|e| format!("GPU {index}: {e}"))?;
            snapshot.devices.push(GpuDevice {
                index,
                name: name.clone(),
                used_bytes: memory.used,
                total_bytes: memory.total,
                utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
            });
            let compute = device.running_compute_processes().unwrap_or_default();
            let graphics = device.running_graphics_processes().unwrap_or_default();
            for process in compute.into_iter().chain(graphics) {
                snapshot.processes.push(GpuProcess {
                    device: index,
                    pid: process.pid,
                    used_bytes: match process.used_gpu_memory {
                        UsedGpuMemory::Used(bytes) => Some(bytes),
                        UsedGpuMemory::Unavailable => None,
                    },
                });
            }
        }
        Ok(snapshot)
    }
}

/// A fake driver for tests: a directory holding `devices` (lines `INDEX TOTAL_BYTES NAME`) and
/// one file per process using a GPU, `pid-PID` holding `DEVICE BYTES` (the fixture worker
/// writes its own; like the driver, the fake forgets processes that have exited), or
/// `foreign-PID` for a pid reported as the host sees it, whether or not it exists here. A
/// device's use is the sum of its processes'.
pub struct FakeGpu {
    dir: PathBuf,
}

impl FakeGpu {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl GpuSource for FakeGpu {
    fn sample(&mut self) -> Result<GpuSnapshot, String> {
        let devices = std::fs::read_to_string(self.dir.join("devices"))
            .map_err(|e| format!("fake GPU: {e}"))?;
        let mut snapshot = GpuSnapshot::default();
        for line in devices.lines() {
            let mut words = line.splitn(3, ' ');
            let (Some(index), Some(total)) = (words.next(), words.next()) else {
                continue;
            };
            snapshot.devices.push(GpuDevice {
                index: index
                    .parse()
                    .map_err(|_| format!("fake GPU: bad line {line:?}"))?,
                name: words.next().unwrap_or("Fake GPU").to_string(),
                used_bytes: 0,
                total_bytes: total
                    .parse()
                    .map_err(|_| format!("fake GPU: bad line {line:?}"))?,
                utilization_percent: Some(0),
            });
        }
        for entry in std::fs::read_dir(&self.dir).map_err(|e| format!("fake GPU: {e}"))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid: u32 = if let Some(pid) = name
                .strip_prefix("pid-")
                .and_then(|p| p.parse::<u32>().ok())
            {
                if !Path::new("/proc").join(pid.to_string()).exists() {
                    continue;
                }
                pid
            } else if let Some(pid) = name.strip_prefix("foreign-").and_then(|p| p.parse().ok()) {
                pid
            } else {
                continue;
            };
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let mut words = text.split_whitespace();
            let (Some(Ok(device)), Some(Ok(bytes))) = (
                words.next().map(str::parse::<u32>),
                words.next().map(str::parse::<u64>),
            ) else {
                continue;
            };
            if let Some(d) = snapshot.devices.iter_mut().find(|d| d.index == device) {
                d.used_bytes += bytes;
            }
            snapshot.processes.push(GpuProcess {
                device,
                pid,
                used_bytes: Some(bytes),
            });
        }
        Ok(snapshot)
    }
}

/// GPU memory per tracked process (by its pid in this /proc).
#[derive(Debug, Clone, PartialEq)]
pub enum Attribution {
    /// Every process the driver lists is visible here: each tracked process's use, 0 for
    /// those the driver does not list.
    Known(BTreeMap<i32, u64>),
    /// The driver lists pids this /proc does not have (another pid namespace): device totals
    /// only. The pids are kept for the note that says so.
    Unavailable { foreign_pids: Vec<u32> },
}

/// Matches the driver's processes to tracked ones: `tracked` maps each tracked pid to its
/// `NSpid` list; `exists` says whether a pid exists in this /proc.
pub fn attribute(
    snapshot: &GpuSnapshot,
    tracked: &BTreeMap<i32, Vec<i32>>,
    exists: impl Fn(u32) -> bool,
) -> Attribution {
    let mut by_outer: BTreeMap<i64, i32> = BTreeMap::new();
    for (&pid, ns_pids) in tracked {
        by_outer.insert(i64::from(pid), pid);
        for &outer in ns_pids {
            by_outer.insert(i64::from(outer), pid);
        }
    }
    let mut used: BTreeMap<i32, u64> = tracked.keys().map(|&pid| (pid, 0)).collect();
    let mut foreign = Vec::new();
    for process in &snapshot.processes {
        match by_outer.get(&i64::from(process.pid)) {
            Some(pid) => *used.entry(*pid).or_default() += process.used_bytes.unwrap_or(0),
            None if !exists(process.pid) => foreign.push(process.pid),
            None => {}
        }
    }
    if foreign.is_empty() {
        Attribution::Known(used)
    } else {
        Attribution::Unavailable {
            foreign_pids: foreign,
        }
    }
}

/// `exists` for the real /proc under `root`.
pub fn pid_exists(root: &Path) -> impl Fn(u32) -> bool + '_ {
    move |pid| root.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(processes: &[(u32, u64)]) -> GpuSnapshot {
        GpuSnapshot {
            devices: Vec::new(),
            processes: processes
                .iter()
                .map(|&(pid, bytes)| GpuProcess {
                    device: 0,
                    pid,
                    used_bytes: Some(bytes),
                })
                .collect(),
        }
    }

    #[test]
    fn processes_are_matched_by_pid_or_by_their_outer_namespace_pid() {
        // Worker 100 is seen by the host as 100; its child 7 lives in a nested namespace where
        // the host calls it 5007. Pid 900 is someone else's, visible here.
        let tracked = [(100, vec![100]), (7, vec![5007, 7]), (8, vec![8])].into();
        let found = attribute(
            &snapshot(&[(100, 10), (5007, 20), (900, 99)]),
            &tracked,
            |_| true,
        );
        assert_eq!(
            found,
            Attribution::Known([(7, 20), (8, 0), (100, 10)].into())
        );
    }

    #[test]
    fn pids_from_another_namespace_make_attribution_unavailable() {
        let tracked = [(12, vec![12])].into();
        let found = attribute(&snapshot(&[(48213, 10)]), &tracked, |pid| pid < 1000);
        assert_eq!(
            found,
            Attribution::Unavailable {
                foreign_pids: vec![48213]
            }
        );
    }

    #[test]
    fn the_fake_reads_devices_and_processes() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("devices"), "0 1000 Fake A\n1 2000\n").expect("write");
        let me = std::process::id();
        std::fs::write(dir.path().join(format!("pid-{me}")), "1 300\n").expect("write");
        std::fs::write(dir.path().join("pid-999999999"), "1 5\n").expect("an exited process");
        std::fs::write(dir.path().join("foreign-48213"), "0 7\n").expect("write");
        let snapshot = FakeGpu::new(dir.path()).sample().expect("sample");
        assert_eq!(snapshot.devices[1].used_bytes, 300);
        assert_eq!(snapshot.devices[0].used_bytes, 7);
        assert_eq!(snapshot.devices[0].name, "Fake A");
        let mut pids: Vec<u32> = snapshot.processes.iter().map(|p| p.pid).collect();
        pids.sort();
        let mut expected = [48213, me];
        expected.sort();
        assert_eq!(pids, expected, "the exited process is forgotten");
    }

    #[test]
    fn without_a_driver_opening_says_why() {
        if std::env::var_os("MEMWARDEN_FAKE_GPU").is_some() || Path::new("/dev/nvidiactl").exists()
        {
            println!("skipped: this machine has an NVIDIA driver (or a fake); the reason is for machines without");
            return;
        }
        let error = open().err().expect("no GPU here");
        assert!(
            error.contains("libnvidia-ml") || error.contains("driver") || error.contains("NVML"),
            "{error}"
        );
    }
}
