//! A recording as the policy engine reads it: per tick, system memory and each worker tree's
//! PSS (the last PSS read carried forward per process while fresh, RSS where none was read yet
//! or it went stale: the sampler's rule, `freshness`), merged in
//! time order with the trial boundaries and worker starts and exits. Streamed one sample segment
//! at a time, so a 12-hour run never sits in memory.

use super::columns::{effective_memory, optional_u64_values, u64_values};
use super::fill::SparseFill;
use super::read::{SAMPLE_COLUMNS, SYSTEM_COLUMNS};
use crate::frames::prelude::*;
use crate::policy::{Reading, Recorded, TickRow, WorkerMemory};
use crate::recording::columns as col;
use crate::recording::{EventKind, Recording, RecordingError};
use std::collections::BTreeMap;

/// The workers the recording shows asking at the gate (refused, or told to abort): cooperative.
pub fn cooperative_workers(recording: &Recording) -> std::collections::BTreeSet<u32> {
    use crate::recording::PolicyAction;
    recording
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Policy {
                action: PolicyAction::Refuse | PolicyAction::Abort,
                simulated: false,
                ..
            } => e.worker,
            _ => None,
        })
        .collect()
}

pub fn for_each_recorded(
    recording: &Recording,
    mut visit: impl FnMut(Recorded),
) -> Result<(), RecordingError> {
    let table = |source| RecordingError::Table {
        path: recording.dir.clone(),
        cause: source,
    };
    let mut events: Vec<(u64, Recorded)> = recording
        .events
        .iter()
        .filter_map(|e| {
            if let EventKind::Stop { .. } = e.kind {
                return Some((e.t_ns, Recorded::RunStop));
            }
            let worker = e.worker?;
            let item = match &e.kind {
                EventKind::TrialStart { trial, .. } => Recorded::TrialStart {
                    worker,
                    trial: trial.to_string(),
                },
                EventKind::TrialEnd { .. } => Recorded::TrialEnd { worker },
                EventKind::WorkerStart { attempt, .. } => Recorded::WorkerStart {
                    worker,
                    attempt: *attempt,
                },
                EventKind::WorkerExit { code, .. } => Recorded::WorkerExit {
                    worker,
                    success: *code == Some(0),
                },
                _ => return None,
            };
            Some((e.t_ns, item))
        })
        .collect();
    events.sort_by_key(|(t, _)| *t);
    let mut events = events.into_iter().peekable();
    let mut fill = SparseFill::new(recording);
    for index in recording.sample_segments()? {
        let (segment, system) =
            recording.segment_frames(index, Some(&SAMPLE_COLUMNS), Some(&SYSTEM_COLUMNS))?;
        let mut readings = system_readings(&system).map_err(table)?;
        add_devices(&recording.gpu_segment(index)?, &mut readings).map_err(table)?;
        if segment.height() > 0 {
            let filled = fill.apply(segment).map_err(table)?;
            add_workers(&filled, &mut readings).map_err(table)?;
        }
        for (t_ns, reading) in readings {
            while let Some((_, item)) = events.next_if(|(t, _)| *t <= t_ns) {
                visit(item);
            }
            visit(Recorded::Tick(TickRow { t_ns, reading }));
        }
    }
    events.for_each(|(_, item)| visit(item));
    Ok(())
}

fn system_readings(system: &DataFrame) -> PolarsResult<BTreeMap<u64, Reading>> {
    let t = u64_values(system, col::T_NS)?;
    // Within the cgroup's limit where one was recorded, as the live engine saw it.
    let memory = effective_memory(system)?;
    let psi = system
        .column(col::PSI_FULL_AVG10)?
        .cast(&DataType::Float64)?;
    let psi: Vec<Option<f64>> = psi.f64()?.iter().collect();
    let (host_total, limit) = (
        u64_values(system, col::MEM_TOTAL_BYTES)?,
        optional_u64_values(system, col::CGROUP_LIMIT_BYTES)?,
    );
    let mut readings = BTreeMap::new();
    for i in 0..system.height() {
        let (Some(t), Some((total, available))) = (t[i], memory[i]) else {
            continue;
        };
        readings.insert(
            t,
            Reading {
                mem_total_bytes: total,
                mem_available_bytes: available,
                psi_full_avg10: psi[i],
                limit_bytes: limit[i]
                    .zip(host_total[i])
                    .and_then(|(l, h)| (l < h).then_some(l)),
                workers: BTreeMap::new(),
                devices: Vec::new(),
            },
        );
    }
    Ok(readings)
}

fn add_devices(gpu: &DataFrame, readings: &mut BTreeMap<u64, Reading>) -> PolarsResult<()> {
    let u = |name: &str| u64_values(gpu, name);
    if gpu.height() == 0 {
        return Ok(());
    }
    let (t, device, used, total) = (
        u(col::T_NS)?,
        u(col::DEVICE)?,
        u(col::USED_BYTES)?,
        u(col::TOTAL_BYTES)?,
    );
    for i in 0..gpu.height() {
        if let (Some(t), Some(device), Some(used), Some(total)) =
            (t[i], device[i], used[i], total[i])
        {
            if let Some(reading) = readings.get_mut(&t) {
                reading.devices.push((device as u32, used, total));
            }
        }
    }
    Ok(())
}

/// Each worker's tree summed per tick: PSS where it was read (RSS where it never was, flagged
/// stale), and GPU memory where any of its processes had some.
fn add_workers(filled: &DataFrame, readings: &mut BTreeMap<u64, Reading>) -> PolarsResult<()> {
    let u = |name: &str| u64_values(filled, name);
    let (worker, t, pss, rss, gpu) = (
        u(col::WORKER)?,
        u(col::T_NS)?,
        u(col::PSS)?,
        u(col::RSS)?,
        u(col::GPU)?,
    );
    for i in 0..filled.height() {
        let (Some(worker), Some(t)) = (worker[i], t[i]) else {
            continue;
        };
        let Some(reading) = readings.get_mut(&t) else {
            continue;
        };
        let memory = reading
            .workers
            .entry(worker as u32)
            .or_insert(WorkerMemory {
                pss_bytes: 0,
                gpu_bytes: None,
                pss_stale: false,
                // The soft line acts on the live run only (the restart rule needs no replay).
                cgroup_bytes: None,
            });
        memory.pss_bytes += pss[i].or(rss[i]).unwrap_or(0);
        memory.pss_stale |= pss[i].is_none();
        if let Some(bytes) = gpu[i] {
            *memory.gpu_bytes.get_or_insert(0) += bytes;
        }
    }
    Ok(())
}
