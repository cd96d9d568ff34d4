//! Reads a recording as the harness writes it: the new complete records of `events.log` and of
//! the newest sample segment's log, from where the last read stopped. It only reads: any number
//! of tails can follow a run and come and go. A segment that was compacted (its log removed)
//! before its end was read is left for the next; only the newest segment is read on opening,
//! so a tail joined late sees the events since the start and the samples of the last segment.

use crate::recording::{decode_all, Event, Stream, Tick};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One append-only log read from an offset.
#[derive(Debug)]
struct Follow {
    path: PathBuf,
    offset: u64,
}

impl Follow {
    fn new(path: PathBuf) -> Self {
        Self { path, offset: 0 }
    }

    /// What was appended since the last read; the offset moves past complete lines only.
    fn read_new(&mut self) -> Vec<u8> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return Vec::new();
        }
        // A line still being written is left for the next read (decoding ignores it too).
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        bytes
    }
}

#[derive(Debug)]
pub struct Tail {
    dir: PathBuf,
    events: Follow,
    samples: Option<(u32, Follow)>,
}

impl Tail {
    pub fn open(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            events: Follow::new(crate::recording::stream_path(dir, Stream::Events, 0, "log")),
            samples: None,
        }
    }

    /// What was appended since the last call: events and ticks, each in the order written.
    pub fn read(&mut self) -> (Vec<Event>, Vec<Tick>) {
        let (events, _) = decode_all::<Event>(&self.events.read_new());
        let mut ticks = Vec::new();
        let newest = newest_log_segment(&self.dir);
        if let Some((index, follow)) = self.samples.as_mut() {
            // The segment's last lines, before moving on to a newer one.
            ticks.extend(decode_all::<Tick>(&follow.read_new()).0);
            if newest.is_some_and(|n| n > *index) {
                self.samples = None;
            }
        }
        if self.samples.is_none() {
            if let Some(index) = newest {
                let path = crate::recording::stream_path(&self.dir, Stream::Samples, index, "log");
                let mut follow = Follow::new(path);
                ticks.extend(decode_all::<Tick>(&follow.read_new()).0);
                self.samples = Some((index, follow));
            }
        }
        (events, ticks)
    }
}

/// The highest index of a `samples-N.log` in `dir`.
fn newest_log_segment(dir: &Path) -> Option<u32> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let name = name.to_str()?;
            name.strip_prefix("samples-")?
                .strip_suffix(".log")?
                .parse::<u32>()
                .ok()
        })
        .max()
}
