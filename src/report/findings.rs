//! The findings as the report words them: the root cause per worker and parameter, and the
//! forecast. What is said comes from `analysis::statements`; this file words it as Markdown
//! sentences, escaping whatever a worker or a user wrote.

use super::ReportInput;
use crate::analysis::statements::{self, Fact, ForecastStatement, GrowthRate, Outlook};
use crate::analysis::statements::{ParameterStatement, ParameterWhat};
use crate::analysis::{Verdict, WorkerFinding};
use crate::markdown::{self, escape};
use crate::units::{duration, size, MIB};
use std::fmt::Write;

pub(super) fn rate_words(w: &WorkerFinding) -> String {
    match statements::worker(w).rate {
        Some(GrowthRate::PerTrial { trial: t, hour: _ }) => format!(
            "{:.2} MiB per trial (95% CI {:.2}..{:.2})",
            t.bytes / MIB,
            t.low_bytes / MIB,
            t.high_bytes / MIB
        ),
        Some(GrowthRate::PerHour(h)) => format!(
            "{:.1} MiB per hour (95% CI {:.1}..{:.1})",
            h.bytes / MIB,
            h.low_bytes / MIB,
            h.high_bytes / MIB
        ),
        Some(GrowthRate::Unknown) | None => "an unknown amount".into(),
    }
}

pub fn root_cause(out: &mut String, input: &ReportInput) {
    let _ = writeln!(out, "## Root cause\n");
    let f = &input.analysis.findings;
    for w in &f.workers {
        let statement = statements::worker(w);
        if statement.rate.is_none() {
            continue;
        }
        if !matches!(w.verdict, Verdict::Leak | Verdict::Plateau) {
            let _ = writeln!(
                out,
                "- **Worker {}**: {} ({} {}).",
                w.worker,
                w.verdict.word(),
                w.kind.words(),
                rate_words(w)
            );
            // The study's own growth is told whatever the verdict.
            let study: Vec<Fact> = statement
                .facts
                .into_iter()
                .filter(|f| matches!(f, Fact::Study(_)))
                .collect();
            for bullet in worker_bullets(&study).1 {
                let _ = writeln!(out, "  - {bullet}.");
            }
            continue;
        }
        let (confidence, bullets) = worker_bullets(&statement.facts);
        let _ = writeln!(
            out,
            "- **Worker {}: {}** in {}, {}; confidence of growth {:.1}%.",
            w.worker,
            w.verdict.word(),
            w.kind.words(),
            rate_words(w),
            100.0 * confidence
        );
        for bullet in bullets {
            let _ = writeln!(out, "  - {bullet}.");
        }
    }
    for ParameterStatement {
        what,
        effect_bytes,
        // The report leaves the effect's interval to `analyze`; the p-value says enough here.
        interval: _,
        trials_with,
        trials_without,
        p_value,
    } in statements::parameters(f)
    {
        let what = match what {
            ParameterWhat::Value { name, value } => format!("{}={}", escape(name), escape(value)),
            ParameterWhat::Trend { name, rho } => {
                format!("{} (rank correlation {rho:.2})", escape(name))
            }
            ParameterWhat::Name(name) => escape(name),
        };
        let _ = writeln!(
            out,
            "- **Parameter {what}**: {:+.2} MiB retained per trial more than other trials ({trials_with} against {trials_without} trials, p = {p_value:.1e}).",
            effect_bytes / MIB,
        );
    }
    for note in &f.notes {
        let _ = writeln!(out, "- Note: {note}.");
    }
    out.push('\n');
}

/// A leaking or plateaued worker's facts as sentences (without their full stop), and the
/// confidence, which the report tells in the worker's headline instead.
fn worker_bullets(facts: &[Fact]) -> (f64, Vec<String>) {
    let mut confidence = 0.0;
    let mut bullets = Vec::new();
    for fact in facts {
        match fact {
            Fact::ClearFrom { trial } => {
                bullets.push(format!("Clear from trial {}", escape(trial)))
            }
            Fact::Step { size_bytes, trial } => bullets.push(format!(
                "One step of {} at trial {}, flat before and after",
                size(*size_bytes),
                escape(trial)
            )),
            Fact::FlatFrom { trial } => {
                bullets.push(format!("Flat from trial {} on", escape(trial)))
            }
            Fact::Confidence { fraction } => confidence = *fraction,
            // Without a start and an end there is no sentence to make; the plots show the peak.
            Fact::Retained {
                span,
                trials: _,
                peak_bytes,
            } => {
                if let Some((first, last)) = span {
                    bullets.push(format!(
                        "Retained {} at the start, {} at the end; peak {}",
                        size(*first),
                        size(*last),
                        peak_bytes.map_or("unknown".into(), size)
                    ));
                }
            }
            Fact::Process {
                pid,
                main,
                command,
                share,
            } => bullets.push(format!(
                "Process: pid {pid} ({}), {}{}",
                if *main {
                    "the worker's main process"
                } else {
                    "a child process"
                },
                escape(command),
                share.map_or(String::new(), |s| format!(
                    ", {:.0}% of the growth",
                    100.0 * s
                ))
            )),
            Fact::Mapping {
                name,
                growth_bytes,
                new_regions,
            } => bullets.push(format!(
                "Mapping {}: {:+.1} MiB{}",
                escape(name),
                growth_bytes / MIB,
                new_regions.map_or(String::new(), |(n, each)| format!(
                    ", {n} new region(s) of about {} each",
                    size(each)
                ))
            )),
            // Its own function destructures every field, as here.
            Fact::Site { .. } => bullets.push(site_sentence(fact)),
            Fact::Holder(h) => {
                let (headline, mechanism) = h.words();
                let rest = headline.strip_prefix(&h.holder).unwrap_or(&headline);
                bullets.push(format!(
                    "Holder {}{}{}",
                    markdown::code(&h.holder),
                    escape(rest),
                    mechanism.map_or(String::new(), |m| format!(": {}", escape(&m)))
                ));
            }
            Fact::Traced { .. } => bullets.push(traced_sentence(fact)),
            Fact::Diagnosis(d) => {
                let (name, evidence, fix) = statements::diagnosis_words(d);
                bullets.push(format!(
                    "**Diagnosis: {name}**: {evidence}. What helps: {}",
                    escape(fix)
                ));
            }
            Fact::Study(study) => {
                let (evidence, fix) = statements::study_words(study);
                bullets.push(format!(
                    "**Study-side growth**: {}. What helps: {}",
                    escape(&evidence),
                    escape(fix)
                ));
            }
            Fact::Hint(hint) => bullets.push(format!("Hint: {hint}")),
            // The report's plots show every kind; the table of rates is `analyze`'s.
            Fact::OtherKinds(_) => {}
        }
    }
    (confidence, bullets)
}

/// A traced line that keeps the growth, as a sentence.
fn site_sentence(fact: &Fact) -> String {
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
    format!(
        "{} {}{} retains {:.2} MiB per trial (95% CI {:.2}..{:.2}){}{}{}",
        if *study {
            "Study-side line (the search framework's own state)"
        } else {
            "Line"
        },
        markdown::code(&format!("{file}:{line}")),
        match processes {
            1 => String::new(),
            n => format!(", in {n} processes,"),
        },
        per_trial.bytes / MIB,
        per_trial.low_bytes / MIB,
        per_trial.high_bytes / MIB,
        code.map_or(String::new(), |c| format!(": {}", markdown::code(c))),
        parameter.map_or(String::new(), |p| format!(", in trials with {}", escape(p))),
        via.map_or(String::new(), |v| format!(
            ", allocated in {}",
            markdown::code(v)
        ))
    )
}

/// What the tracer saw and cost, as a sentence.
fn traced_sentence(fact: &Fact) -> String {
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
    format!(
    "Traced {processes} Python process(es) over {reports} trial(s){}; the tracer took {mean_cost_ms:.1} ms per boundary (at most {max_cost_ms:.1}){}",
    explained.map_or(String::new(), |e| format!(
        ": the lines above{whose} explain {:.0}% of the growth",
        100.0 * e
    )),
    crate::analysis::text::duty_words(*slowdown, *gap, *stretch)
)
}

pub fn forecast(out: &mut String, input: &ReportInput) {
    let Some(fc) = &input.analysis.findings.forecast else {
        return;
    };
    let ForecastStatement {
        outlook,
        advice,
        restart_rules_help,
    } = statements::forecast(fc);
    let _ = writeln!(out, "## Forecast and recommendations\n");
    match outlook {
        Outlook::RunsOut {
            growth_bytes_per_hour,
            available_bytes,
            hours,
            trials,
        } => {
            let _ = writeln!(
                out,
                "At {:+.0} MiB/h in total, the {} still available (less a 10% reserve) run out in about {}{}.\n",
                growth_bytes_per_hour / MIB,
                size(available_bytes),
                duration(hours * 3600.0),
                trials.map_or(String::new(), |t| format!(", after about {t:.0} more trials per worker"))
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
                "At {:+.2} MiB/trial in total, the {} still available (less a 10% reserve) run out after about {trials:.0} more trials per worker. No time is projected: the run recorded {}, and a rate per hour needs {}.\n",
                growth_bytes_per_trial / MIB,
                size(available_bytes),
                duration(window_s),
                duration(crate::analysis::gates::MIN_HOURLY_WINDOW_S)
            );
        }
        // The report does not repeat the totals: the summary above gives them.
        Outlook::Holds {
            mem_total_bytes: _,
            available_bytes: _,
        } => {
            let _ = writeln!(
                out,
                "No leak, so memory does not run out at the measured rates.\n"
            );
        }
    }
    for advice in advice {
        let _ = writeln!(out, "- {advice}");
    }
    if restart_rules_help {
        let _ = writeln!(
            out,
            "- until the leak is fixed, run under a policy that restarts workers on these limits (memwarden's restart rules), so the machine never runs out"
        );
    }
    out.push('\n');
}
