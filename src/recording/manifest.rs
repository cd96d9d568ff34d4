//! `manifest.json`: what was run, where and when. Replaced atomically (write a temporary file,
//! fsync, rename), so a reader sees the old or the new manifest, never half of one.

use super::schema::FORMAT_VERSION;
use super::RecordingError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub memwarden_version: String,
    /// `run` or `attach`.
    pub mode: String,
    /// The worker command (argv), secrets redacted; for `attach`, the pids.
    pub command: Vec<String>,
    pub workers: u32,
    pub host: String,
    /// /proc/sys/kernel/random/boot_id: a different one later means the host rebooted.
    pub boot_id: String,
    pub kernel: String,
    /// Wall-clock start, nanoseconds since the Unix epoch; tick and event `t_ns` count from here.
    pub start_wall_ns: u64,
    pub start_rfc3339: String,
    pub interval_ns: u64,
    pub page_size: u64,
    pub status: RunStatus,
    /// Set when the run ended cleanly.
    pub end_wall_ns: Option<u64>,
    pub end_reason: Option<String>,
    /// The memory cgroup whose limit applied to the harness and its workers at the start:
    /// absent where none could be found (no memory controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_cgroup: Option<MemoryCgroupInfo>,
    /// The harness process writing the recording: with the boot id, a reader tells a run still
    /// being recorded from one whose harness died (absent in older recordings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<HarnessProcess>,
    /// The batch system's or cluster's name for this run, where it started memwarden (from the
    /// environment at the start), so runs published from many hosts can be traced to their job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<Orchestrator>,
}

/// Slurm's and Kubernetes' identity of a run; each field only where it was set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orchestrator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_array_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_array_task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_pod: Option<String>,
}

impl Orchestrator {
    /// From `var` (the environment, or a test's map): Slurm's `SLURM_JOB_ID`,
    /// `SLURM_ARRAY_JOB_ID`, `SLURM_ARRAY_TASK_ID`; inside Kubernetes (`KUBERNETES_SERVICE_HOST`)
    /// the pod from `POD_NAME` (the downward API, as contrib/kubernetes/job.yaml sets it) or else
    /// `HOSTNAME`, and the namespace from `POD_NAMESPACE` or the service account's file.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let kubernetes = set("KUBERNETES_SERVICE_HOST").is_some();
        let found = Self {
            slurm_job_id: set("SLURM_JOB_ID"),
            slurm_array_job_id: set("SLURM_ARRAY_JOB_ID"),
            slurm_array_task_id: set("SLURM_ARRAY_TASK_ID"),
            kubernetes_namespace: kubernetes
                .then(|| {
                    set("POD_NAMESPACE").or_else(|| {
                        std::fs::read_to_string(
                            "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
                        )
                        .ok()
                        .map(|s| s.trim().to_string())
                    })
                })
                .flatten(),
            kubernetes_pod: kubernetes
                .then(|| set("POD_NAME").or_else(|| set("HOSTNAME")))
                .flatten(),
        };
        (found != Self::default()).then_some(found)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HarnessProcess {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat: with the pid, the process's identity.
    pub start_ticks: u64,
}

impl HarnessProcess {
    pub fn this_process() -> Option<Self> {
        let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
        Some(Self {
            pid: stat.pid,
            start_ticks: stat.starttime,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryCgroupInfo {
    /// `v1` or `v2`.
    pub version: String,
    /// The cgroup with the limit (or memwarden's own, when none has one), as the kernel names it.
    pub path: String,
    /// `None`: no limit on it or any ancestor.
    pub limit_bytes: Option<u64>,
}

/// `Running` on disk after the harness is gone means the run ended abruptly (crash, SIGKILL,
/// power loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Finished,
}

impl Manifest {
    /// The recording is still being written: it says running, and its harness is alive on this
    /// boot (the same pid with the same start time). Otherwise a `Running` recording ended
    /// abruptly.
    pub fn still_recording(&self) -> bool {
        self.status == RunStatus::Running && self.harness_alive()
    }

    /// The memwarden that wrote this recording still runs on this boot (the same pid with the
    /// same start time): after the manifest says finished, it may still be writing the report.
    pub fn harness_alive(&self) -> bool {
        let Some(harness) = self.harness else {
            return false;
        };
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        boot.trim() == self.boot_id
            && procfs::process::Process::new(harness.pid)
                .and_then(|p| p.stat())
                .is_ok_and(|s| s.starttime == harness.start_ticks && s.state != 'Z')
    }

    /// Values a reader sizes its work by must be ones memwarden could have written: a doctored
    /// `"workers": 4294967295` would otherwise become a 721 GB allocation.
    pub fn check_values(&self, path: &Path) -> Result<(), RecordingError> {
        let impossible = |what: String| {
            Err(RecordingError::ImpossibleManifest {
                path: path.to_path_buf(),
                what,
            })
        };
        if self.workers > MAX_WORKERS {
            return impossible(format!(
                "\"workers\": {} (memwarden runs at most {MAX_WORKERS})",
                self.workers
            ));
        }
        // 0: a report from logs alone, with no sampling.
        if self.interval_ns > 3_600_000_000_000 {
            return impossible(format!(
                "\"interval_ns\": {} (at most 1 h)",
                self.interval_ns
            ));
        }
        if let Some(end) = self.end_wall_ns.filter(|end| *end < self.start_wall_ns) {
            return impossible(format!(
                "\"end_wall_ns\" {end} is before \"start_wall_ns\" {}",
                self.start_wall_ns
            ));
        }
        Ok(())
    }

    pub fn check_version(&self, dir: &Path) -> Result<(), RecordingError> {
        if self.format_version > FORMAT_VERSION {
            return Err(RecordingError::NewerFormat {
                dir: dir.to_path_buf(),
                found: self.format_version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(())
    }
}

pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), RecordingError> {
    let bytes = serde_json::to_vec_pretty(manifest).expect("bug: a manifest always serializes");
    write_atomically(&dir.join(MANIFEST_FILE), &bytes)
}

pub fn read_manifest(dir: &Path) -> Result<Manifest, RecordingError> {
    let path = dir.join(MANIFEST_FILE);
    if !dir.is_dir() {
        return Err(RecordingError::NotADirectory(dir.to_path_buf()));
    }
    let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => RecordingError::NotARun(dir.to_path_buf()),
        _ => RecordingError::Io {
            path: path.clone(),
            cause: source,
        },
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|source| RecordingError::BadManifest {
            path: path.clone(),
            cause: source,
        })?;
    manifest.check_version(dir)?;
    manifest.check_values(&path)?;
    Ok(manifest)
}

/// The most workers a run can have (`run --workers` takes at most this many).
pub const MAX_WORKERS: u32 = 1024;

/// Replaces `path` with `bytes` so that a crash leaves the old or the new content.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RecordingError> {
    let io = |source| RecordingError::Io {
        path: path.to_path_buf(),
        cause: source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        // The rename is durable only once the directory entry is.
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod orchestrator {
    use super::Orchestrator;

    #[test]
    fn slurm_and_kubernetes_names_come_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Orchestrator::from_env(env(&[("HOME", "/root")])), None);
        let slurm = Orchestrator::from_env(env(&[
            ("SLURM_JOB_ID", "812"),
            ("SLURM_ARRAY_JOB_ID", "800"),
            ("SLURM_ARRAY_TASK_ID", "12"),
            ("HOSTNAME", "node7"),
        ]))
        .expect("slurm");
        assert_eq!(slurm.slurm_array_task_id.as_deref(), Some("12"));
        assert_eq!(slurm.kubernetes_pod, None, "HOSTNAME alone is no pod");
        let pod = Orchestrator::from_env(env(&[
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("POD_NAMESPACE", "search"),
            ("HOSTNAME", "hpo-7-x2x"),
        ]))
        .expect("kubernetes");
        assert_eq!(pod.kubernetes_pod.as_deref(), Some("hpo-7-x2x"));
        assert_eq!(pod.kubernetes_namespace.as_deref(), Some("search"));
    }
}

#[cfg(test)]
mod liveness {
    use super::*;

    fn running(harness: Option<HarnessProcess>) -> Manifest {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
        Manifest {
            format_version: FORMAT_VERSION,
            memwarden_version: "test".into(),
            mode: "run".into(),
            command: Vec::new(),
            workers: 1,
            host: "h".into(),
            boot_id: boot.trim().into(),
            kernel: "k".into(),
            start_wall_ns: 0,
            start_rfc3339: String::new(),
            interval_ns: 1,
            page_size: 4096,
            status: RunStatus::Running,
            end_wall_ns: None,
            end_reason: None,
            memory_cgroup: None,
            harness,
            orchestrator: None,
        }
    }

    #[test]
    fn a_running_recording_is_live_only_while_its_own_harness_runs_on_this_boot() {
        let me = HarnessProcess::this_process().expect("this process");
        assert!(running(Some(me)).still_recording());
        let reused = HarnessProcess {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!running(Some(reused)).still_recording(), "a reused pid");
        assert!(!running(None).still_recording(), "an older recording");
        let mut rebooted = running(Some(me));
        rebooted.boot_id = "another boot".into();
        assert!(!rebooted.still_recording());
        let mut finished = running(Some(me));
        finished.status = RunStatus::Finished;
        assert!(!finished.still_recording());
    }
}
