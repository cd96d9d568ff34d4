//! Carries each process's sparse readings (PSS and USS from the budgeted smaps_rollup, GPU memory
//! from NVML) forward over the ticks that did not read them, as the sampler does: only while the
//! last read is fresh (`freshness`), and never across an exec of the process, so a value of the
//! program before the exec never stands for the one after. Past that the value is left empty:
//! a tree sum of PSS is then empty too, and figures fall back to what every tick measures (anon,
//! RSS). The state per process crosses segment boundaries, so a 12-hour run is filled one
//! segment at a time. polars has a forward fill with a limit in rows, but not one bounded by each
//! process's own read cadence, so the walk over the rows is done here.

use super::columns::{option_values, u64_values};
use crate::frames::prelude::*;
use crate::freshness::ReadCadence;
use crate::recording::columns as col;
use crate::recording::{EventKind, Recording};
use rustc_hash::FxHashMap;
use std::collections::HashMap;

/// The sparse columns, in the order of [`Carried::values`]. USS is read with PSS.
pub(super) const SPARSE: [&str; 3] = [col::PSS, col::USS, col::GPU];

/// Added to the filled frame: whether this row's PSS was read on its tick (not carried).
pub(super) const PSS_READ: &str = "pss_read";

#[derive(Default)]
struct Carried {
    values: [Option<u64>; 3],
    /// Reads of PSS (and USS with it), and of GPU memory.
    rollups: ReadCadence,
    gpu: ReadCadence,
    /// When this process exec'd, in order, and the index of the next one.
    execs: Vec<u64>,
    next_exec: usize,
}

pub(super) struct SparseFill {
    interval_ns: u64,
    /// Per process not seen yet, the ticks at which it exec'd, in order.
    execs: HashMap<(u32, i32), Vec<u64>>,
    /// Looked up once per row of millions: a fast hash for small integer keys (no input here is
    /// chosen by an adversary who could make it collide).
    processes: FxHashMap<(u32, i32), Carried>,
}

impl SparseFill {
    pub fn new(recording: &Recording) -> Self {
        let mut execs: HashMap<(u32, i32), Vec<u64>> = HashMap::new();
        for event in &recording.events {
            if let (Some(worker), EventKind::Exec { pid, .. }) = (event.worker, &event.kind) {
                execs.entry((worker, *pid)).or_default().push(event.t_ns);
            }
        }
        Self::with_execs(recording.manifest.interval_ns, execs)
    }

    pub fn with_execs(interval_ns: u64, mut execs: HashMap<(u32, i32), Vec<u64>>) -> Self {
        for times in execs.values_mut() {
            times.sort_unstable();
        }
        Self {
            interval_ns: interval_ns.max(1),
            execs,
            processes: FxHashMap::default(),
        }
    }

    /// The segment with its sparse columns filled, and a [`PSS_READ`] column. Rows of a process
    /// must come in time order, as the sampler writes them.
    pub fn apply(&mut self, segment: DataFrame) -> PolarsResult<DataFrame> {
        let Filled { sparse, pss_read } = self.fill(&segment)?;
        let mut filled = segment;
        for (name, values) in SPARSE.iter().zip(sparse) {
            filled.replace(name, Column::new((*name).into(), values))?;
        }
        filled.with_column(Column::new(PSS_READ.into(), pss_read))?;
        Ok(filled)
    }

    /// The segment's sparse columns filled (in the order of [`SPARSE`]: PSS, USS, GPU), and
    /// per row whether its PSS was read on its tick (not carried).
    pub fn fill(&mut self, segment: &DataFrame) -> PolarsResult<Filled> {
        let u64s = |name: &str| u64_values(segment, name);
        let t_ns = u64s(col::T_NS)?;
        let worker = u64s(col::WORKER)?;
        let pid = segment.column(col::PID)?.cast(&DataType::Int32)?;
        let pid = option_values(pid.i32()?);
        let mut columns = [u64s(SPARSE[0])?, u64s(SPARSE[1])?, u64s(SPARSE[2])?];
        let mut read = Vec::with_capacity(segment.height());
        for (i, pid) in pid.into_iter().enumerate() {
            let (Some(t), Some(worker), Some(pid)) = (t_ns[i], worker[i], pid) else {
                read.push(false);
                continue;
            };
            let key = (worker as u32, pid);
            let carried = self.processes.entry(key).or_insert_with(|| Carried {
                execs: self.execs.remove(&key).unwrap_or_default(),
                ..Carried::default()
            });
            while carried
                .execs
                .get(carried.next_exec)
                .is_some_and(|&at| at <= t)
            {
                // Drop what the old program showed; the next exec stays pending.
                carried.next_exec += 1;
                carried.values = Default::default();
                carried.rollups = ReadCadence::default();
                carried.gpu = ReadCadence::default();
            }
            let row: [Option<u64>; 3] = [columns[0][i], columns[1][i], columns[2][i]];
            read.push(row[0].is_some());
            if row[0].is_some() {
                carried.rollups.read(t);
                carried.values[0] = row[0];
                carried.values[1] = row[1];
            }
            if row[2].is_some() {
                carried.gpu.read(t);
                carried.values[2] = row[2];
            }
            // The recording keeps no read costs: the cadence seen is all there is to go by.
            let rollup_fresh = carried.rollups.is_fresh(t, self.interval_ns, 0);
            let fresh = [
                rollup_fresh,
                rollup_fresh,
                carried.gpu.is_fresh(t, self.interval_ns, 0),
            ];
            for (slot, column) in columns.iter_mut().enumerate() {
                column[i] = carried.values[slot].filter(|_| fresh[slot]);
            }
        }
        Ok(Filled {
            sparse: columns,
            pss_read: read,
        })
    }
}

/// A segment's sparse columns, filled.
pub(super) struct Filled {
    /// PSS, USS and GPU memory per row, as [`SPARSE`] orders them.
    pub sparse: [Vec<Option<u64>>; 3],
    pub pss_read: Vec<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// One process's rows at 100 ms ticks, with PSS read on the ticks given.
    fn frame(ticks: u64, read_on: &[u64]) -> DataFrame {
        let t: Vec<u64> = (0..ticks).map(|k| k * 100 * MS).collect();
        let pss: Vec<Option<u64>> = (0..ticks)
            .map(|k| read_on.contains(&k).then_some(1000 + k))
            .collect();
        let n = ticks as usize;
        df!(
            col::T_NS => t,
            col::WORKER => vec![0u32; n],
            col::PID => vec![7i32; n],
            col::PSS => pss.clone(),
            col::USS => pss,
            col::GPU => vec![None::<u64>; n],
            col::RSS => vec![5000u64; n],
        )
        .expect("bug: test frame")
    }

    fn pss(df: &DataFrame) -> Vec<Option<u64>> {
        df.column(col::PSS)
            .and_then(|c| c.cast(&DataType::UInt64))
            .expect("bug: pss column")
            .u64()
            .expect("bug: u64")
            .iter()
            .collect()
    }

    #[test]
    fn a_read_is_carried_until_it_goes_stale() {
        // Read on ticks 0..3, then never: fresh for the 2 s floor (20 ticks) after tick 2.
        let mut fill = SparseFill::with_execs(100 * MS, HashMap::new());
        let filled = fill.apply(frame(40, &[0, 1, 2])).expect("bug: fill");
        let pss = pss(&filled);
        assert_eq!(pss[22], Some(1002));
        assert_eq!(pss[23], None, "carried past its freshness");
        assert!(pss[23..].iter().all(Option::is_none));
        let read = filled.column(PSS_READ).expect("bug: column");
        assert_eq!(read.bool().expect("bug: bool").sum(), Some(3));
    }

    #[test]
    fn the_carry_crosses_segments_but_not_an_exec() {
        let execs = HashMap::from([((0u32, 7i32), vec![1_500 * MS])]);
        let mut fill = SparseFill::with_execs(100 * MS, execs);
        let first = fill.apply(frame(10, &[0, 9])).expect("bug: fill");
        assert_eq!(pss(&first)[5], Some(1000));
        // The next segment goes on at 1.0 s: tick 9's read stands until the exec at 1.5 s.
        let mut second = frame(10, &[8]);
        let shifted = second.column(col::T_NS).expect("bug: column") + (1_000 * MS);
        second.with_column(shifted).expect("bug: shift");
        let pss = pss(&fill.apply(second).expect("bug: fill"));
        assert_eq!(pss[..5], [Some(1009); 5]);
        assert_eq!(pss[5..8], [None; 3], "the old program's PSS after the exec");
        assert_eq!(pss[8..], [Some(1008); 2]);
    }
}
