//! The recording's column names, one constant per quantity, and the helper that builds a table
//! from rows. The writers (`tables`), the readers (analysis, export, replay) and FORMAT.md's
//! test all name a column through these constants, so a quantity has one spelling: the record's
//! field, its JSON key in the raw segments and its Parquet column are the same word
//! (`mem_available_bytes`), and a rename is one edit that the format test holds against FORMAT.md.

use crate::frames::prelude::*;

// Shared by several tables.
pub const T_NS: &str = "t_ns";
pub const WALL_NS: &str = "wall_ns";
pub const WORKER: &str = "worker";
pub const PID: &str = "pid";
pub const TRIAL: &str = "trial";

// samples: one row per process per tick.
pub const RSS: &str = "rss";
pub const PSS: &str = "pss";
pub const USS: &str = "uss";
pub const ANON: &str = "anon";
pub const FILE: &str = "file";
pub const SHMEM: &str = "shmem";
pub const SWAP: &str = "swap";
pub const GPU: &str = "gpu";
pub const SAMPLES: &[&str] = &[
    T_NS, WORKER, PID, RSS, PSS, USS, ANON, FILE, SHMEM, SWAP, GPU,
];

// system: one row per tick.
pub const MEM_TOTAL_BYTES: &str = "mem_total_bytes";
pub const MEM_AVAILABLE_BYTES: &str = "mem_available_bytes";
pub const SWAP_TOTAL_BYTES: &str = "swap_total_bytes";
pub const SWAP_FREE_BYTES: &str = "swap_free_bytes";
pub const PSI_SOME_AVG10: &str = "psi_some_avg10";
pub const PSI_FULL_AVG10: &str = "psi_full_avg10";
pub const PSI_SOME_TOTAL_US: &str = "psi_some_total_us";
pub const PSI_FULL_TOTAL_US: &str = "psi_full_total_us";
pub const HARNESS_RSS_BYTES: &str = "harness_rss_bytes";
pub const CGROUP_LIMIT_BYTES: &str = "cgroup_limit_bytes";
pub const CGROUP_USAGE_BYTES: &str = "cgroup_usage_bytes";
pub const CGROUP_WORKING_SET_BYTES: &str = "cgroup_working_set_bytes";
pub const CGROUP_OOM: &str = "cgroup_oom";
pub const CGROUP_OOM_KILL: &str = "cgroup_oom_kill";
pub const CGROUP_FAILCNT: &str = "cgroup_failcnt";
pub const CGROUP_PSI_FULL_AVG10: &str = "cgroup_psi_full_avg10";
pub const SHM_BYTES: &str = "shm_bytes";
pub const SHM_FILES: &str = "shm_files";
pub const OUTSIDE_TREES_BYTES: &str = "outside_trees_bytes";
pub const SYSTEM: &[&str] = &[
    T_NS,
    WALL_NS,
    MEM_TOTAL_BYTES,
    MEM_AVAILABLE_BYTES,
    SWAP_TOTAL_BYTES,
    SWAP_FREE_BYTES,
    PSI_SOME_AVG10,
    PSI_FULL_AVG10,
    PSI_SOME_TOTAL_US,
    PSI_FULL_TOTAL_US,
    HARNESS_RSS_BYTES,
    CGROUP_LIMIT_BYTES,
    CGROUP_USAGE_BYTES,
    CGROUP_WORKING_SET_BYTES,
    CGROUP_OOM,
    CGROUP_OOM_KILL,
    CGROUP_FAILCNT,
    CGROUP_PSI_FULL_AVG10,
    SHM_BYTES,
    SHM_FILES,
    OUTSIDE_TREES_BYTES,
];

// cgroups: one row per worker with a cgroup of its own per tick.
pub const LIMIT_BYTES: &str = "limit_bytes";
pub const USAGE_BYTES: &str = "usage_bytes";
pub const ANON_BYTES: &str = "anon_bytes";
pub const FILE_BYTES: &str = "file_bytes";
pub const SHMEM_BYTES: &str = "shmem_bytes";
pub const KERNEL_BYTES: &str = "kernel_bytes";
pub const SOCK_BYTES: &str = "sock_bytes";
pub const MAPPED_FILE_BYTES: &str = "mapped_file_bytes";
pub const OOM: &str = "oom";
pub const OOM_KILL: &str = "oom_kill";
pub const FAILCNT: &str = "failcnt";
pub const HIGH: &str = "high";
pub const MAX: &str = "max";
pub const CGROUPS: &[&str] = &[
    T_NS,
    WORKER,
    LIMIT_BYTES,
    USAGE_BYTES,
    ANON_BYTES,
    FILE_BYTES,
    SHMEM_BYTES,
    KERNEL_BYTES,
    SOCK_BYTES,
    MAPPED_FILE_BYTES,
    OOM,
    OOM_KILL,
    FAILCNT,
    HIGH,
    MAX,
    PSI_FULL_TOTAL_US,
];

// gpu: one row per device per tick.
pub const DEVICE: &str = "device";
pub const USED_BYTES: &str = "used_bytes";
pub const TOTAL_BYTES: &str = "total_bytes";
pub const UTILIZATION_PERCENT: &str = "utilization_percent";
pub const GPUS: &[&str] = &[T_NS, DEVICE, USED_BYTES, TOTAL_BYTES, UTILIZATION_PERCENT];

// smaps: one row per mapping of a trial-boundary snapshot.
pub const BOUNDARY: &str = "boundary";
pub const MAPPING: &str = "mapping";
pub const START: &str = "start";
pub const REGIONS: &str = "regions";
pub const SIZE: &str = "size";
pub const PRIVATE: &str = "private";
pub const ANONYMOUS: &str = "anonymous";
pub const SMAPS: &[&str] = &[
    T_NS, WORKER, PID, TRIAL, BOUNDARY, MAPPING, START, REGIONS, SIZE, RSS, PSS, PRIVATE,
    ANONYMOUS, SWAP,
];

// events (export): one row per event, its own fields as JSON in `detail`.
pub const KIND: &str = "kind";
pub const DETAIL: &str = "detail";
pub const EVENTS: &[&str] = &[T_NS, WALL_NS, WORKER, KIND, TRIAL, PID, DETAIL];

// sites (export): one row per allocation site of a Python tracer report.
pub const EPOCH: &str = "epoch";
pub const MEMORY: &str = "memory";
pub const LINE: &str = "line";
pub const BYTES: &str = "bytes";
pub const BLOCKS: &str = "blocks";
pub const VIA: &str = "via";
pub const STUDY: &str = "study";
pub const COST_MS: &str = "cost_ms";
pub const SITES: &[&str] = &[
    T_NS, WORKER, PID, TRIAL, EPOCH, MEMORY, FILE, LINE, BYTES, BLOCKS, VIA, STUDY, COST_MS,
];

// trials (export): one row per trial, then a `param_<name>` column per common parameter.
pub const START_NS: &str = "start_ns";
pub const END_NS: &str = "end_ns";
pub const STATE: &str = "state";
pub const VALUE: &str = "value";
pub const PARAMS: &str = "params";
pub const TRIALS: &[&str] = &[WORKER, TRIAL, START_NS, END_NS, STATE, VALUE, PARAMS];

/// Format 1 spelled the system, cgroup and GPU columns without their unit, unlike the records
/// they came from; a segment compacted then is read under today's names. Per table, as
/// `anon` in the samples table is the process's and kept its name.
const FORMAT_1_SYSTEM: &[(&str, &str)] = &[
    ("mem_total", MEM_TOTAL_BYTES),
    ("mem_available", MEM_AVAILABLE_BYTES),
    ("swap_total", SWAP_TOTAL_BYTES),
    ("swap_free", SWAP_FREE_BYTES),
    ("harness_rss", HARNESS_RSS_BYTES),
    ("cgroup_limit", CGROUP_LIMIT_BYTES),
    ("cgroup_usage", CGROUP_USAGE_BYTES),
    ("cgroup_working_set", CGROUP_WORKING_SET_BYTES),
    ("outside_trees", OUTSIDE_TREES_BYTES),
];
const FORMAT_1_CGROUPS: &[(&str, &str)] = &[
    ("limit", LIMIT_BYTES),
    ("usage", USAGE_BYTES),
    ("anon", ANON_BYTES),
    ("file", FILE_BYTES),
    ("shmem", SHMEM_BYTES),
    ("kernel", KERNEL_BYTES),
    ("sock", SOCK_BYTES),
    ("mapped_file", MAPPED_FILE_BYTES),
];
const FORMAT_1_GPU: &[(&str, &str)] = &[
    ("used", USED_BYTES),
    ("total", TOTAL_BYTES),
    ("utilization", UTILIZATION_PERCENT),
];

fn format_1_renames(table: &str) -> &'static [(&'static str, &'static str)] {
    match table {
        "system" => FORMAT_1_SYSTEM,
        "cgroups" => FORMAT_1_CGROUPS,
        "gpu" => FORMAT_1_GPU,
        _ => &[],
    }
}

/// The name format 1 gave today's column `name` of `table` (`system`, `cgroups`, `gpu`);
/// `None` where it did not change.
pub(crate) fn format_1_name(table: &str, name: &str) -> Option<&'static str> {
    format_1_renames(table)
        .iter()
        .find(|(_, new)| *new == name)
        .map(|(old, _)| *old)
}

/// Renames a format-1 segment's columns of `table` to today's names, in place; a segment
/// written today is left as it is.
pub(crate) fn rename_format_1(table: &str, df: &mut DataFrame) -> PolarsResult<()> {
    for (old, new) in format_1_renames(table) {
        if df.schema().contains(old) {
            df.rename(old, (*new).into())?;
        }
    }
    Ok(())
}

/// A table built from rows, one named column at a time: each column is its constant and the
/// one accessor that fills it, so a writer reads as the schema it writes.
pub(crate) struct Table<'a, R> {
    rows: &'a [R],
    columns: Vec<Column>,
}

impl<'a, R> Table<'a, R> {
    pub(crate) fn of(rows: &'a [R]) -> Self {
        Table {
            rows,
            columns: Vec::new(),
        }
    }

    /// Adds the column `name`, one value per row.
    pub(crate) fn col<T>(mut self, name: &str, value: impl Fn(&'a R) -> T) -> Self
    where
        Series: NamedFrom<Vec<T>, [T]>,
    {
        let values: Vec<T> = self.rows.iter().map(value).collect();
        self.columns.push(Column::new(name.into(), values));
        self
    }

    pub(crate) fn frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new(self.rows.len(), self.columns)
    }
}
