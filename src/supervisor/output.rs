//! Worker output: each stream is pumped on its own thread into the worker's log file, every
//! line timestamped on the run clock, and scanned for trial boundaries. The pump never stops
//! reading while the worker writes, so a worker is never blocked on a full pipe by us.

use super::lines::LineSplitter;
use super::log_file::LogFile;
use super::trials::{TrialBoundary, TrialParser};
use crate::clock::RunClock;
use crate::recording::{EndMemory, EndReader};
use std::io::Read;
use std::sync::{Arc, Mutex};

/// Lines past this are cut in the log; the harness holds at most this much per stream.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

pub type BoundarySink = Arc<dyn Fn(u32, Vec<TrialBoundary>) + Send + Sync>;
/// Where a worker's output pump says something worth a note in the recording.
pub type NoteSink = Arc<dyn Fn(u32, String) + Send + Sync>;

/// What both streams of one worker share.
pub struct WorkerOutput {
    pub worker: u32,
    pub clock: RunClock,
    pub log: Mutex<LogFile>,
    pub parser: Mutex<TrialParser>,
    pub on_boundaries: BoundarySink,
    pub on_note: NoteSink,
    /// The worker's main process, whose tree is read at each end line (none: not read).
    pub pid: Option<i32>,
    pub root: crate::probe::ProcRoot,
}

impl WorkerOutput {
    /// Reads `source` to its end. `stream` tags the log lines (`out`, `err`, `log`).
    pub fn pump(&self, mut source: impl Read, stream: &str) {
        let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match source.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let t_ns = self.clock.now().0;
            let mut found = Vec::new();
            {
                let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
                splitter.feed(&chunk[..n], |line| {
                    found.extend(self.line(&mut log, stream, t_ns, line.bytes, line.dropped_bytes))
                });
                // Before the log's write: the worker goes on with its next trial meanwhile.
                self.read_at_end(&mut found);
                let _ = log.flush();
            }
            if !found.is_empty() {
                (self.on_boundaries)(self.worker, found);
            }
        }
        let t_ns = self.clock.now().0;
        let mut found = Vec::new();
        {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            splitter.finish(|line| {
                found.extend(self.line(&mut log, stream, t_ns, line.bytes, line.dropped_bytes))
            });
            let _ = log.flush();
        }
        if !found.is_empty() {
            (self.on_boundaries)(self.worker, found);
        }
        // The stream's end: boundaries still waiting for the writer are sent now.
        (self.on_boundaries)(self.worker, Vec::new());
    }

    /// Reads the worker's tree at each end line the worker did not measure itself: the level
    /// it retained, before its next trial takes more (issue 36). The delay from the line's
    /// arrival to the read goes with it.
    fn read_at_end(&self, found: &mut [TrialBoundary]) {
        let Some(pid) = self.pid else {
            return;
        };
        for boundary in found.iter_mut() {
            if let TrialBoundary::End {
                t_ns,
                memory: memory @ None,
                ..
            } = boundary
            {
                let Some(cheap) = crate::probe::tree_cheap_now(&self.root, pid) else {
                    return;
                };
                *memory = Some(EndMemory {
                    anon_bytes: cheap.anon,
                    file_bytes: cheap.file,
                    shmem_bytes: cheap.shmem,
                    read_by: EndReader::Harness,
                    delay_ns: self.clock.now().0.saturating_sub(*t_ns),
                });
            }
        }
    }

    fn line(
        &self,
        log: &mut LogFile,
        stream: &str,
        t_ns: u64,
        bytes: &[u8],
        dropped: usize,
    ) -> Vec<TrialBoundary> {
        let text = String::from_utf8_lossy(bytes);
        let seconds = t_ns as f64 / 1e9;
        let was_cut = log.cut();
        let _ = if dropped > 0 {
            log.line(&format!(
                "{seconds:.6} {stream} {text} [memwarden: {dropped} more bytes cut]"
            ))
        } else {
            log.line(&format!("{seconds:.6} {stream} {text}"))
        };
        if log.cut() && !was_cut {
            (self.on_note)(self.worker, format!("worker {}'s output reached half of its log cap (--log-cap): its start is kept in logs/worker-{}.log and its newest lines in logs/worker-{}.tail.log and .tail.old.log; what lies between is not kept", self.worker, self.worker, self.worker));
        }
        self.parser
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .on_line(&text, t_ns)
    }
}
