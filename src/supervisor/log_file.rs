//! A worker's log file with a size cap: a worker that prints without end (2.4 GB in 10 s was
//! seen) must not fill the disk the recording lives on. The first half of the cap is kept in
//! `worker-N.log` (how the run started, the first trials), then one line says where the log was
//! cut; the newest lines go on in `worker-N.tail.log`, which at a quarter of the cap becomes
//! `worker-N.tail.old.log` (replacing the previous one) and starts again. So the start and at
//! least the last quarter of the cap are always kept, and never more than the cap.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The default cap per worker.
pub const DEFAULT_CAP: u64 = 256 << 20;

pub struct LogFile {
    head: BufWriter<File>,
    path: PathBuf,
    cap: u64,
    /// Bytes in the file being written (the head, then the current tail).
    written: u64,
    tail: Option<BufWriter<File>>,
    /// Bytes that went into tail files since the cut, kept or not.
    pub after_cut: u64,
}

impl LogFile {
    pub fn create(path: &Path, cap: u64) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            head: BufWriter::new(file),
            path: path.to_path_buf(),
            cap: cap.max(4096),
            written,
            tail: None,
            after_cut: 0,
        })
    }

    /// Whether the cap was reached (the middle of the output is not kept).
    pub fn cut(&self) -> bool {
        self.tail.is_some()
    }

    fn tail_path(&self, old: bool) -> PathBuf {
        let stem = self.path.with_extension("");
        PathBuf::from(format!(
            "{}.tail{}.log",
            stem.display(),
            if old { ".old" } else { "" }
        ))
    }

    /// Writes one line (with its newline); errors are the disk's and are left to the caller.
    pub fn line(&mut self, text: &str) -> std::io::Result<()> {
        let bytes = text.len() as u64 + 1;
        if self.tail.is_none() && self.written + bytes > self.cap / 2 {
            writeln!(
                self.head,
                "[memwarden: this log is cut here at {} (half of the {} cap); the newest lines are in {}]",
                crate::units::size(self.written as f64),
                crate::units::size(self.cap as f64),
                self.tail_path(false).display()
            )?;
            self.head.flush()?;
            self.tail = Some(BufWriter::new(File::create(self.tail_path(false))?));
            self.written = 0;
        }
        if self.tail.is_none() {
            self.written += bytes;
            return writeln!(self.head, "{text}");
        }
        if self.written + bytes > self.cap / 4 {
            let (current, old) = (self.tail_path(false), self.tail_path(true));
            if let Some(tail) = self.tail.as_mut() {
                tail.flush()?;
            }
            std::fs::rename(&current, old)?;
            self.tail = Some(BufWriter::new(File::create(current)?));
            self.written = 0;
        }
        let tail = self.tail.as_mut().expect("bug: the tail was opened above");
        self.written += bytes;
        self.after_cut += bytes;
        writeln!(tail, "{text}")
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.head.flush()?;
        if let Some(tail) = self.tail.as_mut() {
            tail.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_and_the_end_are_kept_and_the_total_stays_under_the_cap() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("worker-0.log");
        let mut log = LogFile::create(&path, 64 * 1024).expect("created");
        for i in 0..20_000 {
            log.line(&format!("line {i:06}")).expect("written");
        }
        log.flush().expect("flushed");
        let head = std::fs::read_to_string(&path).expect("head");
        let tail = std::fs::read_to_string(dir.path().join("worker-0.tail.log")).expect("tail");
        let old = std::fs::read_to_string(dir.path().join("worker-0.tail.old.log")).expect("old");
        assert!(head.starts_with("line 000000\n"));
        assert!(head.contains("[memwarden: this log is cut here"));
        assert!(tail.ends_with("line 019999\n"));
        let total = head.len() + tail.len() + old.len();
        assert!(total <= 64 * 1024 + 200, "{total} bytes kept");
        assert!(
            old.len() + tail.len() >= 16 * 1024,
            "at least a quarter of the cap is the end"
        );
        assert!(log.cut());
    }
}
