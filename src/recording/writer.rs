//! The writer thread: the only code that appends to a run directory's streams.
//!
//! Producers hand records over a bounded channel. Samples use `try_send`, so a slow disk costs
//! samples (counted, and reported as an event), never a late tick. The writer wakes at most
//! every `batch_interval` (100 ms) and writes each batch out at once (a SIGKILL of the harness
//! then loses at most that much of the newest records), and each stream is
//! fdatasync'ed at most every `sync_interval` (a power loss loses at most that much). Sample and
//! smaps streams rotate into segments; a finished segment goes to the compactor. An observer
//! (the live view's status) sees each batch on this thread, never on the sampler's.

use super::events::{Event, EventKind};
use super::frame;
use super::schema::{SmapsSnapshot, Tick};
use super::{stream_path, RecordingError, Stream};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub enum Record {
    Tick(Tick),
    Event(Event),
    Smaps(SmapsSnapshot),
}

/// What the channel carries: records, then one `Close`. Closing by message, not by the last
/// sender going away, lets the harness finish while a stray thread still holds a sender.
/// (`Close` is sent once per run, so its slack in the channel's slots is nothing worth a box
/// per record.)
#[allow(clippy::large_enum_variant)]
enum Message {
    Record(Record),
    Close,
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// How long a sample segment stays open before it is closed and compacted.
    pub segment_duration: Duration,
    /// Longest time written data may stay without fdatasync.
    pub sync_interval: Duration,
    /// Records the channel holds before samples are dropped.
    pub channel_capacity: usize,
    /// Shortest time between two wake-ups of the writer: at 100 Hz a wake-up per tick cost the
    /// sampler a futex call and the writer a context switch and a write each time. A SIGKILL
    /// of the harness can lose this much more of the newest records.
    pub batch_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            segment_duration: Duration::from_secs(600),
            sync_interval: Duration::from_secs(1),
            channel_capacity: 4096,
            batch_interval: Duration::from_millis(100),
        }
    }
}

/// Sees every batch of records before it is written (the live status folds them).
pub type Observer = Box<dyn FnMut(&[Record]) + Send>;

/// A cheap, cloneable handle for producers.
#[derive(Clone)]
pub struct RecordSender {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl RecordSender {
    /// Never blocks: a full channel drops the tick and counts it.
    pub fn send_tick(&self, tick: Tick) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Message::Record(Record::Tick(tick))) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events are rare and must not be lost: waits for room. Fails only after the writer ended.
    pub fn send(&self, record: Record) {
        let _ = self.tx.send(Message::Record(record));
    }

    pub fn event(&self, event: Event) {
        self.send(Record::Event(event));
    }

    /// Sends an event if the channel has room now; else hands it back (a producer that must
    /// not wait, such as a worker's output pump, keeps it for later).
    pub fn try_event(&self, event: Event) -> Option<Event> {
        match self.tx.try_send(Message::Record(Record::Event(event))) {
            Err(TrySendError::Full(Message::Record(Record::Event(event)))) => Some(event),
            _ => None,
        }
    }

    /// A sender over a channel of `capacity` that nothing reads, for tests of producers that
    /// must not block.
    #[doc(hidden)]
    pub fn unread(capacity: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel(capacity);
        std::mem::forget(rx);
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// An event that happens now on the run's clock.
    pub fn event_now(&self, clock: &crate::clock::RunClock, worker: Option<u32>, kind: EventKind) {
        let (t_ns, wall_ns) = clock.now();
        self.event(Event {
            t_ns,
            wall_ns,
            worker,
            kind,
        });
    }
}

pub struct RecordingWriter {
    sender: RecordSender,
    handle: JoinHandle<Result<WriterStats, RecordingError>>,
}

#[derive(Debug, Default, Clone)]
pub struct WriterStats {
    pub ticks: u64,
    pub events: u64,
    pub snapshots: u64,
    pub dropped_ticks: u64,
    /// Segments closed during the run (each was handed to the compactor).
    pub closed_segments: Vec<PathBuf>,
    /// Segments still open at the end (to compact once the run is over).
    pub open_segments: Vec<PathBuf>,
}

impl RecordingWriter {
    /// `on_segment_closed` receives each finished segment (used to compact it off this thread);
    /// `observer` sees each batch of records.
    pub fn start(
        dir: &Path,
        config: WriterConfig,
        on_segment_closed: Box<dyn FnMut(PathBuf) + Send>,
        observer: Option<Observer>,
    ) -> Result<Self, RecordingError> {
        let (tx, rx) = mpsc::sync_channel(config.channel_capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut state = WriterState::open(dir, config, dropped.clone(), on_segment_closed)?;
        state.observer = observer;
        let handle = std::thread::Builder::new()
            .name("memwarden-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|source| RecordingError::Io {
                path: dir.to_path_buf(),
                cause: source,
            })?;
        Ok(Self {
            sender: RecordSender { tx, dropped },
            handle,
        })
    }

    pub fn sender(&self) -> RecordSender {
        self.sender.clone()
    }

    /// Writes and syncs every record queued so far and ends the writer. Records sent later are
    /// ignored.
    pub fn finish(self) -> Result<WriterStats, RecordingError> {
        let _ = self.sender.tx.send(Message::Close);
        self.handle
            .join()
            .unwrap_or(Err(RecordingError::WriterPanicked))
    }
}

struct SegmentFile {
    stream: Stream,
    index: u32,
    path: PathBuf,
    file: File,
    opened: Instant,
    unsynced: bool,
}

impl SegmentFile {
    fn open(dir: &Path, stream: Stream, index: u32) -> Result<Self, RecordingError> {
        let path = stream_path(dir, stream, index, "log");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| RecordingError::Io {
                path: path.clone(),
                cause: source,
            })?;
        Ok(Self {
            stream,
            index,
            path,
            file,
            opened: Instant::now(),
            unsynced: false,
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), RecordingError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.unsynced = true;
        self.file
            .write_all(bytes)
            .map_err(|source| RecordingError::Io {
                path: self.path.clone(),
                cause: source,
            })
    }

    fn sync(&mut self) -> Result<(), RecordingError> {
        if self.unsynced {
            self.file.sync_data().map_err(|source| RecordingError::Io {
                path: self.path.clone(),
                cause: source,
            })?;
            self.unsynced = false;
        }
        Ok(())
    }
}

struct WriterState {
    dir: PathBuf,
    config: WriterConfig,
    dropped: Arc<AtomicU64>,
    dropped_reported: u64,
    samples: SegmentFile,
    smaps: SegmentFile,
    events: SegmentFile,
    buffers: [Vec<u8>; 3],
    last_sync: Instant,
    last_t: (u64, u64),
    stats: WriterStats,
    on_segment_closed: Box<dyn FnMut(PathBuf) + Send>,
    observer: Option<Observer>,
}

impl WriterState {
    fn open(
        dir: &Path,
        config: WriterConfig,
        dropped: Arc<AtomicU64>,
        on_segment_closed: Box<dyn FnMut(PathBuf) + Send>,
    ) -> Result<Self, RecordingError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            samples: SegmentFile::open(dir, Stream::Samples, 1)?,
            smaps: SegmentFile::open(dir, Stream::Smaps, 1)?,
            events: SegmentFile::open(dir, Stream::Events, 0)?,
            config,
            dropped,
            dropped_reported: 0,
            buffers: Default::default(),
            last_sync: Instant::now(),
            last_t: (0, 0),
            stats: WriterStats::default(),
            on_segment_closed,
            observer: None,
        })
    }

    fn run(&mut self, rx: Receiver<Message>) -> Result<WriterStats, RecordingError> {
        let wait = self.config.sync_interval.min(Duration::from_millis(250));
        let mut closing = false;
        while !closing {
            let first = match rx.recv_timeout(wait) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let woke = Instant::now();
            // Drain what is queued so one write covers a burst.
            let mut batch = Vec::new();
            for message in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match message {
                    Message::Record(record) => batch.push(record),
                    Message::Close => {
                        closing = true;
                        break;
                    }
                }
            }
            // A burst (a worker's marker flood) is drained at the disk's pace, not a batch per
            // interval: the channel was half full or more.
            let burst = batch.len() >= self.config.channel_capacity / 2;
            if let Some(observe) = self.observer.as_mut().filter(|_| !batch.is_empty()) {
                observe(&batch);
            }
            for record in batch {
                self.encode(record);
            }
            self.report_drops();
            self.write_out()?;
            self.rotate_if_due()?;
            if self.last_sync.elapsed() >= self.config.sync_interval {
                self.sync_all()?;
            }
            if !closing && !burst {
                // What arrives meanwhile waits in the channel (its senders never block).
                std::thread::sleep(self.config.batch_interval.saturating_sub(woke.elapsed()));
            }
        }
        self.report_drops();
        self.write_out()?;
        self.sync_all()?;
        self.stats.dropped_ticks = self.dropped.load(Ordering::Relaxed);
        self.stats.open_segments = vec![self.samples.path.clone(), self.smaps.path.clone()];
        Ok(std::mem::take(&mut self.stats))
    }

    fn encode(&mut self, record: Record) {
        let (slot, result) = match &record {
            Record::Tick(tick) => {
                self.stats.ticks += 1;
                self.last_t = (tick.t_ns, tick.wall_ns);
                (0, frame::encode(tick, &mut self.buffers[0]))
            }
            Record::Smaps(snapshot) => {
                self.stats.snapshots += 1;
                (1, frame::encode(snapshot, &mut self.buffers[1]))
            }
            Record::Event(event) => {
                self.stats.events += 1;
                (2, frame::encode(event, &mut self.buffers[2]))
            }
        };
        // Our own plain types always serialize; a failure here would be a bug, not bad input.
        if let Err(error) = result {
            debug_assert!(false, "bug: record failed to serialize: {error}");
            self.buffers[slot].clear();
        }
    }

    fn report_drops(&mut self) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.dropped_reported {
            let event = Event {
                t_ns: self.last_t.0,
                wall_ns: self.last_t.1,
                worker: None,
                kind: EventKind::SamplesDropped {
                    count: dropped - self.dropped_reported,
                },
            };
            self.dropped_reported = dropped;
            self.encode(Record::Event(event));
        }
    }

    fn write_out(&mut self) -> Result<(), RecordingError> {
        let [samples, smaps, events] = &mut self.buffers;
        self.samples.append(samples)?;
        self.smaps.append(smaps)?;
        self.events.append(events)?;
        samples.clear();
        smaps.clear();
        events.clear();
        Ok(())
    }

    fn sync_all(&mut self) -> Result<(), RecordingError> {
        self.samples.sync()?;
        self.smaps.sync()?;
        self.events.sync()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn rotate_if_due(&mut self) -> Result<(), RecordingError> {
        for segment in [&mut self.samples, &mut self.smaps] {
            if segment.opened.elapsed() < self.config.segment_duration {
                continue;
            }
            segment.sync()?;
            let next = SegmentFile::open(&self.dir, segment.stream, segment.index + 1)?;
            let closed = std::mem::replace(segment, next);
            self.stats.closed_segments.push(closed.path.clone());
            (self.on_segment_closed)(closed.path);
        }
        Ok(())
    }
}
