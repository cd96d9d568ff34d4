//! The timeline: what happened when, from the recording's events, the analysis and the kernel
//! log, each on the run's clock (UTC and elapsed). Kernel OOM kills are matched to workers by
//! pid; `dmesg` times that cannot be placed are listed apart.

use super::sections::{signal_name, when};
use super::{KernelTime, OomKill, ReportInput};
use crate::analysis::Verdict;
use crate::markdown::escape;
use crate::recording::{EventKind, PolicyAction, RunStatus};
use crate::units::size;
use std::fmt::Write;

/// Timelines longer than this are cut, saying how much was left out.
const MAX_TIMELINE: usize = 120;

/// A kill's time on the run's clock (ns since the start), when it can be placed.
fn kill_time(input: &ReportInput, kill: &OomKill) -> Option<u64> {
    place(&kill.time, input.boot_wall_ns, input.manifest.start_wall_ns)
}

/// `dmesg` times count from boot, so they need the recorded boot's wall-clock start.
fn place(time: &KernelTime, boot_wall_ns: Option<u64>, start_wall_ns: u64) -> Option<u64> {
    let wall = match time {
        KernelTime::Wall(ns) => *ns,
        KernelTime::SinceBoot(s) => boot_wall_ns? + (s * 1e9) as u64,
        KernelTime::Unknown => return None,
    };
    wall.checked_sub(start_wall_ns)
}

pub(super) fn kill_text(input: &ReportInput, kill: &OomKill) -> String {
    let whose = crate::recording::worker_pids(input.events)
        .get(&kill.pid)
        .map_or("not a recorded worker process".to_string(), |w| {
            format!("worker {w}")
        });
    let rss = kill
        .anon_rss_bytes
        .map_or(String::new(), |b| format!(", anon-rss {}", size(b as f64)));
    let scope = if kill.cgroup {
        "cgroup OOM kill"
    } else {
        "kernel OOM kill"
    };
    format!(
        "{scope}: pid {} ({}){rss}, {whose}",
        kill.pid,
        escape(&kill.name)
    )
}

pub fn timeline(out: &mut String, input: &ReportInput) {
    let mut entries: Vec<(u64, String)> = vec![(
        0,
        format!(
            "run started ({}, {} worker(s)): {}",
            escape(&input.manifest.mode),
            input.manifest.workers,
            escape(&input.manifest.command.join(" "))
        ),
    )];
    event_entries(input, &mut entries);
    clear_growth_entries(input, &mut entries);
    let mut unplaced = Vec::new();
    for kill in input.kills {
        match kill_time(input, kill) {
            Some(t) => entries.push((t, kill_text(input, kill))),
            None => unplaced.push(kill_text(input, kill)),
        }
    }
    entries.push(end_entry(input));
    entries.sort_by_key(|e| e.0);
    let _ = writeln!(
        out,
        "## Timeline\n\n| time (UTC, elapsed) | event |\n|---|---|"
    );
    let total = entries.len();
    for (t, text) in entries.iter().take(MAX_TIMELINE) {
        let _ = writeln!(out, "| {} | {text} |", when(input, *t));
    }
    if total > MAX_TIMELINE {
        let _ = writeln!(
            out,
            "| | … {} more events (see `memwarden export --table events`) |",
            total - MAX_TIMELINE
        );
    }
    out.push('\n');
    if !unplaced.is_empty() {
        let _ = writeln!(
            out,
            "Kernel OOM kills that could not be placed on the run's clock (`dmesg` times count from a boot whose start is unknown here; use `dmesg -T` or `journalctl -k`):\n"
        );
        for text in unplaced {
            let _ = writeln!(out, "- {text}");
        }
        out.push('\n');
    }
}

/// The recorded events a reader wants on the timeline: starts, execs, exits, stops, drops
/// and the policy's actions (not its answers before each trial).
fn event_entries(input: &ReportInput, entries: &mut Vec<(u64, String)>) {
    // Each worker's main process, to name what a wrapper exec'd into.
    let mut main_pids = std::collections::BTreeSet::new();
    for e in input.events {
        let worker = e.worker.map_or(String::new(), |w| format!("worker {w} "));
        if let EventKind::WorkerStart { pid, .. } = &e.kind {
            main_pids.insert(*pid);
        }
        let text = match &e.kind {
            EventKind::Exec { pid, command, .. } if main_pids.contains(pid) => {
                // Command lines read from /proc may carry secrets; reports never show them.
                format!(
                    "{worker}(pid {pid}) became {}",
                    escape(&crate::redact::command_line(command))
                )
            }
            EventKind::WorkerStart { pid, attempt, .. } if *attempt == 0 => {
                format!("{worker}started (pid {pid})")
            }
            EventKind::WorkerStart { pid, attempt, .. } => {
                format!("{worker}restarted (pid {pid}, attempt {attempt})")
            }
            EventKind::WorkerExit {
                pid, code, signal, ..
            } => match (code, signal) {
                (_, Some(9)) if oom_killed(input, *pid) => format!(
                    "{worker}killed by the kernel's OOM killer (SIGKILL as the memory cgroup's oom_kill counter rose)"
                ),
                (_, Some(s)) => format!("{worker}killed by {}", signal_name(*s)),
                (Some(c), _) => format!("{worker}exited with code {c}"),
                _ => format!("{worker}ended (exit status unknown)"),
            },
            EventKind::Stop { reason } => format!("stop requested: {}", escape(reason)),
            EventKind::SamplesDropped { count } => {
                format!("{count} sample(s) dropped (slow disk)")
            }
            // Answers to a worker's question come before every trial: counted in the policy
            // section, not listed.
            EventKind::Policy {
                action: PolicyAction::Refuse | PolicyAction::Abort | PolicyAction::Go,
                ..
            } => continue,
            EventKind::Policy {
                action,
                reason,
                simulated,
                ..
            } => format!(
                "{worker}{}policy {}: {}",
                if *simulated { "**simulated** " } else { "" },
                action.as_str().replace('_', " "),
                escape(reason)
            ),
            _ => continue,
        };
        entries.push((e.t_ns, text));
    }
}

/// Where each leaking worker's growth became clear.
fn clear_growth_entries(input: &ReportInput, entries: &mut Vec<(u64, String)>) {
    for w in &input.analysis.findings.workers {
        let Some(k) = w
            .kind_finding(w.kind)
            .filter(|_| w.verdict == Verdict::Leak)
        else {
            continue;
        };
        let Some(first) = &k.first_clear_trial else {
            continue;
        };
        let at = input
            .analysis
            .findings
            .trials
            .iter()
            .find(|t| t.worker == w.worker && t.trial == first)
            .and_then(|t| t.end_ns);
        if let Some(at) = at {
            entries.push((
                at,
                format!(
                    "worker {}: growth is clear from trial {} on",
                    w.worker,
                    escape(first)
                ),
            ));
        }
    }
}

/// How the recording ends: a clean finish, a run still being recorded, or no clean stop.
fn end_entry(input: &ReportInput) -> (u64, String) {
    let end = input.analysis.last_sample_ns.unwrap_or(0);
    match (input.manifest.status, input.manifest.end_wall_ns) {
        (RunStatus::Finished, Some(end_wall)) => (
            end_wall.saturating_sub(input.manifest.start_wall_ns),
            format!(
                "run finished: {}",
                escape(input.manifest.end_reason.as_deref().unwrap_or("stopped"))
            ),
        ),
        _ if input.analysis.findings.run.status == crate::analysis::Ending::Running => (
            end,
            "last sample so far: the run is still being recorded".into(),
        ),
        _ => (
            end,
            "last sample: the recording ends here, without a clean stop".into(),
        ),
    }
}

/// The memory cgroup's counter matched this main process's SIGKILL to a kernel OOM kill.
fn oom_killed(input: &ReportInput, pid: i32) -> bool {
    input
        .analysis
        .findings
        .oom_kills
        .as_ref()
        .is_some_and(|o| o.kills.iter().any(|k| k.main && k.pid == Some(pid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_times_are_placed_on_the_run_clock() {
        let boot = 1_000_000_000_000;
        let start = boot + 86_400_000_000_000;
        // dmesg's [86412.345678]: 12.345678 s after the run started, on this boot.
        let since_boot = KernelTime::SinceBoot(86_412.345_678);
        assert_eq!(place(&since_boot, Some(boot), start), Some(12_345_678_000));
        assert_eq!(
            place(&since_boot, None, start),
            None,
            "another boot: unknown"
        );
        assert_eq!(place(&KernelTime::Wall(start + 5), None, start), Some(5));
        assert_eq!(
            place(&KernelTime::Wall(start - 5), None, start),
            None,
            "before the run"
        );
    }
}
