//! The published layout: one root per table, partitioned by host and run, as DuckDB, polars and
//! Spark read hive partitions (`DEST/samples/host=H/run=R/000001.parquet`). FORMAT.md specifies
//! it; this file owns its names.

use std::path::{Path, PathBuf};

/// Goes up when a column changes meaning; columns are only ever added within a version.
pub const LAYOUT_VERSION: u32 = 1;

/// The tables, `runs` last: a run's row there is written after every other table's files, so
/// a run in `runs` is whole (a publish cut off before it is redone by the next).
pub const TABLES: [&str; 9] = [
    "samples",
    "system",
    "gpu",
    "smaps",
    "events",
    "trials",
    "findings",
    "parameters",
    "runs",
];

/// A run's place in the layout.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunKey {
    pub host: String,
    pub run: String,
}

impl RunKey {
    pub fn new(host: &str, run: &str) -> Self {
        Self {
            host: partition_value(host),
            run: partition_value(run),
        }
    }

    /// `DEST/TABLE/host=H/run=R`.
    pub fn partition(&self, dest: &Path, table: &str) -> PathBuf {
        dest.join(table)
            .join(format!("host={}", self.host))
            .join(format!("run={}", self.run))
    }
}

/// A value safe as a path component and a hive partition value: letters, digits, `.`, `_`,
/// `-`; anything else becomes `_` (a host `node/7` or a run `a=b` cannot break the layout).
pub fn partition_value(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.trim_start_matches('.') {
        "" => "_".into(),
        rest => rest.into(),
    }
}

/// `000001.parquet`: a table's file within its partition (segment N, or 1 for one-file tables).
pub fn file_name(index: u32) -> String {
    format!("{index:06}.parquet")
}

/// `DEST/runs/host=H/run=R` (or a path below it) names a published run: its destination and key.
/// A run directory that happens to be named like one (it holds a manifest) is not.
pub fn published_run(path: &Path) -> Option<(PathBuf, RunKey)> {
    let path = if path.is_file() { path.parent()? } else { path };
    if path.join(crate::recording::MANIFEST_FILE).exists() {
        return None;
    }
    let run = path.file_name()?.to_str()?.strip_prefix("run=")?;
    let host_dir = path.parent()?;
    let host = host_dir.file_name()?.to_str()?.strip_prefix("host=")?;
    let table_dir = host_dir.parent()?;
    if !TABLES.contains(&table_dir.file_name()?.to_str()?) {
        return None;
    }
    Some((
        table_dir.parent()?.to_path_buf(),
        RunKey {
            host: host.into(),
            run: run.into(),
        },
    ))
}

/// The Parquet files of one table, each with its run; files of other names (`_SUCCESS`, a
/// README, a temporary file) are not the table's and are left out.
pub fn table_files(dest: &Path, table: &str) -> std::io::Result<Vec<(RunKey, PathBuf)>> {
    let mut files = Vec::new();
    let root = dest.join(table);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for host_dir in entries {
        let host_dir = host_dir?.path();
        let Some(host) = name_after(&host_dir, "host=") else {
            continue;
        };
        for run_dir in std::fs::read_dir(&host_dir)? {
            let run_dir = run_dir?.path();
            let Some(run) = name_after(&run_dir, "run=") else {
                continue;
            };
            for file in std::fs::read_dir(&run_dir)? {
                let file = file?.path();
                if file.extension().is_some_and(|e| e == "parquet")
                    && !file
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    let key = RunKey {
                        host: host.clone(),
                        run: run.clone(),
                    };
                    files.push((key, file));
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

fn name_after(path: &Path, prefix: &str) -> Option<String> {
    path.is_dir()
        .then(|| {
            path.file_name()?
                .to_str()?
                .strip_prefix(prefix)
                .map(str::to_string)
        })
        .flatten()
}

/// The columns of the tables `publish` draws from a run (`runs`, `findings`, `parameters`)
/// that are read back: by the fleet's questions, and by a published run's reader. The
/// others are named where `fleet::tables` writes them; FORMAT.md's test holds all of them.
pub mod columns {
    pub const START: &str = "start";
    pub const START_WALL_NS: &str = "start_wall_ns";
    pub const STUDY: &str = "study";
    pub const VERDICT: &str = "verdict";
    pub const DAMAGED_RECORDS: &str = "damaged_records";
    pub const TORN_TAIL_BYTES: &str = "torn_tail_bytes";
    pub const MANIFEST_JSON: &str = "manifest_json";
    pub const WORKER: &str = "worker";
    pub const KIND: &str = "kind";
    pub const PER_TRIAL_BYTES: &str = "per_trial_bytes";
    pub const PER_TRIAL_LOW_BYTES: &str = "per_trial_low_bytes";
    pub const PER_TRIAL_HIGH_BYTES: &str = "per_trial_high_bytes";
    pub const PER_HOUR_BYTES: &str = "per_hour_bytes";
    pub const FIRST_CLEAR_TRIAL: &str = "first_clear_trial";
    pub const SITE: &str = "site";
    pub const SITE_CODE: &str = "site_code";
    pub const OOM_KILLS: &str = "oom_kills";
    pub const CRASH_RESTARTS: &str = "crash_restarts";
    pub const POLICY_RESTARTS: &str = "policy_restarts";
    pub const NAME: &str = "name";
    pub const VALUE: &str = "value";
    pub const EFFECT_BYTES: &str = "effect_bytes";
    pub const SIGNIFICANT: &str = "significant";
    /// `events`: the event as its JSON record.
    pub const RECORD: &str = "record";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_break_a_partition_are_made_safe() {
        assert_eq!(partition_value("node-7.cluster"), "node-7.cluster");
        assert_eq!(partition_value("a=b/c d"), "a_b_c_d");
        assert_eq!(partition_value("..hidden"), "hidden");
        assert_eq!(partition_value(""), "_");
    }

    #[test]
    fn a_published_run_is_found_from_its_runs_partition() {
        let (dest, key) =
            published_run(Path::new("/fleet/runs/host=h1/run=r7")).expect("a published run");
        assert_eq!(dest, Path::new("/fleet"));
        assert_eq!(key, RunKey::new("h1", "r7"));
        assert_eq!(
            key.partition(&dest, "samples"),
            Path::new("/fleet/samples/host=h1/run=r7")
        );
        assert!(published_run(Path::new("/fleet/other/host=h1/run=r7")).is_none());
        assert!(published_run(Path::new("/runs/20261122T183000Z")).is_none());
        // A run directory someone named like a partition is a run directory.
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("runs/host=h1/run=r7");
        std::fs::create_dir_all(&dir).expect("dir");
        assert!(published_run(&dir).is_some());
        std::fs::write(dir.join(crate::recording::MANIFEST_FILE), "{}").expect("manifest");
        assert!(published_run(&dir).is_none());
    }
}
