//! Following a log file that another program appends to (`attach --log`), as a `Read` that
//! waits for more data until told to stop. A file truncated under us (log rotation by copy and
//! truncate) is read again from its start.

use super::StopRequest;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

pub struct Tail {
    file: File,
    position: u64,
    stop: Arc<StopRequest>,
}

impl Tail {
    /// Starts at the current end: lines written before the attach are not this run's.
    pub fn new(mut file: File, stop: Arc<StopRequest>) -> Self {
        let position = file.seek(SeekFrom::End(0)).unwrap_or(0);
        Self {
            file,
            position,
            stop,
        }
    }
}

impl Read for Tail {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.file.read(buf)?;
            if n > 0 {
                self.position += n as u64;
                return Ok(n);
            }
            if self.stop.requested() {
                return Ok(0);
            }
            if self.file.metadata().map(|m| m.len()).unwrap_or(0) < self.position {
                self.position = self.file.seek(SeekFrom::Start(0))?;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
