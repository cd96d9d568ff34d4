//! Findings in plain words for a terminal: the verdict first, then the numbers behind it. What
//! is said comes from `statements`; this file only words it as terse lines.

use super::statements::{self, Fact, GrowthRate, WorkerStatement};
use super::statements::{ForecastStatement, Outlook, ParameterStatement, ParameterWhat};
use crate::analysis::judge::compare::{Change, Comparison};
use crate::analysis::judge::findings::{Basis, Findings, WorkerFinding};
use crate::analysis::judge::gates::{CheckReport, Per};
use crate::analysis::judge::verdict::Verdict;
use crate::analysis::measures::Rate;
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

pub(super) fn growth_rate(r: &GrowthRate) -> String {
    match r {
        GrowthRate::PerTrial {
            trial,
            hour: Some(h),
        } => format!("{}, {:+.0} MiB/h", rate(trial, "trial"), h.bytes / MIB),
        GrowthRate::PerTrial { trial, hour: None } => rate(trial, "trial"),
        GrowthRate::PerHour(h) => rate(h, "h"),
        GrowthRate::Unknown => "no rate".into(),
    }
}

fn worker(out: &mut String, w: &WorkerStatement) {
    let Some(growth) = &w.rate else {
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
        growth_rate(growth)
    );
    // The short facts share one line; each longer one gets its own.
    let mut clauses = Vec::new();
    let mut lines = Vec::new();
    for fact in &w.facts {
        match fact {
            Fact::ClearFrom { trial } => clauses.push(format!("clear from trial {trial}")),
            Fact::Step { size_bytes, trial } => clauses.push(format!(
                "one step of {} at trial {trial}",
                size(*size_bytes)
            )),
            Fact::FlatFrom { trial } => clauses.push(format!("flat from trial {trial}")),
            Fact::Confidence { fraction } => {
                clauses.push(format!("confidence of growth {:.1}%", 100.0 * fraction))
            }
            Fact::Retained {
                span,
                trials,
                peak_bytes,
            } => {
                if let Some((first, last)) = span {
                    let over = trials.map_or("the run".into(), |n| format!("{n} trials"));
                    clauses.push(format!(
                        "retained {} -> {} over {over}",
                        size(*first),
                        size(*last)
                    ));
                }
                if let Some(peak) = peak_bytes {
                    clauses.push(format!("peak {}", size(*peak)));
                }
            }
            Fact::Process {
                pid,
                main,
                command,
                share,
            } => {
                let role = if *main {
                    "main process"
                } else {
                    "child process"
                };
                let share = share.map_or(String::new(), |s| {
                    format!(", {:.0}% of the growth", 100.0 * s)
                });
                lines.push(format!(
                    "process: pid {pid} ({role}) `{}`{share}",
                    command.trim()
                ));
            }
            Fact::Mapping {
                name,
                growth_bytes,
                new_regions,
            } => {
                let regions = new_regions.map_or(String::new(), |(n, each)| {
                    format!(", {n} new of ~{} each", size(each))
                });
                lines.push(format!(
                    "mapping {:+.1} MiB  {name}{regions}",
                    growth_bytes / MIB
                ));
            }
            // Its own function destructures every field, as here.
            Fact::Site { .. } => lines.push(site_line(fact)),
            Fact::Holder(h) => {
                let (headline, mechanism) = h.words();
                lines.push(format!("holder {headline}"));
                lines.extend(mechanism.map(|m| format!("  {m}")));
            }
            Fact::Traced { .. } => lines.push(traced_line(fact)),
            Fact::Diagnosis(d) => {
                let (name, evidence, fix) = statements::diagnosis_words(d);
                lines.push(format!("diagnosis: {name}: {evidence}; what helps: {fix}"));
            }
            Fact::Study(study) => {
                let (evidence, fix) = statements::study_words(study);
                lines.push(format!("study-side growth: {evidence}; {fix}"));
            }
            Fact::Hint(hint) => lines.push(format!("hint: {hint}")),
            Fact::OtherKinds(others) => lines.push(other_kinds_line(others)),
        }
    }
    let _ = writeln!(out, "  {}", clauses.join("; "));
    for line in lines {
        let _ = writeln!(out, "  {line}");
    }
}

/// A traced line that keeps the growth.
fn site_line(fact: &Fact) -> String {
    let Fact::Site {
        file,
        line,
        code,
        via,
        study,
        processes,
        per_trial,
        parameter,
    } = fact
    else {
        unreachable!("bug: only sites")
    };
    let whose = if *study { "study-side line" } else { "line" };
    let whose = match processes {
        1 => whose.to_string(),
        n => format!("{whose} (in {n} processes)"),
    };
    let code = code.map_or(String::new(), |c| format!("  `{c}`"));
    let with = parameter.map_or(String::new(), |p| format!(", with {p}"));
    let via = via.map_or(String::new(), |v| format!(" (allocated in {v})"));
    format!(
        "{whose} {}  {file}:{line}{code}{with}{via}",
        rate(per_trial, "trial")
    )
}

/// What the tracer saw and cost.
fn traced_line(fact: &Fact) -> String {
    let Fact::Traced {
        processes,
        reports,
        explained,
        mean_cost_ms,
        max_cost_ms,
        slowdown,
        gap,
        stretch,
        native,
    } = fact
    else {
        unreachable!("bug: only traces")
    };
    let whose = if *native {
        " (native allocations, sampled)"
    } else {
        ""
    };
    let explained = explained.map_or(String::new(), |e| {
        format!(
            ", the lines above{whose} explain {:.0}% of the growth",
            100.0 * e
        )
    });
    format!(
        "traced: {processes} Python process(es), {reports} trial report(s){explained}; {mean_cost_ms:.1} ms per boundary (at most {max_cost_ms:.1}){}",
        duty_words(*slowdown, *gap, *stretch)
    )
}

/// Every kind's verdict and rate, in MiB.
fn other_kinds_line(others: &[super::statements::OtherKind]) -> String {
    let others: Vec<String> = others
        .iter()
        .map(|o| {
            let r = o.bytes.map(|b| match o.basis {
                Basis::Trials => format!("{:+.2}/trial", b / MIB),
                Basis::Time => format!("{:+.1}/h", b / MIB),
            });
            format!(
                "{} {} {}",
                o.kind.name(),
                o.verdict.word(),
                r.unwrap_or_default()
            )
        })
        .collect();
    format!("all kinds (MiB): {}", others.join(", "))
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
        worker(&mut out, &statements::worker(w));
    }
    parameters(&mut out, f);
    if let Some(fc) = &f.forecast {
        forecast(&mut out, fc);
    }
    let outside = statements::outside_words(f);
    if !outside.is_empty() {
        out.push('\n');
    }
    for line in outside {
        let _ = writeln!(out, "shared memory and memory outside the trees: {line}");
    }
    if let Some(oom) = statements::oom(f) {
        out.push('\n');
        for line in statements::oom_words(&oom) {
            let _ = writeln!(out, "oom: {line}");
        }
    }
    if !f.boundary_reads.is_empty() {
        out.push('\n');
    }
    for line in crate::analysis::load::boundary::BoundaryReads::lines(&f.boundary_reads) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(containment) = &f.containment {
        out.push('\n');
        for line in containment.words() {
            let _ = writeln!(out, "containment: {line}");
        }
    }
    for note in &f.notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    out
}

/// The parameter values that go with retained growth, a line each.
fn parameters(out: &mut String, f: &Findings) {
    let parameters = statements::parameters(f);
    if !parameters.is_empty() {
        let _ = writeln!(out, "\nparameters that go with retained growth:");
    }
    for ParameterStatement {
        what,
        effect_bytes,
        interval,
        trials_with,
        trials_without,
        p_value,
    } in &parameters
    {
        let what = match what {
            ParameterWhat::Value { name, value } => format!("{name}={value}"),
            ParameterWhat::Trend { name, rho } => {
                format!("{name} (larger values grow more, rho {rho:.2})")
            }
            ParameterWhat::Name(name) => name.to_string(),
        };
        let interval = interval.map_or(String::new(), |(low, high)| {
            format!(" (95% CI {:.2}..{:.2})", low / MIB, high / MIB)
        });
        let _ = writeln!(
            out,
            "  {what}: {:+.2} MiB retained per trial{interval} more than otherwise ({trials_with} vs {trials_without} trials, p = {p_value:.2e})",
            effect_bytes / MIB,
        );
    }
}

/// Whether and when memory runs out at this rate, and what to do about it.
fn forecast(out: &mut String, fc: &crate::analysis::judge::findings::Forecast) {
    // The report adds a line about restart rules; here the advice lines say it.
    let ForecastStatement {
        outlook,
        advice,
        restart_rules_help: _,
    } = statements::forecast(fc);
    out.push('\n');
    match outlook {
        Outlook::RunsOut {
            growth_bytes_per_hour,
            available_bytes,
            hours,
            trials,
        } => {
            let trials = trials.map_or(String::new(), |t| {
                format!(", ~{t:.0} more trials per worker")
            });
            let _ = writeln!(
                out,
                "forecast: at {:+.0} MiB/h in total, the {} still available (less a 10% reserve) run out in ~{}{trials}",
                growth_bytes_per_hour / MIB,
                size(available_bytes),
                duration(hours * 3600.0)
            );
        }
        Outlook::RunsOutInTrials {
            growth_bytes_per_trial,
            available_bytes,
            trials,
            window_s,
        } => {
            let _ = writeln!(
                out,
                "forecast: at {:+.2} MiB/trial in total, the {} still available (less a 10% reserve) run out in ~{trials:.0} more trials per worker; no time is projected from {} of recording (a rate per hour needs {})",
                growth_bytes_per_trial / MIB,
                size(available_bytes),
                duration(window_s),
                duration(crate::analysis::judge::gates::MIN_HOURLY_WINDOW_S)
            );
        }
        Outlook::Holds {
            mem_total_bytes,
            available_bytes,
        } => {
            let _ = writeln!(
                out,
                "forecast: no leak, so memory does not run out at this rate ({} total, {} available)",
                size(mem_total_bytes),
                size(available_bytes)
            );
        }
    }
    for advice in advice {
        let _ = writeln!(out, "  - {advice}");
    }
}

/// `; a traced trial took 15.2x as long, so the tracer traces 3 of every 12 trials`, or nothing.
pub fn duty_words(slowdown: Option<f64>, gap: Option<u32>, stretch: Option<u32>) -> String {
    match (slowdown, gap) {
        (Some(s), Some(g)) if g > 0 => {
            let stretch = stretch.unwrap_or(1);
            format!(
                "; a traced trial took {s:.1}x as long, so the tracer traces {stretch} of every {} trials",
                stretch + g
            )
        }
        (Some(s), _) => format!("; a traced trial took {s:.2}x as long, so every trial is traced"),
        _ => String::new(),
    }
}

/// `, at search.py:20 `features = np.ones(...)`` for the worker's fastest-growing line of its
/// own code (`--trace-python`), or nothing: for the one-line verdicts of soak and replay.
/// What a leaking worker leaks, at which rate and on which line, in one clause for the lines
/// that end a run and a soak's reasons: `anonymous memory, +5.00 MiB/trial (95% CI
/// 4.90..5.10), at train.py:42`.
pub fn leak_clause(w: &WorkerFinding) -> String {
    let rate = statements::worker(w)
        .rate
        .map_or("no rate".to_string(), |r| growth_rate(&r));
    format!("{}, {rate}{}", w.kind.words(), site_clause(w))
}

pub fn site_clause(w: &WorkerFinding) -> String {
    let Some(site) = w.top_site() else {
        return String::new();
    };
    let code = site
        .code
        .as_deref()
        .map_or(String::new(), |c| format!(" `{c}`"));
    format!(", at {}:{}{code}", site.file, site.line)
}

mod ci;
pub use ci::{check, comparison};
