//! FORMAT.md's column lists held against the tables compaction writes: a column added,
//! renamed or dropped here fails until FORMAT.md says so too.
use super::*;
use crate::recording::{
    Boundary, GpuDeviceSample, Mapping, ProcessSample, SystemSample, WorkerCgroupSample,
};

const FORMAT: &str = include_str!("../../../FORMAT.md");

/// The backticked names FORMAT.md gives for `file` (`samples-N.parquet`, ...): from its
/// name up to the next table's name, in the paragraph or table row that holds it.
fn documented(file: &str) -> BTreeSet<String> {
    let tables = [
        "samples-N",
        "system-N",
        "cgroups-N",
        "smaps-N",
        "gpu-NNNNNN",
    ];
    // The segment tables are described in their own section; `gpu` in the files table.
    let section = FORMAT
        .split("\n## ")
        .find(|s| s.starts_with("Parquet tables"))
        .expect("FORMAT.md has a section on the Parquet tables");
    let place = if file.starts_with("gpu") {
        FORMAT
    } else {
        section
    };
    let at = place
        .find(&format!("`{file}.parquet`"))
        .unwrap_or_else(|| panic!("FORMAT.md names {file}.parquet"));
    let text = &place[at + file.len() + 10..];
    let end = tables
        .iter()
        .filter_map(|t| text.find(&format!("`{t}.parquet`")))
        .chain(text.find("\n\n"))
        .chain(text.find("\n|"))
        .min()
        .unwrap_or(text.len());
    text[..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn columns(frame: &DataFrame) -> BTreeSet<String> {
    frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect()
}

fn tick() -> Tick {
    Tick {
        t_ns: 1,
        wall_ns: 2,
        system: SystemSample::default(),
        processes: vec![ProcessSample::default()],
        gpus: vec![GpuDeviceSample::default()],
        cgroups: vec![WorkerCgroupSample::default()],
    }
}

#[test]
fn format_md_lists_every_column_of_every_recorded_table() {
    let ticks = [tick()];
    let snapshot = SmapsSnapshot {
        t_ns: 1,
        worker: 0,
        pid: 1,
        trial: None,
        boundary: Boundary::TrialStart,
        mappings: vec![Mapping::default()],
    };
    let tables = [
        ("samples-N", samples_frame(&ticks)),
        ("system-N", system_frame(&ticks)),
        ("cgroups-N", cgroups_frame(&ticks)),
        ("smaps-N", smaps_frame(&[snapshot])),
        ("gpu-NNNNNN", gpu_frame(&ticks)),
    ];
    let mut differences = Vec::new();
    for (file, frame) in tables {
        let written = columns(&frame.expect("bug: frame"));
        let said = documented(file);
        let unsaid: Vec<_> = written.difference(&said).collect();
        let unwritten: Vec<_> = said.difference(&written).collect();
        if !unsaid.is_empty() || !unwritten.is_empty() {
            differences.push(format!(
                "{file}.parquet: written but not in FORMAT.md {unsaid:?}; in FORMAT.md but not written {unwritten:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// The tables are built as the constants list them, in order: a reader selecting by those
/// lists gets every column it names.
#[test]
fn every_table_writes_the_columns_its_constant_lists() {
    let ticks = [tick()];
    let names = |frame: PolarsResult<DataFrame>| -> Vec<String> {
        frame
            .expect("bug: frame")
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect()
    };
    let trial = Trial {
        worker: 0,
        trial: "0".into(),
        start_ns: None,
        end_ns: None,
        state: "complete".into(),
        value: None,
        params: Default::default(),
        end_memory: None,
    };
    let tables: [(&[&str], Vec<String>); 7] = [
        (SAMPLES, names(samples_frame(&ticks))),
        (SYSTEM, names(system_frame(&ticks))),
        (CGROUPS, names(cgroups_frame(&ticks))),
        (GPUS, names(gpu_frame(&ticks))),
        (SMAPS, names(smaps_frame(&[]))),
        (EVENTS, names(events_frame(&[]))),
        (TRIALS, names(trials_frame(&[trial]))),
    ];
    for (listed, written) in tables {
        assert_eq!(listed, written.as_slice());
    }
    assert_eq!(SITES, names(sites_frame(&[])).as_slice());
}

/// The JSON keys a record serializes to, every optional field present.
fn keys(record: impl serde::Serialize) -> BTreeSet<String> {
    match serde_json::to_value(record).expect("bug: a record serializes") {
        serde_json::Value::Object(map) => map.keys().cloned().collect(),
        _ => unreachable!("bug: a record is an object"),
    }
}

/// One spelling per quantity: a column of the system, cgroups, GPU and samples tables is the
/// JSON key of the record field it holds (the raw segments' spelling), beside the tick's own
/// `t_ns` and `wall_ns`.
#[test]
fn a_column_is_spelled_as_the_field_it_holds() {
    let some = Some(1);
    let system = SystemSample {
        psi_some_avg10: Some(0.0),
        psi_full_avg10: Some(0.0),
        psi_some_total_us: some,
        psi_full_total_us: some,
        cgroup_limit_bytes: some,
        cgroup_usage_bytes: some,
        cgroup_working_set_bytes: some,
        cgroup_oom: some,
        cgroup_oom_kill: some,
        cgroup_failcnt: some,
        cgroup_psi_full_avg10: Some(0.0),
        shm_bytes: some,
        shm_files: some,
        outside_trees_bytes: some,
        ..Default::default()
    };
    let cgroup = WorkerCgroupSample {
        limit_bytes: some,
        ..Default::default()
    };
    let tick_keys = |fields: BTreeSet<String>, extra: &[&str]| -> BTreeSet<String> {
        fields
            .into_iter()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    assert_eq!(listed(SYSTEM), tick_keys(keys(system), &[T_NS, WALL_NS]));
    assert_eq!(listed(CGROUPS), tick_keys(keys(cgroup), &[T_NS]));
    assert_eq!(
        listed(GPUS),
        tick_keys(keys(GpuDeviceSample::default()), &[T_NS])
    );
    assert_eq!(
        listed(SAMPLES),
        tick_keys(keys(ProcessSample::default()), &[T_NS])
    );
}

/// A segment compacted by format 1 is read under today's names, per table: `anon` is renamed
/// in the cgroups table and kept in the samples table.
#[test]
fn format_1_columns_are_read_under_todays_names() {
    let old = |names: &[&str]| {
        DataFrame::new(
            1,
            names
                .iter()
                .map(|n| Column::new((*n).into(), [1u64]))
                .collect(),
        )
        .expect("bug: frame")
    };
    let mut system = old(&["t_ns", "mem_available", "outside_trees"]);
    crate::recording::columns::rename_format_1("system", &mut system).expect("bug: rename");
    assert_eq!(
        columns(&system),
        listed(&[T_NS, MEM_AVAILABLE_BYTES, OUTSIDE_TREES_BYTES])
    );
    let mut cgroups = old(&["t_ns", "anon", "limit"]);
    crate::recording::columns::rename_format_1("cgroups", &mut cgroups).expect("bug: rename");
    assert_eq!(columns(&cgroups), listed(&[T_NS, ANON_BYTES, LIMIT_BYTES]));
    let mut samples = old(&["t_ns", "anon"]);
    crate::recording::columns::rename_format_1("samples", &mut samples).expect("bug: rename");
    assert_eq!(columns(&samples), listed(&[T_NS, ANON]));
    // Asked for by today's name, a column is found under its old one.
    assert_eq!(
        crate::recording::columns::format_1_name("gpu", USED_BYTES),
        Some("used")
    );
}

fn listed(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}
