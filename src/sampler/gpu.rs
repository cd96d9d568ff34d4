//! GPU sampling on a thread of its own: NVML calls can take milliseconds, and the tick must not
//! wait for them. The thread samples at the tick's cadence (at most 20 times a second) and
//! leaves its latest snapshot where the tick picks it up without blocking.

use crate::probe::gpu::{self, Attribution, GpuSnapshot};
use crate::probe::ProcRoot;
use crate::recording::{GpuDeviceSample, ProcessSample};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the GPU thread knows.
#[derive(Debug, Clone)]
pub enum GpuState {
    /// Still opening NVML.
    Starting,
    /// No GPU data on this machine, and why (said once in the run's log).
    Unavailable(String),
    Sampled {
        at: Instant,
        snapshot: GpuSnapshot,
    },
}

pub struct GpuThread {
    state: Arc<Mutex<GpuState>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// A snapshot older than this is not used (the thread is stuck in the driver).
    fresh_for: Duration,
    said_unavailable: bool,
    said_devices: bool,
    said_attribution: bool,
}

impl GpuThread {
    pub fn start(interval: Duration) -> Self {
        let state = Arc::new(Mutex::new(GpuState::Starting));
        let stop = Arc::new(AtomicBool::new(false));
        let every = interval.max(Duration::from_millis(50));
        let (shared, stopping) = (state.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("memwarden-gpu".into())
            .spawn(move || {
                let set = |s: GpuState| *shared.lock().unwrap_or_else(|p| p.into_inner()) = s;
                let mut source = match gpu::open() {
                    Ok(source) => source,
                    Err(why) => return set(GpuState::Unavailable(why)),
                };
                let mut next = Instant::now();
                while !stopping.load(Ordering::Relaxed) {
                    match source.sample() {
                        Ok(snapshot) => set(GpuState::Sampled {
                            at: Instant::now(),
                            snapshot,
                        }),
                        // A driver that stops answering mid-run: say so and stop asking.
                        Err(why) => return set(GpuState::Unavailable(why)),
                    }
                    next += every;
                    let now = Instant::now();
                    next = next.max(now);
                    std::thread::sleep(next - now);
                }
            })
            .ok();
        Self {
            state,
            stop,
            handle,
            fresh_for: (interval * 3).max(Duration::from_secs(1)),
            said_unavailable: false,
            said_devices: false,
            said_attribution: false,
        }
    }

    fn state(&self) -> GpuState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fills each process's `gpu` (where attribution is possible) and returns the devices'
    /// samples for this tick. `tracked` maps each tracked pid to its NSpid list. Things to say
    /// once in the run's log go to `notes`.
    pub fn apply(
        &mut self,
        root: &ProcRoot,
        tracked: &BTreeMap<i32, Vec<i32>>,
        processes: &mut [ProcessSample],
        notes: &mut Vec<String>,
    ) -> Vec<GpuDeviceSample> {
        let snapshot = match self.state() {
            GpuState::Starting => return Vec::new(),
            GpuState::Unavailable(why) => {
                if !self.said_unavailable {
                    self.said_unavailable = true;
                    notes.push(format!("GPU data unavailable: {why}"));
                }
                return Vec::new();
            }
            GpuState::Sampled { at, .. } if at.elapsed() > self.fresh_for => return Vec::new(),
            GpuState::Sampled { snapshot, .. } => snapshot,
        };
        if !self.said_devices {
            self.said_devices = true;
            for d in &snapshot.devices {
                notes.push(format!(
                    "GPU {}: {}, {} total",
                    d.index,
                    d.name,
                    crate::units::size(d.total_bytes as f64)
                ));
            }
        }
        match gpu::attribute(&snapshot, tracked, gpu::pid_exists(root.path())) {
            Attribution::Known(used) => {
                for p in processes.iter_mut() {
                    p.gpu = used.get(&p.pid).copied();
                }
            }
            Attribution::Unavailable { foreign_pids } => {
                if !self.said_attribution {
                    self.said_attribution = true;
                    notes.push(format!(
                        "per-worker GPU attribution unavailable: the driver reports pids this pid namespace does not have (e.g. {}; memwarden runs in a container?); only device totals are recorded",
                        foreign_pids.iter().take(3).map(u32::to_string).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
        snapshot
            .devices
            .iter()
            .map(|d| GpuDeviceSample {
                device: d.index,
                used_bytes: d.used_bytes,
                total_bytes: d.total_bytes,
                utilization_percent: d.utilization_percent,
            })
            .collect()
    }
}

impl Drop for GpuThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
