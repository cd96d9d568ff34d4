//! Reads what the tracers wrote (one JSON-lines file per Python process in the run's
//! `python-trace/`) as it grows, for the harness to record as events. Only whole lines are
//! taken; a line that does not parse is counted and skipped, never guessed at.

use crate::recording::{EventKind, PythonSites, TorchMemory};
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
    },
    Epoch {
        pid: i32,
        worker: Option<u32>,
    },
    Sites {
        worker: Option<u32>,
        #[serde(flatten)]
        report: PythonSites,
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
}

impl TraceRecord {
    /// The worker and the event to record; `None` for bookkeeping lines (epochs).
    pub fn into_event(self) -> Option<(Option<u32>, EventKind)> {
        match self {
            TraceRecord::Hello {
                pid,
                worker,
                python,
                tracemalloc,
            } => Some((
                worker,
                EventKind::PythonTracer {
                    pid,
                    python,
                    tracemalloc,
                },
            )),
            TraceRecord::Epoch { .. } => None,
            TraceRecord::Sites { worker, report } => {
                Some((worker, EventKind::PythonSites(Box::new(report))))
            }
            TraceRecord::Torch { worker, memory } => Some((worker, EventKind::TorchMemory(memory))),
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

#[derive(Debug)]
pub struct Ingest {
    dir: PathBuf,
    /// Per file, how far it has been read.
    read: BTreeMap<PathBuf, u64>,
    pub bad_lines: u64,
}

impl Ingest {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            read: BTreeMap::new(),
            bad_lines: 0,
        }
    }

    /// Every whole line written since the last poll, file by file.
    pub fn poll(&mut self) -> Vec<TraceRecord> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        for path in files {
            let offset = self.read.get(&path).copied().unwrap_or(0);
            let Some(bytes) = read_from(&path, offset) else {
                continue;
            };
            // Only up to the last newline: the rest is a line still being written.
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in bytes[..whole].split(|&b| b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<TraceRecord>(line) {
                    Ok(record) => out.push(record),
                    Err(_) => self.bad_lines += 1,
                }
            }
            self.read.insert(path, offset + whole as u64);
        }
        out
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
        let mut ingest = Ingest::new(&dir);
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
}

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
            ingest: Ingest::new(dir),
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
                    format!("worker {w}: no Python process started the allocation tracer (not Python, or its PYTHONPATH was replaced), so no lines are named for it"),
                )
            })
            .collect();
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
