//! The policy file: TOML, every part optional, defaults documented in the README and in
//! `fixtures/policy/example.toml`. Unknown keys, wrong units and impossible thresholds are one
//! error naming the file and line, found before anything starts.

use super::threshold::Threshold;
use crate::units::{parse_positive_duration, parse_size};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_positive_duration(&String::deserialize(d)?).map_err(de::Error::custom)
}

fn threshold<'de, D: Deserializer<'de>>(d: D) -> Result<Threshold, D::Error> {
    String::deserialize(d)?.parse().map_err(de::Error::custom)
}

fn opt_threshold<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Threshold>, D::Error> {
    threshold(d).map(Some)
}

fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    parse_size(&String::deserialize(d)?)
        .map(Some)
        .map_err(de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn in_range<'de, D, T>(d: D, low: T, high: T, what: &str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + std::fmt::Display + Copy,
{
    let value = T::deserialize(d)?;
    // Written so that NaN (valid TOML, unordered) is out of every range.
    if !(value >= low && value <= high) {
        return Err(de::Error::custom(format!(
            "{value} is not a possible {what} (from {low} to {high})"
        )));
    }
    Ok(value)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Memory the workers may use together; `None`: the whole machine.
    #[serde(deserialize_with = "opt_size")]
    pub budget: Option<u64>,
    pub brake: Brake,
    pub escalation: Escalation,
    pub restart: Restart,
    pub start: Start,
    pub containment: Containment,
    pub redact: Redact,
}

/// Text masked before anything is written, beyond what `redact` masks by itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redact {
    /// Regular expressions; capture group 1 is masked where a pattern has one, else the match.
    #[serde(deserialize_with = "patterns")]
    pub patterns: Vec<regex::Regex>,
}

fn patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<regex::Regex>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|p| {
            regex::RegexBuilder::new(p)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| de::Error::custom(format!("redact pattern {p:?}: {e}")))
        })
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Brake {
    /// No new trial starts while available memory (or budget headroom) is under this.
    #[serde(deserialize_with = "threshold")]
    pub min_headroom: Threshold,
    /// Nor while memory PSI "full" avg10 (percent of time) is over this.
    #[serde(deserialize_with = "pressure")]
    pub max_psi_full: f64,
    /// What a cooperative worker is told to wait before asking again.
    #[serde(deserialize_with = "duration")]
    pub wait: Duration,
    /// Pause (SIGSTOP) non-cooperative workers between trials while the brake is on.
    pub pause: bool,
}

fn pressure<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    in_range(d, 0.0, 100.0, "pressure (percent of time)")
}

impl Default for Brake {
    fn default() -> Self {
        Self {
            min_headroom: Threshold::Percent(10.0),
            max_psi_full: 20.0,
            wait: Duration::from_secs(5),
            pause: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Escalation {
    /// Restart the worker holding the most memory after the brake refused this many trials
    /// in a row...
    #[serde(deserialize_with = "brakes")]
    pub after_brakes: u32,
    /// ...or stayed on this long.
    #[serde(deserialize_with = "duration")]
    pub after: Duration,
}

fn brakes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 1_000_000, "number of brakes")
}

impl Default for Escalation {
    fn default() -> Self {
        Self {
            after_brakes: 10,
            // A brake that pauses workers frees nothing: only a restart does, so it waits only
            // as long as a passing spike (a checkpoint, an evaluation) takes to go by.
            after: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Restart {
    /// Restart a worker whose tree's PSS passes this.
    #[serde(deserialize_with = "opt_size")]
    pub max_worker_pss: Option<u64>,
    /// Restart a worker whose tree's GPU memory passes this.
    #[serde(deserialize_with = "opt_size")]
    pub max_worker_gpu: Option<u64>,
    /// A GPU with less free memory than this restarts the worker holding the most GPU memory.
    #[serde(deserialize_with = "opt_threshold")]
    pub min_device_free: Option<Threshold>,
    /// Restart each worker after this many trials.
    #[serde(deserialize_with = "trials")]
    pub every_trials: Option<u32>,
    /// Restart each worker after it has run this long.
    #[serde(deserialize_with = "opt_duration")]
    pub every: Option<Duration>,
    /// Available memory (or headroom) under this restarts the largest worker at once.
    #[serde(deserialize_with = "opt_threshold")]
    pub emergency_floor: Option<Threshold>,
    /// How long a restart waits for the running trial to finish.
    #[serde(deserialize_with = "duration")]
    pub deadline: Duration,
    /// Between SIGTERM and SIGKILL.
    #[serde(deserialize_with = "duration")]
    pub grace: Duration,
    /// A worker that crashes this many times in a row stays down; the run is degraded.
    #[serde(deserialize_with = "crashes")]
    pub max_crashes: u32,
    /// The first crash restart waits this long; each further one twice as long...
    #[serde(deserialize_with = "duration")]
    pub backoff: Duration,
    /// ...up to this.
    #[serde(deserialize_with = "duration")]
    pub backoff_max: Duration,
    /// Start a worker again when it exits cleanly (soak mode).
    pub when_finished: bool,
    /// At most this many starts of each worker in all (`replay --isolate`); not in the file.
    #[serde(skip)]
    pub max_starts: Option<u32>,
    /// Restart a worker whose own cgroup holds this much anonymous and shared memory (the
    /// memory only a restart frees) at its next trial boundary; set by the harness to the soft
    /// line of the per-worker cgroups it made (`Policy::worker_limits`), not in the file.
    #[serde(skip)]
    pub soft_line: Option<u64>,
}

fn trials<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    in_range(d, 1, u32::MAX, "number of trials").map(Some)
}

fn crashes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 0, 1000, "number of crashes")
}

impl Default for Restart {
    fn default() -> Self {
        Self {
            max_worker_pss: None,
            max_worker_gpu: None,
            min_device_free: None,
            every_trials: None,
            every: None,
            emergency_floor: Some(Threshold::Percent(5.0)),
            deadline: Duration::from_secs(300),
            grace: Duration::from_secs(10),
            max_crashes: 5,
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            when_finished: false,
            max_starts: None,
            soft_line: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Start {
    /// Start worker i this long after worker i-1.
    #[serde(deserialize_with = "opt_duration")]
    pub stagger: Option<Duration>,
    /// Start one worker first, the others after it completed this many trials within budget.
    #[serde(deserialize_with = "trials")]
    pub canary_trials: Option<u32>,
    /// The canary's retained growth per trial above which the others stay down.
    #[serde(deserialize_with = "opt_size")]
    pub canary_max_growth: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Containment {
    /// Scheduling niceness of the workers (-20..19).
    #[serde(deserialize_with = "nice")]
    pub nice: Option<i32>,
    /// I/O priority: "idle", or "best-effort:N" (0..7).
    #[serde(deserialize_with = "io_class")]
    pub ionice: Option<IoPriority>,
    /// The workers' oom_score_adj (-1000..1000): raised so the kernel kills a worker first.
    #[serde(deserialize_with = "oom")]
    pub oom_score_adj: i32,
    /// Each worker's own memory limit (cgroup v2 memory.max, v1 memory.limit_in_bytes); by
    /// default the budget divided among the workers.
    #[serde(deserialize_with = "opt_size")]
    pub memory_max: Option<u64>,
    /// Each worker's soft line (v2 memory.high, v1 memory.soft_limit_in_bytes), where it is
    /// restarted at its next trial boundary; by default 90% of its limit.
    #[serde(deserialize_with = "opt_size")]
    pub memory_high: Option<u64>,
    /// Give each worker a memory cgroup of its own where memwarden may create one.
    pub worker_cgroups: bool,
}

impl Default for Containment {
    fn default() -> Self {
        Self {
            nice: None,
            ionice: None,
            oom_score_adj: 500,
            memory_max: None,
            memory_high: None,
            worker_cgroups: true,
        }
    }
}

/// What each worker's own cgroup is limited to; `None`: no limit of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerLimits {
    pub max: Option<u64>,
    /// The soft line: v2 throttles above it, v1 reclaims from the cgroup first under pressure;
    /// the policy restarts a worker that reaches it at its next trial boundary.
    pub high: Option<u64>,
}

impl Policy {
    /// Each worker's own limit and soft line: as set, or the budget shared among `workers` with
    /// the soft line at 90% of it.
    pub fn worker_limits(&self, workers: u32) -> WorkerLimits {
        let max = self
            .containment
            .memory_max
            .or_else(|| self.budget.map(|b| b / u64::from(workers.max(1))));
        let high = self
            .containment
            .memory_high
            .or_else(|| max.map(|m| m / 10 * 9));
        WorkerLimits { max, high }
    }
}

fn nice<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    in_range(d, -20, 19, "nice level").map(Some)
}

fn oom<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    in_range(d, -1000, 1000, "oom_score_adj")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPriority {
    Idle,
    BestEffort(u8),
}

impl std::str::FromStr for IoPriority {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "idle" => Ok(IoPriority::Idle),
            Some(("best-effort", level)) => match level.parse::<u8>() {
                Ok(level) if level <= 7 => Ok(IoPriority::BestEffort(level)),
                _ => Err(format!("{level:?}: a best-effort level is 0 to 7")),
            },
            _ => Err(format!(
                "{text:?}: write \"idle\" or \"best-effort:N\" with N from 0 to 7"
            )),
        }
    }
}

fn io_class<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IoPriority>, D::Error> {
    String::deserialize(d)?
        .parse()
        .map(Some)
        .map_err(de::Error::custom)
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Flags(String),
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            cause: source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// `name` is what errors call the text (its path). Values are read into the plain policy
    /// (toml places a bad value's error on its line); relations between values are checked on
    /// the plain policy by `check`, and the file's own spans then name the line of a key that
    /// was written.
    pub fn parse(text: &str, name: &str) -> Result<Self, PolicyError> {
        let invalid = |span: Option<Range<usize>>, message: String| PolicyError::Invalid {
            path: name.to_string(),
            line: span.map_or(1, |s| line_of(text, s.start)),
            message,
        };
        let policy: Policy =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().trim().to_string()))?;
        policy.check().map_err(|conflict| {
            let span = toml::de::DeTable::parse(text).ok().and_then(|document| {
                conflict
                    .keys
                    .iter()
                    .find_map(|key| span_of(document.get_ref(), key))
            });
            invalid(span, conflict.message)
        })?;
        Ok(policy)
    }

    /// Relations between values, whether they came from a file, flags or defaults.
    pub fn check(&self) -> Result<(), Conflict> {
        let conflict = |keys: &[&'static str], message: String| {
            Err(Conflict {
                keys: keys.to_vec(),
                message,
            })
        };
        if let Some(floor) = self.restart.emergency_floor {
            let brake = self.brake.min_headroom;
            if floor.surely_below(brake) == Some(false) {
                return conflict(
                    &["restart.emergency_floor", "brake.min_headroom"],
                    format!(
                        "restart.emergency_floor ({floor}) must be below brake.min_headroom ({brake}): the brake comes first"
                    ),
                );
            }
        }
        if self.restart.backoff > self.restart.backoff_max {
            return conflict(
                &["restart.backoff", "restart.backoff_max"],
                "restart.backoff is longer than restart.backoff_max".into(),
            );
        }
        if let (Some(budget), Threshold::Bytes(headroom)) = (self.budget, self.brake.min_headroom) {
            if headroom >= budget {
                return conflict(
                    &["brake.min_headroom", "budget"],
                    "brake.min_headroom is not below the budget: the brake would never release"
                        .into(),
                );
            }
        }
        if let (Some(max), Some(budget)) = (self.restart.max_worker_pss, self.budget) {
            if max > budget {
                return conflict(
                    &["restart.max_worker_pss", "budget"],
                    "restart.max_worker_pss is above the whole budget".into(),
                );
            }
        }
        if let Some(max) = self.containment.memory_max {
            if max < 16 << 20 {
                return conflict(
                    &["containment.memory_max"],
                    "containment.memory_max under 16MiB would kill any worker at start".into(),
                );
            }
        }
        if let (Some(high), Some(max)) = (self.containment.memory_high, self.containment.memory_max)
        {
            if high > max {
                return conflict(
                    &["containment.memory_high", "containment.memory_max"],
                    "containment.memory_high is above containment.memory_max: the kernel's limit would come first".into(),
                );
            }
        }
        Ok(())
    }
}

/// Values that cannot go together, and the keys to blame, the likeliest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub keys: Vec<&'static str>,
    pub message: String,
}

/// Where `a.b` was written in the document, if it was.
fn span_of(document: &toml::de::DeTable, key: &str) -> Option<Range<usize>> {
    let mut table = document;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = table.get(part)?;
        if parts.peek().is_none() {
            return Some(value.span());
        }
        table = value.get_ref().as_table()?;
    }
    None
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests;
