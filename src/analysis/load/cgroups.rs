//! The workers' own memory cgroups as the `cgroups` table recorded them, for the OOM judgement.

use super::columns::u64_values;
use crate::recording::columns as col;
use crate::recording::Recording;
use std::collections::BTreeMap;

/// `(t_ns, oom_kill, times the worker met its own limit, limit)` at one tick.
pub type OomReading = (u64, u64, u64, Option<u64>);

/// Per worker, in time order. v2
/// counts meeting the limit in `oom`, v1 a failed charge in `failcnt`. Empty for a run whose
/// workers had no cgroup of their own; a segment that cannot be read is left out.
pub fn oom_readings(recording: &Recording) -> BTreeMap<u32, Vec<OomReading>> {
    let mut readings: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for index in recording.sample_segments().unwrap_or_default() {
        let Ok(table) = recording.cgroups_segment(index) else {
            continue;
        };
        let column = |name: &str| u64_values(&table, name).unwrap_or_default();
        let (t, worker, kills) = (
            column(col::T_NS),
            column(col::WORKER),
            column(col::OOM_KILL),
        );
        let (oom, failcnt, limit) = (
            column(col::OOM),
            column(col::FAILCNT),
            column(col::LIMIT_BYTES),
        );
        for i in 0..t.len() {
            let (Some(t), Some(worker), Some(kills)) = (t[i], worker[i], kills[i]) else {
                continue;
            };
            let own = oom
                .get(i)
                .copied()
                .flatten()
                .or(failcnt.get(i).copied().flatten());
            let limit = limit.get(i).copied().flatten();
            readings
                .entry(worker as u32)
                .or_default()
                .push((t, kills, own.unwrap_or(0), limit));
        }
    }
    for r in readings.values_mut() {
        r.sort_by_key(|x| x.0);
    }
    readings
}
