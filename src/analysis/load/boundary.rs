//! The level a trial retained, taken at its end line (issue 36). A worker that prints its end
//! and starts the next trial at once (Optuna does) has already taken the next trial's memory by
//! the time a sampler tick reads it: under load, half the readings did. So the retained level
//! of a worker's tree comes, in this order, from:
//!
//! 1. the worker's own reading, printed on its end line (the helper, the tracer): exact;
//! 2. the harness's reading as the end line arrived, when it came within `LATE_NS`;
//! 3. samples settled in a gap before the next trial's start (as before);
//!
//! and otherwise it is unknown, never the first sample after the end. Samples settled in a gap
//! also bound a reading at the end from above (the worker may free memory after its line).
//! Kinds no end reading has (PSS, USS) are lowered by the resident growth their own sample
//! shows past the end reading: the next trial's memory is private, counted whole in both.
//! Recordings made before end readings existed keep the old rule and say so.

use super::levels::Levels;
use crate::analysis::kind::Kind;
use crate::recording::{EndMemory, EndReader};
use serde::Serialize;

/// A harness reading later than this after the line's arrival is not taken as the end's.
pub const LATE_NS: u64 = 10_000_000;

/// Where a trial's retained level came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndRead {
    /// Read by the worker itself at its end line.
    Worker,
    /// Read by the harness as the end line arrived, `delay_ns` later.
    Harness { delay_ns: u64 },
    /// Only from samples settled before the next trial (no usable end reading).
    Settled,
    /// A recording without end readings: the old rule (the first sample after the end when
    /// there was no gap).
    Unchecked,
    /// No clean reading: left unknown.
    Unknown,
    /// The trial had not ended.
    Running,
}

/// Settles `levels`' retained values for one trial; `recorded`: the recording has end
/// readings at all.
pub fn settle(
    levels: &mut Levels,
    end: Option<&EndMemory>,
    ended: bool,
    recorded: bool,
) -> EndRead {
    if !ended {
        return EndRead::Running;
    }
    let usable = end.filter(|m| m.read_by == EndReader::Worker || m.delay_ns <= LATE_NS);
    let Some(memory) = usable else {
        if levels.settled {
            return EndRead::Settled;
        }
        if !recorded {
            return EndRead::Unchecked;
        }
        levels.retained = Default::default();
        return EndRead::Unknown;
    };
    let sampled = levels.retained;
    let read = [
        (Kind::Anon, memory.anon_bytes),
        (Kind::File, memory.file_bytes),
        (Kind::Shmem, memory.shmem_bytes),
        (
            Kind::Rss,
            memory.anon_bytes + memory.file_bytes + memory.shmem_bytes,
        ),
    ];
    for (kind, bytes) in read {
        let at_end = bytes as f64;
        let k = kind as usize;
        let level = match (levels.retained.get(k), levels.settled) {
            (Some(settled), true) => settled.min(at_end),
            _ => at_end,
        };
        levels.retained.set(k, Some(level));
    }
    // Only a sample after the end (no gap) can hold the next trial's memory; a settled one is
    // clean, and PSS there may grow where resident memory does not (copy-on-read).
    let excess = match (
        sampled.get(Kind::Rss as usize),
        levels.retained.get(Kind::Rss as usize),
    ) {
        (Some(sampled), Some(at_end)) if !levels.settled => (sampled - at_end).max(0.0),
        _ => 0.0,
    };
    for kind in [Kind::Pss, Kind::Uss] {
        let k = kind as usize;
        if let Some(value) = levels.retained.get(k) {
            levels.retained.set(k, Some((value - excess).max(0.0)));
        }
    }
    match memory.read_by {
        EndReader::Worker => EndRead::Worker,
        EndReader::Harness => EndRead::Harness {
            delay_ns: memory.delay_ns,
        },
    }
}

/// How one worker's retained levels were read, for the health line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct BoundaryReads {
    pub worker: u32,
    /// Ended trials.
    pub trials: usize,
    /// Read by the worker itself.
    pub by_worker: usize,
    /// Read by the harness at the end line in time.
    pub by_harness: usize,
    /// The harness's delays from the line's arrival (ms): median and worst.
    pub median_delay_ms: Option<f64>,
    pub worst_delay_ms: Option<f64>,
    /// Harness readings later than `LATE_NS` (not used).
    pub late: usize,
    /// From settled samples only.
    pub settled: usize,
    pub unknown: usize,
    /// The recording has no end readings (made before them): the old rule applied.
    pub unchecked: bool,
}

impl BoundaryReads {
    /// `reads`: each ended trial's source and its end reading's delay where the harness read.
    pub fn of(worker: u32, reads: &[(EndRead, Option<u64>)]) -> Self {
        let mut out = Self {
            worker,
            ..Self::default()
        };
        let mut delays = Vec::new();
        for (read, harness_delay) in reads {
            if *read == EndRead::Running {
                continue;
            }
            out.trials += 1;
            if let Some(delay) = harness_delay {
                delays.push(*delay as f64 / 1e6);
                if *delay > LATE_NS {
                    out.late += 1;
                }
            }
            match read {
                EndRead::Worker => out.by_worker += 1,
                EndRead::Harness { .. } => out.by_harness += 1,
                EndRead::Settled => out.settled += 1,
                EndRead::Unknown => out.unknown += 1,
                EndRead::Unchecked => out.unchecked = true,
                EndRead::Running => {}
            }
        }
        if !delays.is_empty() {
            out.median_delay_ms = Some(crate::stats::median(&delays));
            out.worst_delay_ms = delays.iter().copied().reduce(f64::max);
        }
        out
    }

    /// Late or unknown readings over 5% of the trials: the retained figures are not to be
    /// trusted one by one.
    pub fn warn(&self) -> bool {
        self.trials > 0 && (self.late + self.unknown) * 20 > self.trials
    }

    /// One line per worker, or one for the run where the recording has no end readings.
    pub fn lines(all: &[Self]) -> Vec<String> {
        if !all.is_empty() && all.iter().all(|r| r.unchecked) {
            return vec![
                "boundary reads: none recorded (a recording made before end readings); \
                 retained levels from samples, which can include the next trial's memory"
                    .to_string(),
            ];
        }
        all.iter().map(Self::words).collect()
    }

    pub fn words(&self) -> String {
        if self.unchecked {
            return format!(
                "worker {}: boundary reads: none recorded (a recording made before end readings); \
                 retained levels from samples, which can include the next trial's memory",
                self.worker
            );
        }
        let mut parts = Vec::new();
        if self.by_worker > 0 {
            parts.push(format!("{} by the worker itself", self.by_worker));
        }
        if self.by_harness > 0 {
            parts.push(format!("{} by memwarden at the end line", self.by_harness));
        }
        if let (Some(median), Some(worst)) = (self.median_delay_ms, self.worst_delay_ms) {
            parts.push(format!("delay median {median:.2} ms, worst {worst:.2} ms"));
        }
        if self.late > 0 {
            parts.push(format!(
                "{} late (over {} ms, not used)",
                self.late,
                LATE_NS / 1_000_000
            ));
        }
        if self.settled > 0 {
            parts.push(format!(
                "{} from samples settled before the next trial",
                self.settled
            ));
        }
        if self.unknown > 0 {
            parts.push(format!("{} unknown", self.unknown));
        }
        let share = if self.trials > 0 {
            100.0 * self.unknown as f64 / self.trials as f64
        } else {
            0.0
        };
        let warning = if self.warn() {
            " — WARNING: over 5% late or unknown; per-trial retained figures are incomplete"
        } else {
            ""
        };
        format!(
            "worker {}: boundary reads of {} trials: {} ({share:.0}% unknown){warning}",
            self.worker,
            self.trials,
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::kind::Values;

    const MIB: f64 = 1048576.0;

    /// Levels whose retained PSS, anon and RSS came from samples (`settled`: in a gap).
    fn sampled(pss: f64, anon: f64, rss: f64, settled: bool) -> Levels {
        let mut retained: Values = Default::default();
        retained[Kind::Pss as usize] = Some(pss * MIB);
        retained[Kind::Anon as usize] = Some(anon * MIB);
        retained[Kind::Rss as usize] = Some(rss * MIB);
        Levels {
            retained: retained.into(),
            settled,
            ..Levels::default()
        }
    }

    fn at_end(anon: f64, read_by: EndReader, delay_ms: u64) -> EndMemory {
        EndMemory {
            anon_bytes: (anon * MIB) as u64,
            file_bytes: (10.0 * MIB) as u64,
            shmem_bytes: 0,
            read_by,
            delay_ns: delay_ms * 1_000_000,
        }
    }

    fn mib(levels: &Levels, kind: Kind) -> Option<f64> {
        levels
            .retained
            .get(kind as usize)
            .map(|v| (v / MIB * 100.0).round() / 100.0)
    }

    #[test]
    fn the_end_reading_replaces_a_sample_that_holds_the_next_trials_memory() {
        // The first sample after the end already holds 64 MiB of the next trial.
        let mut levels = sampled(180.0, 164.0, 174.0, false);
        let read = settle(
            &mut levels,
            Some(&at_end(100.0, EndReader::Harness, 0)),
            true,
            true,
        );
        assert_eq!(read, EndRead::Harness { delay_ns: 0 });
        assert_eq!(mib(&levels, Kind::Anon), Some(100.0));
        assert_eq!(mib(&levels, Kind::Rss), Some(110.0));
        // PSS has no end reading: lowered by the resident growth its own sample showed.
        assert_eq!(mib(&levels, Kind::Pss), Some(116.0));
    }

    #[test]
    fn a_gap_settled_lower_than_the_end_reading_wins() {
        // The worker freed 20 MiB after printing its end line, before the next trial.
        let mut levels = sampled(90.0, 80.0, 90.0, true);
        settle(
            &mut levels,
            Some(&at_end(100.0, EndReader::Worker, 0)),
            true,
            true,
        );
        assert_eq!(mib(&levels, Kind::Anon), Some(80.0));
        assert_eq!(mib(&levels, Kind::Pss), Some(90.0), "nothing to take off");
    }

    #[test]
    fn without_a_clean_reading_the_retained_level_is_unknown_not_contaminated() {
        // A harness reading 30 ms after the line: too late to be the end's.
        let late = at_end(100.0, EndReader::Harness, 30);
        let mut levels = sampled(180.0, 164.0, 174.0, false);
        assert_eq!(
            settle(&mut levels, Some(&late), true, true),
            EndRead::Unknown
        );
        assert_eq!(levels.retained, Values::default().into());
        // A gap's settled samples are clean without an end reading.
        let mut levels = sampled(90.0, 80.0, 90.0, true);
        assert_eq!(settle(&mut levels, None, true, true), EndRead::Settled);
        assert_eq!(mib(&levels, Kind::Anon), Some(80.0));
        // A recording from before end readings keeps the old rule, and says so.
        let mut levels = sampled(180.0, 164.0, 174.0, false);
        assert_eq!(settle(&mut levels, None, true, false), EndRead::Unchecked);
        assert_eq!(mib(&levels, Kind::Anon), Some(164.0));
    }

    #[test]
    fn the_health_line_counts_each_source_and_warns_over_five_percent() {
        let mut reads = vec![(EndRead::Harness { delay_ns: 100_000 }, Some(100_000)); 18];
        reads.push((EndRead::Worker, None));
        reads.push((EndRead::Running, None));
        let healthy = BoundaryReads::of(2, &reads);
        assert_eq!(
            (healthy.trials, healthy.by_harness, healthy.by_worker),
            (19, 18, 1)
        );
        assert!(!healthy.warn(), "{healthy:?}");
        assert!(
            healthy
                .words()
                .contains("delay median 0.10 ms, worst 0.10 ms"),
            "{}",
            healthy.words()
        );
        reads.push((EndRead::Unknown, Some(40_000_000)));
        let unhealthy = BoundaryReads::of(2, &reads);
        assert_eq!((unhealthy.late, unhealthy.unknown), (1, 1));
        assert!(unhealthy.warn());
        assert!(
            unhealthy.words().contains("1 late (over 10 ms, not used)"),
            "{}",
            unhealthy.words()
        );
        assert!(unhealthy
            .words()
            .contains("WARNING: over 5% late or unknown"));
    }
}
