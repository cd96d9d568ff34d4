//! The soak verdict (pass or fail, with its reasons), the kernel's OOM kills of the run, and
//! the lines of the live view.

use crate::analysis::gates::{check, GrowthBudget};
use crate::analysis::text::{leak_clause, rate, site_clause};
use crate::analysis::{Findings, Verdict};
use crate::live::LiveStatus;
use crate::policy::Counters;
use crate::supervisor::Exit;
use crate::units::duration;
use serde::Serialize;

/// A soak passes or fails; JSON says `pass` or `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakVerdict {
    pub schema_version: u32,
    pub verdict: Outcome,
    pub reasons: Vec<String>,
    pub run_dir: String,
    pub duration_s: f64,
    pub workers: u32,
    pub trials: usize,
    /// Workers whose retained memory grows beyond the budget (or leaks, without one).
    pub leaking_workers: Vec<u32>,
    pub crashes: usize,
    pub policy: Counters,
}

impl SoakVerdict {
    pub fn passed(&self) -> bool {
        self.verdict == Outcome::Pass
    }
}

/// Pass: no leak beyond the budget (any leak without one), no OOM kill, no crash, the brake
/// never engaged, the run not degraded. `failed` are the worker exits memwarden did not cause.
pub fn judge(
    findings: &Findings,
    budget: Option<GrowthBudget>,
    failed: &[(u32, Exit)],
    kernel_kills: &[String],
    counters: &Counters,
    duration_s: f64,
) -> SoakVerdict {
    let mut reasons = Vec::new();
    let mut leaking = Vec::new();
    match budget {
        // Every kind with enough data, as `check` judges (crashes are judged below).
        Some(budget) => match check(findings, None, budget, &[]) {
            Ok(report) => {
                for w in &report.workers {
                    if w.outcome == crate::analysis::gates::Outcome::NotEnoughData {
                        reasons.push(format!(
                            "cannot judge worker {} against the budget: not enough data ({})",
                            w.worker, w.chosen_because
                        ));
                    }
                }
                for w in report
                    .workers
                    .iter()
                    .filter(|w| w.outcome == crate::analysis::gates::Outcome::Exceeds)
                {
                    leaking.push(w.worker);
                    let site = findings
                        .workers
                        .iter()
                        .find(|f| f.worker == w.worker)
                        .map_or(String::new(), site_clause);
                    let grows = w
                        .rate
                        .map_or(String::new(), |r| rate(&r, budget.per.unit()));
                    reasons.push(format!(
                        "worker {} grows {} in {} (over the budget {}){site}",
                        w.worker,
                        grows,
                        w.kind.words(),
                        budget
                    ));
                }
            }
            Err(why) => reasons.push(format!("cannot judge growth against the budget: {why}")),
        },
        None => {
            for w in findings
                .workers
                .iter()
                .filter(|w| w.verdict == Verdict::Leak)
            {
                leaking.push(w.worker);
                reasons.push(format!("worker {} leaks {}", w.worker, leak_clause(w)));
            }
        }
    }
    reasons.extend(kernel_kills.iter().cloned());
    for (worker, exit) in failed {
        reasons.push(match (exit.code, exit.signal) {
            (_, Some(9)) => match oom_killed(findings, *worker) {
                Some(words) => format!("worker {worker} was killed by the kernel's OOM killer{words}"),
                None => format!("worker {worker} was killed by SIGKILL, not by memwarden (the kernel's OOM killer?)"),
            },
            (_, Some(signal)) => format!("worker {worker} crashed (signal {signal})"),
            (Some(code), _) => format!("worker {worker} exited with code {code}"),
            _ => format!("worker {worker} ended unexpectedly"),
        });
    }
    if counters.brake_engagements > 0 {
        reasons.push(format!(
            "the brake engaged {} time(s) and held back {} trial(s): memory ran short",
            counters.brake_engagements, counters.brakes
        ));
    }
    reasons.extend(counters.degraded.iter().map(|d| format!("degraded: {d}")));
    SoakVerdict {
        schema_version: 1,
        verdict: if reasons.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        reasons,
        run_dir: findings.run.dir.clone(),
        duration_s,
        workers: findings.run.workers,
        trials: findings.run.trials,
        leaking_workers: leaking,
        crashes: failed.len(),
        policy: counters.clone(),
    }
}

/// Where the memory cgroup's counter shows the kernel killed the worker's main process: which
/// cgroup and limit, and the worker's memory at its last sample.
fn oom_killed(findings: &Findings, worker: u32) -> Option<String> {
    let o = findings.oom_kills.as_ref()?;
    let kill = o
        .kills
        .iter()
        .rev()
        .find(|k| k.main && k.worker == Some(worker))?;
    let limit = o.limit_bytes.map_or(String::new(), |l| {
        format!(", limit {}", crate::units::size(l))
    });
    let memory = kill
        .memory_kind
        .zip(kill.memory_bytes)
        .map_or(String::new(), |(kind, bytes)| {
            format!(
                "; it held {} ({}) at its last sample",
                crate::units::size(bytes),
                kind.words()
            )
        });
    if let Some(own) = kill.own_limit_bytes {
        return Some(format!(
            " at its own limit of {} (its cgroup of its own){memory}",
            crate::units::size(own)
        ));
    }
    Some(format!(" ({}{limit}){memory}", o.cgroup))
}

/// The kernel's OOM kills of the run's processes: a pid recorded for a worker, killed after the
/// run started (a kill without a wall-clock time cannot be placed and is left out).
pub fn oom_kills_of_run(
    kills: &[crate::report::OomKill],
    pids: &std::collections::BTreeMap<i32, u32>,
    start_wall_ns: u64,
) -> Vec<String> {
    kills
        .iter()
        .filter(|k| matches!(k.time, crate::report::KernelTime::Wall(ns) if ns >= start_wall_ns))
        .filter_map(|k| {
            let worker = pids.get(&k.pid)?;
            Some(format!(
                "the kernel's OOM killer killed pid {} ({}) of worker {worker}",
                k.pid, k.name
            ))
        })
        .collect()
}

/// The kind the budget applies to: the first worker's headline kind (anonymous memory, or PSS).
pub fn verdict_text(verdict: &SoakVerdict) -> String {
    let mut out = format!(
        "soak {}: {} worker(s), {} trial(s) in {}\n",
        verdict.verdict.as_str().to_uppercase(),
        verdict.workers,
        verdict.trials,
        duration(verdict.duration_s)
    );
    for reason in &verdict.reasons {
        out.push_str(&format!("  - {reason}\n"));
    }
    out
}

/// One line for logs (CI) and the first line of the terminal display: the run's line of the
/// live view with the time left.
pub fn progress_line(status: &LiveStatus, total_s: f64) -> String {
    let elapsed = status.elapsed_ns as f64 / 1e9;
    let trials: u64 = status.workers.values().map(|w| w.trials()).sum();
    format!(
        "{} left; {trials} trial(s); {}",
        duration((total_s - elapsed).max(0.0)),
        crate::live::run_line(status)
    )
}

/// OOM kills of the run's processes in the kernel log (`dmesg -T`), which also sees a worker's
/// children; where it cannot be read, says so: only the workers' own exits are then checked.
pub fn kernel_kills(recording: &crate::recording::Recording) -> Vec<String> {
    let output = std::process::Command::new("dmesg").arg("-T").output();
    let text = match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            eprintln!("memwarden: note: cannot read the kernel log (dmesg -T): OOM kills of the workers' child processes are not checked");
            return Vec::new();
        }
    };
    let pids = crate::recording::worker_pids(&recording.events);
    let start = recording.manifest.start_wall_ns;
    let year = crate::report::pipeline::year_of(start);
    oom_kills_of_run(&crate::report::oom_kills(&text, year), &pids, start)
}
