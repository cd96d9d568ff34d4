//! Reads what the tracers wrote (one JSON-lines file per Python process in the run's
//! `python-trace/`) as it grows, for the harness to record as events. Only whole lines are
//! taken; a line that does not parse is counted and skipped, never guessed at.

use crate::recording::{EventKind, PythonSites, PythonTensors, TorchMemory};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// At most this much of one file per poll: a runaway file cannot stall the harness's loop.
const MAX_READ: u64 = 16 << 20;

/// One line of a tracer's file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceRecord {
    Hello {
        pid: i32,
        worker: Option<u32>,
        #[serde(default)]
        python: Option<String>,
        tracemalloc: bool,
        #[serde(default)]
        native: Option<String>,
    },
    Epoch {
        pid: i32,
        worker: Option<u32>,
    },
    /// The next `trials` trials are diagnosed (traced in full).
    Diagnose {
        pid: i32,
        worker: Option<u32>,
        trial: String,
        trials: u32,
        why: String,
    },
    Sites {
        worker: Option<u32>,
        #[serde(flatten)]
        report: PythonSites,
    },
    Tensors {
        worker: Option<u32>,
        #[serde(flatten)]
        census: PythonTensors,
    },
    Error {
        pid: i32,
        worker: Option<u32>,
        error: String,
    },
    Torch {
        worker: Option<u32>,
        #[serde(flatten)]
        memory: TorchMemory,
    },
    /// Something the tracer noticed and went on after.
    Note {
        pid: i32,
        worker: Option<u32>,
        note: String,
    },
}

impl TraceRecord {
    /// The process that wrote the record.
    pub fn pid(&self) -> i32 {
        match self {
            TraceRecord::Hello { pid, .. }
            | TraceRecord::Epoch { pid, .. }
            | TraceRecord::Diagnose { pid, .. }
            | TraceRecord::Error { pid, .. }
            | TraceRecord::Note { pid, .. } => *pid,
            TraceRecord::Sites { report, .. } => report.pid,
            TraceRecord::Tensors { census, .. } => census.pid,
            TraceRecord::Torch { memory, .. } => memory.pid,
        }
    }

    /// The worker and the event to record; `None` for bookkeeping lines (epochs).
    pub fn into_event(self) -> Option<(Option<u32>, EventKind)> {
        match self {
            TraceRecord::Hello {
                pid,
                worker,
                python,
                tracemalloc,
                native,
            } => Some((
                worker,
                EventKind::PythonTracer {
                    pid,
                    python,
                    tracemalloc,
                    native,
                },
            )),
            TraceRecord::Epoch { .. } => None,
            TraceRecord::Diagnose {
                pid,
                worker,
                trial,
                trials,
                why,
            } => Some((
                worker,
                EventKind::PythonDiagnose {
                    pid,
                    trial,
                    trials,
                    why,
                },
            )),
            TraceRecord::Sites { worker, report } => {
                Some((worker, EventKind::PythonSites(Box::new(report))))
            }
            TraceRecord::Torch { worker, memory } => Some((worker, EventKind::TorchMemory(memory))),
            TraceRecord::Tensors { worker, census } => {
                Some((worker, EventKind::PythonTensors(Box::new(census))))
            }
            TraceRecord::Note { pid, worker, note } => Some((
                worker,
                EventKind::Note {
                    message: format!("the Python tracer in pid {pid}: {note}"),
                },
            )),
            TraceRecord::Error { pid, worker, error } => Some((
                worker,
                EventKind::Note {
                    message: format!(
                        "the Python tracer in pid {pid} stopped (the worker went on): {error}"
                    ),
                },
            )),
        }
    }
}

/// Whether a tracer's process may report for a worker: a live process whose ancestors include
/// this memwarden (every process of a worker's tree does, orphans included, since memwarden is
/// their subreaper); `None` when it has ended and cannot be checked.
pub type Lineage = fn(i32) -> Option<bool>;

/// Walks `pid`'s parents up to memwarden or to init.
pub fn descends_from_us(pid: i32) -> Option<bool> {
    let us = std::process::id() as i32;
    let mut current = pid;
    for _ in 0..4096 {
        if current == us {
            return Some(true);
        }
        if current <= 1 {
            return Some(false);
        }
        current = procfs::process::Process::new(current)
            .and_then(|p| p.stat())
            .ok()
            .map(|stat| stat.ppid)?;
    }
    Some(false)
}

#[derive(Debug)]
pub struct Ingest {
    dir: PathBuf,
    /// Per file, how far it has been read, and whether a too long line is being skipped.
    read: BTreeMap<PathBuf, (u64, bool)>,
    lineage: Lineage,
    /// Per file, whether its pid was found in a worker's tree (checked once).
    checked: BTreeMap<PathBuf, bool>,
    pub bad_lines: u64,
    /// Lines longer than [`MAX_READ`], skipped to their end.
    pub long_lines: u64,
    /// Lines whose pid is not the one their file is named for.
    pub foreign_lines: u64,
    /// Files of processes outside every worker's tree, dropped whole.
    pub outsiders: Vec<i32>,
    /// Files of processes that had ended before they could be checked (a short run ends
    /// before the first poll), kept: the tracer's file of a worker that lived under 0.5 s.
    pub unchecked: u64,
}

impl Ingest {
    pub fn new(dir: &Path, lineage: Lineage) -> Self {
        Self {
            dir: dir.to_path_buf(),
            read: BTreeMap::new(),
            lineage,
            checked: BTreeMap::new(),
            bad_lines: 0,
            long_lines: 0,
            foreign_lines: 0,
            outsiders: Vec::new(),
            unchecked: 0,
        }
    }

    /// Every whole line written since the last poll, file by file.
    pub fn poll(&mut self) -> Vec<TraceRecord> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        let mut files: Vec<(PathBuf, i32)> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .filter_map(|p| {
                let pid = p.file_stem()?.to_str()?.parse().ok()?;
                Some((p, pid))
            })
            .collect();
        files.sort();
        for (path, pid) in files {
            if !self.belongs(&path, pid) {
                continue;
            }
            let (offset, skipping) = self.read.get(&path).copied().unwrap_or((0, false));
            let Some(bytes) = read_from(&path, offset) else {
                continue;
            };
            let mut start = 0;
            if skipping {
                // The rest of a line too long to take: up to its newline, if it came.
                match bytes.iter().position(|&b| b == b'\n') {
                    Some(i) => start = i + 1,
                    None => {
                        self.read.insert(path, (offset + bytes.len() as u64, true));
                        continue;
                    }
                }
            }
            // Only up to the last newline: the rest is a line still being written, unless it
            // already fills a whole read, which no record does: that line is skipped.
            let whole = bytes
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
                .max(start);
            let long = whole == start && bytes.len() as u64 - start as u64 >= MAX_READ / 2;
            for line in bytes[start..whole].split(|&b| b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<TraceRecord>(line) {
                    Ok(record) if record.pid() == pid => out.push(record),
                    Ok(_) => self.foreign_lines += 1,
                    Err(_) => self.bad_lines += 1,
                }
            }
            if long {
                self.long_lines += 1;
                self.read.insert(path, (offset + bytes.len() as u64, true));
            } else {
                self.read.insert(path, (offset + whole as u64, false));
            }
        }
        out
    }

    /// Whether `pid`'s file is taken: checked at its first sight.
    fn belongs(&mut self, path: &Path, pid: i32) -> bool {
        if let Some(&ok) = self.checked.get(path) {
            return ok;
        }
        let ok = match (self.lineage)(pid) {
            Some(true) => true,
            Some(false) => {
                self.outsiders.push(pid);
                false
            }
            None => {
                self.unchecked += 1;
                true
            }
        };
        self.checked.insert(path.to_path_buf(), ok);
        ok
    }
}

fn read_from(path: &Path, offset: u64) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_READ).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_only_and_bad_ones_counted() {
        let dir = std::env::temp_dir().join(format!("memwarden-ingest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("41.jsonl");
        let hello = r#"{"kind":"hello","pid":41,"worker":0,"python":"3.11.7","tracemalloc":true}"#;
        std::fs::write(&file, format!("{hello}\nnot json\n{{\"kind\":\"sit")).expect("write");
        let mut ingest = Ingest::new(&dir, |_| Some(true));
        let first = ingest.poll();
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(ingest.bad_lines, 1);
        let sites = r#"es","pid":41,"worker":0,"trial":"3","epoch":0,"traced_bytes":10,"cost_ms":1.5,"sites":[]}"#;
        let mut text = std::fs::read_to_string(&file).expect("read");
        text.push_str(sites);
        text.push('\n');
        std::fs::write(&file, text).expect("append");
        let second = ingest.poll();
        assert!(
            matches!(&second[..], [TraceRecord::Sites { report, .. }] if report.trial == "3"),
            "{second:?}"
        );
        assert!(ingest.poll().is_empty(), "nothing is read twice");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn hello(pid: i32) -> String {
        format!(r#"{{"kind":"hello","pid":{pid},"worker":0,"python":"3.11.7","tracemalloc":true}}"#)
    }

    #[test]
    fn a_line_longer_than_a_read_is_skipped_to_its_end_and_reading_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("41.jsonl");
        let long = "x".repeat(MAX_READ as usize + 1000);
        std::fs::write(&file, format!("{}\n{long}", hello(41))).expect("write");
        let mut ingest = Ingest::new(dir.path(), |_| Some(true));
        assert_eq!(ingest.poll().len(), 1);
        assert!(ingest.poll().is_empty());
        assert_eq!(ingest.long_lines, 1);
        let mut text = std::fs::read_to_string(&file).expect("read");
        text.push_str(&format!("yyy\n{}\n", hello(41)));
        std::fs::write(&file, text).expect("append");
        assert_eq!(
            ingest.poll().len(),
            1,
            "the record after the long line is read"
        );
        assert_eq!(
            ingest.bad_lines, 0,
            "the long line's tail is not a bad line"
        );
    }

    #[test]
    fn records_of_another_pid_or_of_a_process_outside_the_workers_are_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("41.jsonl"),
            format!("{}\n{}\n", hello(41), hello(7)),
        )
        .expect("write");
        std::fs::write(dir.path().join("99.jsonl"), format!("{}\n", hello(99))).expect("write");
        let mut ingest = Ingest::new(dir.path(), |pid| Some(pid != 99));
        let records = ingest.poll();
        assert_eq!(
            records.iter().map(TraceRecord::pid).collect::<Vec<_>>(),
            [41]
        );
        assert_eq!(ingest.foreign_lines, 1);
        assert_eq!(ingest.outsiders, [99]);
    }
}

/// The closing note's words for a worker none of whose processes started the tracer: the
/// analysis finds the note by them, to show it among the run's notes.
pub const NO_TRACER: &str = "no Python process started the allocation tracer";

/// The harness's side: drains the tracers' files into the recording, and at the end says which
/// workers no traced Python process reported for.
#[derive(Debug)]
pub struct Feed {
    ingest: Ingest,
    workers: u32,
    reported: std::collections::BTreeSet<u32>,
    last_poll: Option<std::time::Instant>,
}

impl Feed {
    pub fn new(dir: &Path, workers: u32) -> Self {
        Self {
            ingest: Ingest::new(dir, descends_from_us),
            workers,
            reported: Default::default(),
            last_poll: None,
        }
    }

    /// Records what was written since the last call, at most twice a second unless `now`.
    pub fn pump(
        &mut self,
        records: &crate::recording::RecordSender,
        clock: &crate::clock::RunClock,
        force: bool,
    ) {
        let due = self
            .last_poll
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_millis(500));
        if !due && !force {
            return;
        }
        self.last_poll = Some(std::time::Instant::now());
        for record in self.ingest.poll() {
            if let Some((worker, kind)) = record.into_event() {
                if let (Some(w), EventKind::PythonTracer { .. }) = (worker, &kind) {
                    self.reported.insert(w);
                }
                records.event_now(clock, worker, kind);
            }
        }
    }

    /// Notes for the end of the run: workers with no traced Python process, unreadable lines.
    pub fn closing_notes(&self) -> Vec<(Option<u32>, String)> {
        let mut notes: Vec<(Option<u32>, String)> = (0..self.workers)
            .filter(|w| !self.reported.contains(w))
            .map(|w| {
                (
                    Some(w),
                    format!("worker {w}: {NO_TRACER} (not Python, its PYTHONPATH replaced, or the tracer failed to start: its log says why), so no lines are named for it"),
                )
            })
            .collect();
        let ingest = &self.ingest;
        if !ingest.outsiders.is_empty() {
            notes.push((
                None,
                format!(
                    "ignored the Python tracer's reports of pid(s) {:?}: not in any worker's process tree",
                    ingest.outsiders
                ),
            ));
        }
        if ingest.long_lines > 0 || ingest.foreign_lines > 0 {
            notes.push((
                None,
                format!(
                    "skipped {} line(s) of the Python tracer's reports longer than {} and {} written for another pid than their file's",
                    ingest.long_lines,
                    crate::units::size(MAX_READ as f64 / 2.0),
                    ingest.foreign_lines
                ),
            ));
        }
        if self.ingest.bad_lines > 0 {
            notes.push((
                None,
                format!(
                    "skipped {} unreadable line(s) of the Python tracer's reports",
                    self.ingest.bad_lines
                ),
            ));
        }
        notes
    }
}
