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
        return FakeGpu::open(dir);
    }
    open_nvml()
}

/// Why there is no GPU data, in one line, for each way NVML can refuse: the run goes on without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoLibrary,
    DriverNotLoaded,
    NoPermission,
    NoDevice,
    /// The device is split into MIG instances: NVML lists no per-process memory for them.
    Mig {
        device: u32,
    },
}

impl Refusal {
    pub fn words(self) -> String {
        match self {
            Refusal::NoLibrary => "no NVIDIA driver library (libnvidia-ml.so) on this machine".into(),
            Refusal::DriverNotLoaded => "the NVIDIA driver is not loaded".into(),
            Refusal::NoPermission => "NVML is present but this user may not query it (no permission; run memwarden as a user that may read /dev/nvidia*)".into(),
            Refusal::NoDevice => "NVML found no GPU".into(),
            Refusal::Mig { device } => format!("GPU {device} is split into MIG instances, for which NVML reports no memory per process; memwarden never changes the device's mode"),
        }
    }
}

#[cfg(feature = "nvml")]
fn refusal(error: &nvml_wrapper::error::NvmlError) -> Option<Refusal> {
    use nvml_wrapper::error::NvmlError;
    match error {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => Some(Refusal::NoLibrary),
        NvmlError::DriverNotLoaded => Some(Refusal::DriverNotLoaded),
        NvmlError::NoPermission => Some(Refusal::NoPermission),
        _ => None,
    }
}

#[cfg(feature = "nvml")]
fn open_nvml() -> Result<Box<dyn GpuSource>, String> {
    let said = |e: nvml_wrapper::error::NvmlError| {
        refusal(&e).map_or_else(|| format!("NVML: {e}"), Refusal::words)
    };
    let nvml = nvml_wrapper::Nvml::init().map_err(said)?;
    let count = nvml.device_count().map_err(said)?;
    if count == 0 {
        return Err(Refusal::NoDevice.words());
    }
    let mut names = Vec::new();
    for index in 0..count {
        let device = nvml.device_by_index(index).map_err(said)?;
        // MIG mode is only asked of devices that support it; the others answer NotSupported.
        if device.mig_mode().is_ok_and(|mode| mode.current == 1) {
            return Err(Refusal::Mig { device: index }.words());
        }
        names.push(device.name().unwrap_or_else(|_| format!("GPU {index}")));
    }
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
            let failed = |e: nvml_wrapper::error::NvmlError| {
                refusal(&e).map_or_else(|| format!("GPU {index}: {e}"), Refusal::words)
            };
            let device = self.nvml.device_by_index(index).map_err(failed)?;
            let memory = device.memory_info().map_err(failed)?;
            snapshot.devices.push(GpuDevice {
                index,
                name: name.clone(),
                used_bytes: memory.used,
                total_bytes: memory.total,
                utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
            });
            // A refused process list is no per-process data, said once, rather than zeros.
            let compute = device.running_compute_processes().map_err(failed)?;
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

/// A fake driver for tests: a directory holding `devices` (lines `INDEX TOTAL_BYTES NAME`), an
/// optional `refuse` (see `FakeGpu::open`), and
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

    /// As NVML would open: a `refuse` file holding `no-library`, `driver-not-loaded`,
    /// `no-permission`, `no-device` or `mig` makes it refuse the way the driver would.
    fn open(dir: impl Into<PathBuf>) -> Result<Box<dyn GpuSource>, String> {
        let fake = Self::new(dir);
        let Ok(refuse) = std::fs::read_to_string(fake.dir.join("refuse")) else {
            return Ok(Box::new(fake));
        };
        Err(match refuse.trim() {
            "no-library" => Refusal::NoLibrary,
            "driver-not-loaded" => Refusal::DriverNotLoaded,
            "no-permission" => Refusal::NoPermission,
            "mig" => Refusal::Mig { device: 0 },
            _ => Refusal::NoDevice,
        }
        .words())
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
    #[ignore = "needs a machine without an NVIDIA driver: MEMWARDEN_TEST_NO_GPU=1 cargo test --lib -- --ignored probe::gpu (scripts/test runs it where /dev/nvidiactl is absent)"]
    fn without_a_driver_opening_says_why() {
        assert_eq!(
            std::env::var("MEMWARDEN_TEST_NO_GPU").as_deref(),
            Ok("1"),
            "this test needs a machine without an NVIDIA driver: set MEMWARDEN_TEST_NO_GPU=1 there"
        );
        assert!(
            std::env::var_os("MEMWARDEN_FAKE_GPU").is_none()
                && !Path::new("/dev/nvidiactl").exists(),
            "this machine has an NVIDIA driver (or a fake); run this test where there is none"
        );
        let error = open().err().expect("no GPU here");
        assert!(
            error.contains("libnvidia-ml") || error.contains("driver") || error.contains("NVML"),
            "{error}"
        );
    }
}
