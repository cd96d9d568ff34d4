//! The report's sections, in the order a reader needs them: the verdict, what was running at a
//! crash, why, the pictures, what to change, and the facts behind it. The timeline, the policy,
//! and the findings' root cause and forecast (worded from `analysis::statements`) have files
//! of their own.

use super::findings::rate_words;
use super::ReportInput;
use crate::analysis::statements::{self, RunVerdict};
use crate::analysis::{slot, Kind, WorkerFinding};
use crate::markdown::escape;
use crate::recording::EventKind;
use crate::units::{clock_utc, duration, size};
use std::collections::BTreeMap;
use std::fmt::Write;

/// `18:31:02 (+1m02s)` for a time in ns since the run started.
pub(super) fn when(input: &ReportInput, t_ns: u64) -> String {
    format!(
        "{} (+{})",
        clock_utc(input.manifest.start_wall_ns.saturating_add(t_ns)),
        duration(t_ns as f64 / 1e9)
    )
}

pub(super) fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// The recording says running but its harness is gone (a live run's checkpoint is not).
pub fn abrupt(input: &ReportInput) -> bool {
    input.analysis.findings.run.status == crate::analysis::Ending::EndedAbruptly
}

fn live(input: &ReportInput) -> bool {
    input.analysis.findings.run.status == crate::analysis::Ending::Running
}

pub fn summary(out: &mut String, input: &ReportInput) {
    let f = &input.analysis.findings;
    let crashed_workers = crashed_workers(input);
    let said = statements::run(
        f,
        statements::Ends {
            ended_abruptly: abrupt(input),
            kernel_kills: input.kills.len(),
            crashed_workers: crashed_workers.len(),
        },
    );
    let oom = statements::oom(f);
    let verdict = said.verdict.words();
    let headline = match (said.verdict, said.leaking.first()) {
        (RunVerdict::LeakFound, Some(w)) => {
            format!("leak found: worker {} retains {}", w.worker, rate_words(w))
        }
        _ => verdict.to_string(),
    };
    let _ = writeln!(out, "# memwarden report: {headline}\n");
    let mut paragraph = Vec::new();
    let run = &f.run;
    paragraph.push(format!(
        "{} worker(s) ran {} trial(s) over {}, recorded from {} UTC.",
        run.workers,
        run.trials,
        duration(run.duration_s),
        input.manifest.start_rfc3339
    ));
    if live(input) {
        let last = input.analysis.last_sample_ns.unwrap_or(0);
        paragraph.push(format!(
            "**The run is still being recorded**: this report was written while it ran (a checkpoint), from its samples up to {}; it is where the run stood then, not how it ended.",
            when(input, last)
        ));
    }
    if abrupt(input) {
        let last = input.analysis.last_sample_ns.unwrap_or(0);
        paragraph.push(format!(
            "**The recording ended without a clean stop**: the harness was killed, or the host crashed, froze or lost power. The last sample is from {}.",
            when(input, last)
        ));
    }
    if !input.kills.is_empty() {
        paragraph.push(format!(
            "The kernel's OOM killer killed {} process(es).",
            input.kills.len()
        ));
    }
    if let Some(oom) = &oom {
        paragraph.extend(statements::oom_words(oom));
    }
    if !crashed_workers.is_empty() {
        paragraph.push(format!("Crashed: {}.", crashed_workers.join(", ")));
    }
    for w in &said.leaking {
        paragraph.extend(leak_sentences(w));
    }
    paragraph.extend(statements::outside_words(f));
    if !said.plateaus.is_empty() {
        let plateaus: Vec<String> = said
            .plateaus
            .iter()
            .map(|w| format!("worker {w}"))
            .collect();
        paragraph.push(format!(
            "{} grew and then stopped growing (a plateau, not a leak).",
            plateaus.join(", ")
        ));
    }
    if said.logs_only {
        paragraph.push(trial_counts(input));
    } else if said.leaking.is_empty() && said.plateaus.is_empty() {
        paragraph.push("No worker's retained memory grows beyond noise.".into());
    }
    paragraph.extend(memory_sentences(input));
    if let Some(hours) = said.exhausted_in_hours {
        paragraph.push(format!(
            "At this rate memory runs out in about {}.",
            duration(hours * 3600.0)
        ));
    }
    let _ = writeln!(out, "**Verdict: {verdict}.** {}\n", paragraph.join(" "));
}

/// Where available memory and each GPU's memory went over the run.
fn memory_sentences(input: &ReportInput) -> Vec<String> {
    let mut paragraph = Vec::new();
    let system = input.analysis.system.as_ref();
    if let Some(s) = system {
        // Within a cgroup's limit the figures are the limit's: say whose they are.
        let whose = input
            .manifest
            .memory_cgroup
            .as_ref()
            .filter(|c| c.limit_bytes.is_some())
            .map_or(String::new(), |c| {
                format!(
                    " (the limit of memory cgroup {} {})",
                    c.version,
                    escape(&c.path)
                )
            });
        paragraph.push(format!(
            "Available memory went from {} to {} (lowest {}) of {}{whose}{}.",
            size(s.first_available_bytes),
            size(s.last_available_bytes),
            size(s.min_available_bytes),
            size(s.mem_total_bytes),
            s.max_psi_full_avg10.map_or(String::new(), |p| format!(
                "; memory PSI full avg10 peaked at {p:.1}%"
            ))
        ));
    }
    for (device, timeline) in &input.analysis.devices {
        let used: Vec<f64> = timeline
            .buckets()
            .filter_map(|b| b.max[slot::DEVICE_USED])
            .collect();
        let total = timeline
            .buckets()
            .filter_map(|b| b.max[slot::DEVICE_TOTAL])
            .last();
        if let (Some(first), Some(last), Some(total)) = (used.first(), used.last(), total) {
            let peak = used.iter().copied().fold(0.0, f64::max);
            paragraph.push(format!(
                "GPU {device} memory went from {} to {} used (peak {}) of {}.",
                size(*first),
                size(*last),
                size(peak),
                size(total)
            ));
        }
    }
    paragraph
}

/// What a leaking worker leaks, where, at what rate, and the line that keeps it.
fn leak_sentences(w: &WorkerFinding) -> Vec<String> {
    let mut paragraph = Vec::new();
    let process = w.process.as_ref().map_or(String::new(), |p| {
        format!(
            " in its {} (pid {})",
            if p.main {
                "main process"
            } else {
                "child process"
            },
            p.pid
        )
    });
    paragraph.push(format!(
        "**Worker {} leaks {}**{process}, {}.",
        w.worker,
        w.kind.words(),
        rate_words(w)
    ));
    if let Some(site) = w.top_site() {
        paragraph.push(format!(
            "The line that keeps it: {}{}.",
            crate::markdown::code(&format!("{}:{}", site.file, site.line)),
            site.code
                .as_deref()
                .map_or(String::new(), |c| format!(", {}", crate::markdown::code(c)))
        ));
    }
    paragraph
}

/// The workers that crashed (killed by a signal other than SIGTERM, or a non-zero exit).
fn crashed_workers(input: &ReportInput) -> Vec<String> {
    input
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::WorkerExit {
                signal: Some(s), ..
            } if s != 15 => Some(format!("worker {} ({})", e.worker?, signal_name(s))),
            EventKind::WorkerExit { code: Some(c), .. } if c != 0 => {
                Some(format!("worker {} (exit code {c})", e.worker?))
            }
            _ => None,
        })
        .collect()
}

/// `Worker 0 ran 12 trials (10 complete, 2 pruned).` per worker.
fn trial_counts(input: &ReportInput) -> String {
    let mut per_worker: BTreeMap<u32, BTreeMap<&str, usize>> = BTreeMap::new();
    for t in &input.analysis.findings.trials {
        *per_worker
            .entry(t.worker)
            .or_default()
            .entry(t.state.as_str())
            .or_default() += 1;
    }
    per_worker
        .iter()
        .map(|(worker, states)| {
            let total: usize = states.values().sum();
            let parts: Vec<String> = states
                .iter()
                .map(|(state, n)| format!("{n} {}", escape(state)))
                .collect();
            format!(
                "Worker {worker} ran {total} trial(s) ({}).",
                parts.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn after_crash(out: &mut String, input: &ReportInput) {
    let _ = writeln!(out, "## After the crash\n");
    let last = input.analysis.last_sample_ns.unwrap_or(0);
    let _ = writeln!(
        out,
        "- The last sample was taken at {}. Nothing after it was recorded.",
        when(input, last)
    );
    if let Some(s) = &input.analysis.system {
        let from = last.saturating_sub(300_000_000_000);
        let recent: Vec<_> = s.timeline.buckets().filter(|b| b.t_ns >= from).collect();
        let min_available = recent
            .iter()
            .filter_map(|b| b.min[slot::AVAILABLE])
            .fold(f64::INFINITY, f64::min);
        let max_psi = recent
            .iter()
            .filter_map(|b| b.max[slot::PSI_FULL])
            .fold(None, |a: Option<f64>, p| Some(a.map_or(p, |a| a.max(p))));
        if min_available.is_finite() {
            let _ = writeln!(
                out,
                "- In the last {} before it: available memory at least {} of {}; memory PSI full avg10 at most {}.",
                duration((last - from) as f64 / 1e9),
                size(min_available),
                size(s.mem_total_bytes),
                max_psi.map_or("not recorded".to_string(), |p| format!("{p:.1}%"))
            );
        }
    }
    for (worker, timeline) in &input.analysis.timelines {
        let level = timeline
            .buckets()
            .last()
            .and_then(|b| b.last[Kind::Pss as usize].or(b.last[Kind::Rss as usize]));
        let running: Vec<String> = input
            .analysis
            .findings
            .trials
            .iter()
            .filter(|t| t.worker == *worker && t.state == "running")
            .map(|t| {
                format!(
                    "trial {} (started {})",
                    escape(&t.trial),
                    t.start_ns.map_or("?".into(), |s| when(input, s))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "- Worker {worker}: {} at the end; {}.",
            level.map_or("memory unknown".into(), size),
            if running.is_empty() {
                "no trial running".to_string()
            } else {
                format!("running {}", running.join(", "))
            }
        );
    }
    match &input.current_boot_id {
        Some(now) if *now != input.manifest.boot_id => {
            let _ = writeln!(
                out,
                "- **The host rebooted since**: the recording's boot id is {}, this host's is now {}. A reboot after a freeze or a kernel panic looks like this.",
                escape(&input.manifest.boot_id),
                escape(now)
            );
        }
        Some(_) => {
            let _ = writeln!(
                out,
                "- The host has not rebooted since (same boot id): the harness itself was stopped (SIGKILL, OOM kill of the harness) rather than the machine."
            );
        }
        None => {}
    }
    out.push('\n');
}

pub fn memory_pattern(out: &mut String, input: &ReportInput) {
    if input.plots.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Memory pattern\n");
    for plot in &input.plots {
        let _ = writeln!(out, "![{}]({})\n", plot.title, plot.file);
    }
}

/// Per worker, how often its PSS was read and fresh: a worker whose reads failed shows here.
fn sampler_health(out: &mut String, health: &[crate::analysis::SamplerHealth]) {
    if health.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nSampler health (PSS is read as the CPU budget allows and carried while fresh; on stale ticks only RSS and anonymous memory are known):\n"
    );
    let _ = writeln!(
        out,
        "| worker | ticks | PSS read | PSS fresh | stale |\n|---|---|---|---|---|"
    );
    for h in health {
        let share = |n: u64| format!("{n} ({:.0}%)", 100.0 * n as f64 / h.pss.ticks.max(1) as f64);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            h.worker,
            h.pss.ticks,
            share(h.pss.read_ticks),
            share(h.pss.fresh_ticks),
            share(h.pss.stale_ticks())
        );
    }
}

/// Per worker, how each trial's retained level was read at its end (issue 36).
fn boundary_reads(out: &mut String, reads: &[crate::analysis::boundary::BoundaryReads]) {
    if reads.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nBoundary reads (what each trial retained, read at its end line: by the worker itself, or by memwarden as the line arrived; never a sample taken after the next trial began):\n"
    );
    for line in crate::analysis::boundary::BoundaryReads::lines(reads) {
        let _ = writeln!(out, "- {line}");
    }
}

/// Whether GPU memory was recorded, and if not why (the sampler's one note): never zeros.
fn gpu_recorded(input: &ReportInput) -> String {
    if !input.analysis.devices.is_empty() {
        let n = input.analysis.devices.len();
        return format!("recorded, {n} device(s)");
    }
    input
        .events
        .iter()
        .find_map(|e| match &e.kind {
            crate::recording::EventKind::Note { message } => message
                .strip_prefix("GPU data unavailable: ")
                .map(|why| format!("not recorded: {}", escape(why))),
            _ => None,
        })
        .unwrap_or_else(|| "not recorded".into())
}

pub fn appendix(out: &mut String, input: &ReportInput) {
    let m = input.manifest;
    let _ = writeln!(out, "## Appendix\n");
    let rows = [
        ("host", escape(&m.host)),
        ("kernel", escape(&m.kernel)),
        ("boot id", escape(&m.boot_id)),
        ("command", escape(&m.command.join(" "))),
        ("mode", escape(&m.mode)),
        (
            "recorded by",
            format!("memwarden {}", escape(&m.memwarden_version)),
        ),
        (
            "report by",
            format!("memwarden {}", escape(&input.reporter_version)),
        ),
        ("recording format", m.format_version.to_string()),
        (
            "sampling interval",
            humantime::format_duration(std::time::Duration::from_nanos(m.interval_ns)).to_string(),
        ),
        ("start", m.start_rfc3339.clone()),
        ("GPU memory", gpu_recorded(input)),
    ];
    let _ = writeln!(out, "| | |\n|---|---|");
    for (name, value) in rows {
        let _ = writeln!(out, "| {name} | {value} |");
    }
    sampler_health(out, &input.analysis.findings.sampler_health);
    boundary_reads(out, &input.analysis.findings.boundary_reads);
    let _ = writeln!(out, "\nData files:\n");
    for (name, bytes) in &input.data_files {
        let _ = writeln!(out, "- {} ({} bytes)", escape(name), bytes);
    }
}
