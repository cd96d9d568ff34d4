//! Findings in plain words for a terminal: the verdict first, then the numbers behind it.

use super::findings::{Basis, Findings, KindFinding, Rate, WorkerFinding};
use super::gates::{Change, CheckReport, Comparison, Per};
use super::verdict::Verdict;
use crate::units::{duration, size, MIB};
use std::fmt::Write;

/// `+8.02 MiB/trial (95% CI 7.90..8.15)`.
pub fn rate(r: &Rate, per: &str) -> String {
    format!(
        "{:+.2} MiB/{per} (95% CI {:.2}..{:.2})",
        r.bytes / MIB,
        r.low_bytes / MIB,
        r.high_bytes / MIB
    )
}

fn kind_rate(k: &KindFinding) -> String {
    match (k.basis, k.per_trial, k.per_hour) {
        (Basis::Trials, Some(t), Some(h)) => {
            format!("{}, {:+.0} MiB/h", rate(&t, "trial"), h.bytes / MIB)
        }
        (Basis::Trials, Some(t), None) => rate(&t, "trial"),
        (_, _, Some(h)) => rate(&h, "h"),
        _ => "no rate".into(),
    }
}

fn worker(out: &mut String, w: &WorkerFinding) {
    let Some(k) = w.kind_finding(w.kind) else {
        let _ = writeln!(out, "worker {}: insufficient data", w.worker);
        return;
    };
    let verdict = match w.verdict {
        Verdict::Leak => "LEAK".to_string(),
        other => other.word().to_string(),
    };
    let _ = writeln!(
        out,
        "worker {}: {verdict} in {}, {}",
        w.worker,
        w.kind.words(),
        kind_rate(k)
    );
    let mut facts = Vec::new();
    if let Some(first) = &k.first_clear_trial {
        facts.push(format!("clear from trial {first}"));
    }
    if let Some(step) = &k.step {
        facts.push(format!(
            "one step of {} at trial {}",
            size(step.size_bytes),
            step.trial
        ));
    } else if let Some(from) = &k.plateau_from_trial {
        facts.push(format!("flat from trial {from}"));
    }
    if w.verdict != Verdict::InsufficientData {
        facts.push(format!("confidence of growth {:.1}%", 100.0 * k.confidence));
    }
    if let (Some(first), Some(last)) = (k.first_bytes, k.last_bytes) {
        let over = match k.basis {
            Basis::Trials => format!("{} trials", w.trials),
            Basis::Time => "the run".into(),
        };
        facts.push(format!(
            "retained {} -> {} over {over}",
            size(first),
            size(last)
        ));
    }
    if let Some(peak) = k.peak_bytes {
        facts.push(format!("peak {}", size(peak)));
    }
    let _ = writeln!(out, "  {}", facts.join("; "));
    if let Some(p) = &w.process {
        let role = if p.main {
            "main process"
        } else {
            "child process"
        };
        let share = p.share.map_or(String::new(), |s| {
            format!(", {:.0}% of the growth", 100.0 * s)
        });
        let _ = writeln!(
            out,
            "  process: pid {} ({role}) `{}`{share}",
            p.pid,
            p.command.trim()
        );
    }
    for m in &w.mappings {
        let regions = match (m.regions_added, m.region_bytes) {
            (n, Some(each)) if n > 0 => format!(", {n} new of ~{} each", size(each)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  mapping {:+.1} MiB  {}{regions}",
            m.growth_bytes / MIB,
            m.name
        );
    }
    for hint in &w.hints {
        let _ = writeln!(out, "  hint: {hint}");
    }
    let others: Vec<String> = w
        .kinds
        .iter()
        .filter(|o| o.kind != w.kind)
        .map(|o| {
            let r = match o.basis {
                Basis::Trials => o.per_trial.map(|r| format!("{:+.2}/trial", r.bytes / MIB)),
                Basis::Time => o.per_hour.map(|r| format!("{:+.1}/h", r.bytes / MIB)),
            };
            format!(
                "{} {} {}",
                o.kind.name(),
                o.verdict.word(),
                r.unwrap_or_default()
            )
        })
        .collect();
    let _ = writeln!(out, "  all kinds (MiB): {}", others.join(", "));
}

pub fn findings(f: &Findings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} worker(s), {} trial(s), {}, {}",
        f.run.dir,
        f.run.workers,
        f.run.trials,
        duration(f.run.duration_s),
        f.run.status
    );
    let _ = writeln!(out, "verdict: {}", f.verdict.word());
    for w in &f.workers {
        out.push('\n');
        worker(&mut out, w);
    }
    if !f.parameters.is_empty() {
        let _ = writeln!(out, "\nparameters that go with retained growth:");
        for p in &f.parameters {
            let what = match (&p.value, p.rho) {
                (Some(v), _) => format!("{}={v}", p.name),
                (None, Some(rho)) => format!("{} (larger values grow more, rho {rho:.2})", p.name),
                (None, None) => p.name.clone(),
            };
            let interval = match (p.effect_low_bytes, p.effect_high_bytes) {
                (Some(low), Some(high)) => {
                    format!(" (95% CI {:.2}..{:.2})", low / MIB, high / MIB)
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {what}: {:+.2} MiB retained per trial{interval} more than otherwise ({} vs {} trials, p = {:.2e})",
                p.effect_bytes / MIB,
                p.trials_with,
                p.trials_without,
                p.p_value
            );
        }
    }
    if let Some(fc) = &f.forecast {
        out.push('\n');
        match (fc.exhausted_in_hours, fc.exhausted_in_trials) {
            (Some(hours), trials) => {
                let trials = trials.map_or(String::new(), |t| {
                    format!(", ~{t:.0} more trials per worker")
                });
                let _ = writeln!(
                    out,
                    "forecast: at {:+.0} MiB/h in total, the {} still available (less a 10% reserve) run out in ~{}{trials}",
                    fc.growth_bytes_per_hour / MIB,
                    size(fc.available_bytes),
                    duration(hours * 3600.0)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "forecast: no leak, so memory does not run out at this rate ({} total, {} available)",
                    size(fc.mem_total_bytes),
                    size(fc.available_bytes)
                );
            }
        }
        for advice in &fc.advice {
            let _ = writeln!(out, "  - {advice}");
        }
    }
    for note in &f.notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    out
}

pub fn check(report: &CheckReport) -> String {
    let mut out = String::new();
    let per = report.budget.per.unit();
    for w in &report.workers {
        let _ = writeln!(
            out,
            "worker {}: {} {} {} budget {:.2} MiB/{per} ({})",
            w.worker,
            report.kind.name(),
            rate(&w.rate, per),
            if w.exceeds { "EXCEEDS" } else { "within" },
            report.budget.bytes / MIB,
            w.verdict.word()
        );
    }
    out
}

pub fn comparison(c: &Comparison) -> String {
    let per = c.per.unit();
    let what = match c.change {
        Change::Less => "less growth",
        Change::More => "MORE growth",
        Change::Unchanged => "no significant change in growth",
    };
    let fraction = c
        .change_fraction
        .map_or(String::new(), |f| format!(" ({:+.0}%)", 100.0 * f));
    let mut out = format!(
        "{what}: {} {:+.2} MiB/{per}{fraction}, confidence {:.1}%\n",
        c.kind.name(),
        c.change_bytes / MIB,
        100.0 * c.confidence
    );
    for (name, side) in [("before", &c.before), ("after", &c.after)] {
        let _ = writeln!(
            out,
            "  {name}: worker {} {} {}",
            side.worker,
            side.verdict.word(),
            rate(&side.rate, per)
        );
    }
    if c.per == Per::Hour {
        out.push_str("  (compared per hour: at least one run has no trials)\n");
    }
    out
}
