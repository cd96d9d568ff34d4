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
