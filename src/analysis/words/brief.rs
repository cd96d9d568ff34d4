//! The few lines that end a `run`, an `attach` or a `watch`: the run's verdict, then per worker
//! its verdict (leak, plateau, stable, crash), the kind and the rate, the line of code when the
//! tracer saw it (with the parameter value its growth goes with) and the study's own growth,
//! and the run's parameter value that goes with growth. The report says the rest.
//! Pure: findings and the workers' crashes in, lines out.

use super::statements::{self, ParameterWhat, RunVerdict};
use super::text::{growth_rate, leak_clause};
use crate::analysis::judge::findings::Findings;
use crate::analysis::judge::verdict::Verdict;
use crate::units::MIB;

/// `crashes`: per worker, how it ended when that was not memwarden's doing (`exited with code
/// 3`, `was killed by signal 9`).
pub fn brief(findings: &Findings, crashes: &[(u32, String)]) -> Vec<String> {
    // The run's verdict as the report's headline has it (`statements::run`), tersely.
    let said = statements::run(
        findings,
        statements::Ends {
            crashed_workers: crashes.len(),
            ..Default::default()
        },
    );
    let leaking: Vec<String> = said.leaking.iter().map(|w| w.worker.to_string()).collect();
    let mut headline = match leaking.as_slice() {
        [] => format!("verdict: no leak ({})", findings.verdict.word()),
        [one] => format!("verdict: LEAK in worker {one}"),
        many => format!("verdict: LEAK in workers {}", many.join(", ")),
    };
    if !crashes.is_empty() {
        headline.push_str(&format!(", {} CRASH(ES)", crashes.len()));
    } else if said.verdict == RunVerdict::Crash {
        headline.push_str(", OOM KILL(S)");
    }
    if said.verdict == RunVerdict::MemoryPressure {
        headline.push_str(", memory pressure");
    }
    let mut lines = vec![headline];
    for w in &findings.workers {
        let said = statements::worker(w);
        let memory = match (&said.rate, w.verdict) {
            (None, _) | (_, Verdict::InsufficientData) => {
                format!("too little data for a verdict ({} trial(s))", w.trials)
            }
            (Some(_), Verdict::Leak) => format!(
                "LEAK in {}{}",
                leak_clause(w),
                w.top_site()
                    .and_then(|site| site.parameter.as_deref())
                    .map_or(String::new(), |p| format!(", with {p}"))
            ),
            (Some(rate), verdict) => {
                format!(
                    "{} in {}, {}",
                    verdict.word(),
                    w.kind.words(),
                    growth_rate(rate)
                )
            }
        };
        match crashes.iter().find(|(worker, _)| *worker == w.worker) {
            Some((_, how)) => lines.push(format!(
                "  worker {}: CRASH: it {how}; memory: {memory}",
                w.worker
            )),
            None => lines.push(format!("  worker {}: {memory}", w.worker)),
        }
        // Told whatever the verdict: an in-memory study grows with every trial.
        if let Some(study) = w.tracing.as_ref().and_then(|t| t.study.as_ref()) {
            lines.push(format!("    {}", statements::study_brief(study)));
        }
    }
    // A worker that crashed before any sample has no finding; it still gets its line.
    for (worker, how) in crashes
        .iter()
        .filter(|(worker, _)| findings.workers.iter().all(|w| w.worker != *worker))
    {
        lines.push(format!("  worker {worker}: CRASH: it {how}"));
    }
    if let Some(p) = statements::parameters(findings).first() {
        let what = match p.what {
            ParameterWhat::Value { name, value } => format!("{name}={value}"),
            ParameterWhat::Trend { name, .. } => format!("larger {name}"),
            ParameterWhat::Name(name) => name.to_string(),
        };
        lines.push(format!(
            "  growth goes with {what}: {:+.2} MiB retained per trial more than otherwise",
            p.effect_bytes / MIB
        ));
    }
    if let Some(containment) = &findings.containment {
        let rate = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{r:.1}"));
        let mut line = format!(
            "  containment: {} trials/min before the first brake, {} after; longest stretch without a completed trial {}",
            rate(containment.trials_per_minute_before),
            rate(containment.trials_per_minute_after),
            crate::units::duration(containment.longest_without_trial_s)
        );
        if containment.stalled {
            line.push_str(&format!(
                ": CONTAINMENT STALLED (over escalation.after + restart.grace, {})",
                crate::units::duration(containment.bound_s)
            ));
        }
        lines.push(line);
    }
    for reads in findings.boundary_reads.iter().filter(|r| r.warn()) {
        lines.push(format!("  {}", reads.words()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::brief;
    use crate::analysis::analyze::{analyze, Options};
    use crate::analysis::judge::findings::Findings;
    use crate::recording::Recording;

    fn findings(name: &str) -> Findings {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/runs")
            .join(name);
        let recording = Recording::open(&dir).expect("fixture opens");
        analyze(&recording, &Options::default()).expect("analyzes")
    }

    #[test]
    fn a_leak_names_the_worker_kind_and_rate() {
        let lines = brief(&findings("leak"), &[]);
        assert_eq!(lines[0], "verdict: LEAK in worker 0");
        assert!(
            lines[1].starts_with("  worker 0: LEAK in anonymous memory, +"),
            "{lines:?}"
        );
        assert!(lines[1].contains(" MiB/trial (95% CI "), "{lines:?}");
    }

    #[test]
    fn a_plateau_is_no_leak_and_a_crash_is_said_with_the_workers_memory() {
        let findings = findings("plateau");
        let lines = brief(&findings, &[]);
        assert!(lines[0].starts_with("verdict: no leak ("), "{lines:?}");
        assert!(lines.iter().all(|l| !l.contains("LEAK")), "{lines:?}");
        let crashed = brief(
            &findings,
            &[
                (0, "was killed by signal 9".into()),
                (7, "exited with code 1".into()),
            ],
        );
        assert!(crashed[0].ends_with(", 2 CRASH(ES)"), "{crashed:?}");
        assert!(
            crashed[1].starts_with("  worker 0: CRASH: it was killed by signal 9; memory: "),
            "{crashed:?}"
        );
        assert!(
            crashed.contains(&"  worker 7: CRASH: it exited with code 1".to_string()),
            "a worker with no finding still gets its line: {crashed:?}"
        );
    }

    /// The brief's headline and the report's agree on the run's verdict (`statements::run`): a
    /// leak outweighs memory pressure, and pressure is said where nothing leaks.
    #[test]
    fn memory_pressure_is_said_where_nothing_leaks() {
        let mut plateau = findings("plateau");
        plateau.memory_pressure = true;
        let lines = brief(&plateau, &[]);
        assert!(lines[0].ends_with(", memory pressure"), "{lines:?}");
        let said = crate::analysis::statements::run(&plateau, Default::default());
        assert_eq!(said.verdict.words(), "memory pressure");
        let mut leak = findings("leak");
        leak.memory_pressure = true;
        assert_eq!(brief(&leak, &[])[0], "verdict: LEAK in worker 0");
        let crashed = crate::analysis::statements::run(
            &leak,
            crate::analysis::statements::Ends {
                crashed_workers: 1,
                ..Default::default()
            },
        );
        assert_eq!(crashed.verdict.words(), "crash");
    }
}
