//! What PyTorch's CUDA caching allocator says about a worker's GPU growth, from the counters
//! the tracer records at each trial's end: live tensors growing is a tensor leak; only the
//! reserved cache growing is caching or fragmentation; the driver's figure growing past what
//! PyTorch reserves is memory outside PyTorch. Pure: the counters and the NVML rate in.

use super::findings::Diagnosis;
use crate::recording::{Event, EventKind};
use crate::stats::theil_sen;
use std::collections::BTreeMap;

/// Growth below this per trial is noise for GPU memory (the allocator rounds to 2 MiB blocks).
const MIN_BYTES_PER_TRIAL: f64 = 1024.0 * 1024.0;

/// One trial-end reading of one process, summed over its devices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TorchReading {
    pub allocated: f64,
    pub reserved: f64,
    pub inactive_split: f64,
}

/// A worker's trial-end readings per process, in recorded order, from its `torch_memory`
/// events; one trial's devices add up into one reading.
pub fn readings(events: &[Event], worker: u32) -> BTreeMap<i32, Vec<TorchReading>> {
    let mut out: BTreeMap<i32, Vec<TorchReading>> = BTreeMap::new();
    let mut last: Option<(i32, &str)> = None;
    for e in events.iter().filter(|e| e.worker == Some(worker)) {
        let EventKind::TorchMemory(m) = &e.kind else {
            continue;
        };
        let readings = out.entry(m.pid).or_default();
        if last != Some((m.pid, m.trial.as_str())) || readings.is_empty() {
            readings.push(TorchReading::default());
        }
        last = Some((m.pid, m.trial.as_str()));
        if let Some(r) = readings.last_mut() {
            r.allocated += m.allocated_bytes as f64;
            r.reserved += m.reserved_bytes as f64;
            r.inactive_split += m.inactive_split_bytes as f64;
        }
    }
    out
}

/// `readings` per pid in trial order; `device_rate` the worker's GPU growth per trial as the
/// driver reports it (NVML), when measured.
pub fn diagnose(
    readings: &BTreeMap<i32, Vec<TorchReading>>,
    device_rate: Option<f64>,
) -> Option<Diagnosis> {
    // The process with the most readings is the one that trains.
    let series = readings.values().max_by_key(|r| r.len())?;
    let x: Vec<f64> = (0..series.len()).map(|i| i as f64).collect();
    let slope = |f: fn(&TorchReading) -> f64| {
        let y: Vec<f64> = series.iter().map(f).collect();
        theil_sen(&x, &y)
    };
    let allocated = slope(|r| r.allocated)?;
    let reserved = slope(|r| r.reserved)?;
    let grows = |t: &crate::stats::Trend| t.slope >= MIN_BYTES_PER_TRIAL && t.slope_low > 0.0;
    if grows(&allocated) {
        return Some(Diagnosis::GpuTensors {
            allocated_bytes_per_trial: allocated.slope,
            reserved_bytes_per_trial: reserved.slope,
        });
    }
    if grows(&reserved) {
        return Some(Diagnosis::GpuAllocatorCache {
            reserved_bytes_per_trial: reserved.slope,
            allocated_bytes_per_trial: allocated.slope,
            inactive_split_bytes: series.last().map_or(0.0, |r| r.inactive_split),
        });
    }
    let device = device_rate?;
    (device >= MIN_BYTES_PER_TRIAL && device - reserved.slope.max(0.0) > 0.5 * device).then_some(
        Diagnosis::GpuOutsideTorch {
            device_bytes_per_trial: device,
            reserved_bytes_per_trial: reserved.slope,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    const MIB: f64 = 1024.0 * 1024.0;

    fn readings(f: impl Fn(f64) -> TorchReading) -> BTreeMap<i32, Vec<TorchReading>> {
        BTreeMap::from([(7, (0..10).map(|i| f(i as f64)).collect())])
    }

    #[test]
    fn tensors_cache_and_outside_are_told_apart() {
        let leak = readings(|i| TorchReading {
            allocated: 100.0 * MIB + 8.0 * MIB * i,
            reserved: 128.0 * MIB + 8.0 * MIB * i,
            inactive_split: 0.0,
        });
        assert!(matches!(
            diagnose(&leak, None),
            Some(Diagnosis::GpuTensors { allocated_bytes_per_trial, .. }) if (allocated_bytes_per_trial - 8.0 * MIB).abs() < 1.0
        ));
        let cache = readings(|i| TorchReading {
            allocated: 100.0 * MIB,
            reserved: 128.0 * MIB + 16.0 * MIB * i,
            inactive_split: 4.0 * MIB,
        });
        assert!(matches!(
            diagnose(&cache, None),
            Some(Diagnosis::GpuAllocatorCache { .. })
        ));
        let flat = readings(|_| TorchReading {
            allocated: 100.0 * MIB,
            reserved: 128.0 * MIB,
            inactive_split: 0.0,
        });
        assert_eq!(diagnose(&flat, None), None);
        assert!(matches!(
            diagnose(&flat, Some(20.0 * MIB)),
            Some(Diagnosis::GpuOutsideTorch { .. })
        ));
    }
}
