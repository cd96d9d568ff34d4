//! The few lines that end a `run`, an `attach` or a `watch`: the run's verdict, then per worker
//! its verdict (leak, plateau, stable, crash), the kind and the rate, the line of code when the
//! tracer saw it, and the parameter value that goes with growth. The report says the rest.
//! Pure: findings and the workers' crashes in, lines out.

use super::statements::{self, ParameterWhat};
use super::text::{growth_rate, site_clause};
use super::{Findings, Verdict};
use crate::units::MIB;

/// `crashes`: per worker, how it ended when that was not memwarden's doing (`exited with code
/// 3`, `was killed by signal 9`).
pub fn brief(findings: &Findings, crashes: &[(u32, String)]) -> Vec<String> {
    let leaking: Vec<String> = findings
        .workers
        .iter()
        .filter(|w| w.verdict == Verdict::Leak)
        .map(|w| w.worker.to_string())
        .collect();
    let mut headline = match leaking.as_slice() {
        [] => format!("verdict: no leak ({})", findings.verdict.word()),
        [one] => format!("verdict: LEAK in worker {one}"),
        many => format!("verdict: LEAK in workers {}", many.join(", ")),
    };
    if !crashes.is_empty() {
        headline.push_str(&format!(", {} CRASH(ES)", crashes.len()));
    }
    let mut lines = vec![headline];
    for w in &findings.workers {
        let said = statements::worker(w);
        let memory = match (&said.rate, w.verdict) {
            (None, _) | (_, Verdict::InsufficientData) => format!(
                "too little data for a verdict ({} trial(s))",
                w.trials
            ),
            (Some(rate), Verdict::Leak) => format!(
                "LEAK in {}, {}{}",
                w.kind.words(),
                growth_rate(rate),
                site_clause(w)
            ),
            (Some(rate), verdict) => {
                format!("{} in {}, {}", verdict.word(), w.kind.words(), growth_rate(rate))
            }
        };
        match crashes.iter().find(|(worker, _)| *worker == w.worker) {
            Some((_, how)) => lines.push(format!(
                "  worker {}: CRASH: it {how}; memory: {memory}",
                w.worker
            )),
            None => lines.push(format!("  worker {}: {memory}", w.worker)),
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
    lines
}
