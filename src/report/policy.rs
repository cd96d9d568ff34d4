//! What the policy did (live) or would have done (`memwarden simulate`): the counts, the
//! restarts and their reasons, and for a simulation what memory would then have looked like.

use super::sections::when;
use super::ReportInput;
use crate::markdown::escape;
use crate::recording::{Event, EventKind};
use crate::units::{duration, size};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Restarts and other decisions listed one by one, at most.
const MAX_LISTED: usize = 20;

/// `(event, action, reason)` of the policy events, simulated or live.
fn policy_events<'a>(
    input: &ReportInput<'a>,
    simulated: bool,
) -> Vec<(&'a Event, &'a str, &'a str)> {
    input
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Policy {
                action,
                reason,
                simulated: s,
                ..
            } if *s == simulated => Some((e, action.as_str(), reason.as_str())),
            _ => None,
        })
        .collect()
}

pub fn policy(out: &mut String, input: &ReportInput) {
    let live = policy_events(input, false);
    if !live.is_empty() {
        let _ = writeln!(out, "## Enforcement\n");
        summary(out, input, &live, "acted");
        if let Some(containment) = &input.analysis.findings.containment {
            containment_figures(out, containment);
        }
    }
    if let Some(simulation) = input.simulation {
        let simulated = policy_events(input, true);
        let _ = writeln!(out, "## Policy simulation\n");
        let _ = writeln!(
            out,
            "`memwarden simulate` replayed this recording through the policy engine that runs live. The model: a restarted worker drops back to the PSS it started with and then grows as recorded; what it freed is added to available memory. A worker the recording shows asking at the gate is told to wait; any other is paused between trials, as live; the recording cannot show what a held-back trial would have changed, so trials still happen as recorded.\n"
        );
        if simulated.is_empty() {
            let _ = writeln!(out, "The policy would not have acted on this run.\n");
        } else {
            summary(out, input, &simulated, "would have acted");
        }
        if let Some((recorded, after)) = simulation.min_available() {
            let _ = writeln!(
                out,
                "Lowest available memory: **{}** as recorded, **{}** under the policy.\n",
                size(recorded as f64),
                size(after as f64)
            );
        }
        if !simulation.peaks.is_empty() {
            let _ = writeln!(
                out,
                "| worker | peak PSS recorded | peak PSS under the policy |\n|---|---|---|"
            );
            for (worker, (recorded, after)) in &simulation.peaks {
                let _ = writeln!(
                    out,
                    "| {worker} | {} | {} |",
                    size(*recorded as f64),
                    size(*after as f64)
                );
            }
            out.push('\n');
        }
    }
}

/// Whether the brake kept the search going: its time, pauses, and trials completed around it.
fn containment_figures(out: &mut String, c: &crate::analysis::containment::Containment) {
    let rate = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{r:.1}"));
    let _ = writeln!(
        out,
        "| brake on | escalations | restarts | trials/min before the first brake | trials/min after | longest stretch without a completed trial |\n|---|---|---|---|---|---|\n| {} (first at +{}) | {} | {} | {} | {} | {} (from +{}) |\n",
        duration(c.brake_on_s),
        duration(c.first_brake_s),
        c.escalations,
        c.restarts,
        rate(c.trials_per_minute_before),
        rate(c.trials_per_minute_after),
        duration(c.longest_without_trial_s),
        duration(c.longest_from_s),
    );
    if !c.paused_s.is_empty() {
        let paused: Vec<String> = c
            .paused_s
            .iter()
            .map(|(w, s)| format!("worker {w} {}", duration(*s)))
            .collect();
        let _ = writeln!(out, "Paused by the brake: {}.\n", paused.join(", "));
    }
    if c.stalled {
        let _ = writeln!(
            out,
            "**Containment stalled**: for {} no trial completed, longer than escalation.after + restart.grace ({}). The brake kept memory from running out by holding the search, and no restart freed memory in that time.\n",
            duration(c.longest_without_trial_s),
            duration(c.bound_s)
        );
    }
}

fn summary(out: &mut String, input: &ReportInput, events: &[(&Event, &str, &str)], verb: &str) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, action, _) in events {
        *counts.entry(action).or_default() += 1;
    }
    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
    let held = count("refuse") + count("pause");
    let restarts: Vec<_> = events
        .iter()
        .filter(|(_, action, _)| *action == "stop")
        .collect();
    let escalations = restarts
        .iter()
        .filter(|(_, _, reason)| reason.starts_with("escalation"))
        .count();
    let _ = writeln!(
        out,
        "The policy {verb}: the brake engaged **{}** time(s) and held back **{held}** trial(s); **{}** worker restart(s), **{escalations}** of them by escalation; {} crash back-off(s); {} worker(s) given up.\n",
        count("brake_on"),
        restarts.len(),
        count("back_off"),
        count("give_up"),
    );
    if restarts.is_empty() && count("give_up") == 0 {
        return;
    }
    let _ = writeln!(out, "| time (UTC, elapsed) | worker | action | why | worker PSS | available |\n|---|---|---|---|---|---|");
    let listed: Vec<_> = events
        .iter()
        .filter(|(event, action, _)| {
            matches!(*action, "stop" | "give_up")
                || (*action == "escalate" && event.worker.is_none())
        })
        .collect();
    for (event, action, reason) in listed.iter().take(MAX_LISTED) {
        let (pss, available) = match &event.kind {
            EventKind::Policy {
                worker_pss_bytes,
                available_bytes,
                ..
            } => (*worker_pss_bytes, *available_bytes),
            _ => (None, None),
        };
        let show = |b: Option<u64>| b.map_or("—".to_string(), |b| size(b as f64));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            when(input, event.t_ns),
            event.worker.map_or("—".into(), |w| w.to_string()),
            match *action {
                "stop" => "restart",
                "escalate" => "escalation, no restart",
                _ => "give up",
            },
            escape(reason),
            show(pss),
            show(available)
        );
    }
    if listed.len() > MAX_LISTED {
        let _ = writeln!(out, "| | | … {} more | | | |", listed.len() - MAX_LISTED);
    }
    out.push('\n');
}
