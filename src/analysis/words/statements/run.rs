//! What is said of the run as a whole: its verdict in one word, decided once from the
//! findings and how the workers ended, for the report's headline and the lines that end a run
//! alike.

use super::*;

/// The run's verdict, worst first: a crash outweighs a leak, a leak memory pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunVerdict {
    /// The recording ended without a clean stop, the kernel killed a process, a worker
    /// crashed, or the memory cgroup counted an OOM kill.
    Crash,
    /// Only logs: no memory was recorded.
    Unknown,
    LeakFound,
    /// No leak, but available memory fell under 10% of the total, or memory PSI full reached
    /// 10%.
    MemoryPressure,
    Healthy,
}

impl RunVerdict {
    pub fn words(self) -> &'static str {
        match self {
            RunVerdict::Crash => "crash",
            RunVerdict::Unknown => "unknown (no memory was recorded)",
            RunVerdict::LeakFound => "leak found",
            RunVerdict::MemoryPressure => "memory pressure",
            RunVerdict::Healthy => "healthy",
        }
    }
}

/// How the run ended beyond its findings: what the report and the end of a run know of the
/// workers' exits and the kernel's log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ends {
    pub ended_abruptly: bool,
    /// Processes the kernel's OOM killer killed, from its log.
    pub kernel_kills: usize,
    /// Workers that crashed (a signal other than SIGTERM, or a non-zero exit).
    pub crashed_workers: usize,
}

/// The run in a word, and the workers that word rests on.
pub struct RunStatement<'a> {
    pub verdict: RunVerdict,
    pub leaking: Vec<&'a WorkerFinding>,
    /// Workers that grew and then stopped growing.
    pub plateaus: Vec<u32>,
    /// Only logs were recorded: no worker has a finding.
    pub logs_only: bool,
    /// Hours until memory runs out at the rate seen, where the forecast says it does.
    pub exhausted_in_hours: Option<f64>,
}

pub fn run(f: &Findings, ends: Ends) -> RunStatement<'_> {
    let of = |verdict| f.workers.iter().filter(move |w| w.verdict == verdict);
    let leaking: Vec<&WorkerFinding> = of(Verdict::Leak).collect();
    let logs_only = f.workers.is_empty() && f.run.process_samples == 0;
    let verdict = if ends.ended_abruptly
        || ends.kernel_kills > 0
        || ends.crashed_workers > 0
        || oom(f).is_some()
    {
        RunVerdict::Crash
    } else if logs_only {
        RunVerdict::Unknown
    } else if !leaking.is_empty() {
        RunVerdict::LeakFound
    } else if f.memory_pressure {
        RunVerdict::MemoryPressure
    } else {
        RunVerdict::Healthy
    };
    RunStatement {
        verdict,
        leaking,
        plateaus: of(Verdict::Plateau).map(|w| w.worker).collect(),
        logs_only,
        exhausted_in_hours: f.forecast.as_ref().and_then(|fc| fc.exhausted_in_hours),
    }
}
