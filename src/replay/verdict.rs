//! What a replay found, in words: whether the repeated trial leaks (in one process), or, with
//! `--isolate`, whether what each fresh process held climbs from one to the next. Pure: the
//! replay's findings in, a verdict and its sentence out.

use crate::analysis::text::{rate, site_clause};
use crate::analysis::{Findings, Kind, Verdict};
use crate::units::size;

/// Whether the replay leaks, and what to say. For isolated repeats, what each fresh process
/// retained after its one trial: the same amount every time is a per-process cost, which only
/// growth that accumulates within one process (the default replay) can tell from a leak.
pub fn verdict_words(findings: &Findings, isolate: bool) -> (bool, String) {
    let Some(worker) = findings.workers.first() else {
        return (false, "no samples of the worker".into());
    };
    let kind = worker.kind;
    if isolate {
        // A fresh process allocates before the first sample sees it, so its level at the end
        // of its trial is the measure, not the growth during it. PSS would move with how many
        // processes share the same pages at that moment (the next process starting, the
        // harness's own binary), so private anonymous memory stands in for it.
        let kind = match kind {
            Kind::Pss | Kind::Rss => Kind::Anon,
            other => other,
        };
        let levels: Vec<f64> = findings
            .trials
            .iter()
            .filter_map(|t| t.tree.get(&kind)?.retained)
            .collect();
        let (Some(first), Some(last)) = (levels.first(), levels.last()) else {
            return (false, "no completed repeats to measure".into());
        };
        let mut sorted = levels.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let climbs = last - first > crate::units::MIB.max(0.1 * median);
        let tail = if climbs {
            format!(
                "; it climbs from one fresh process to the next ({} to {}): the memory outlives the process (shared memory, files, a GPU or another daemon)",
                size(*first),
                size(*last)
            )
        } else {
            ". The same level in every fresh process is what one process costs; growth that accumulates only when the trial repeats in one process (without --isolate) is a per-trial leak".into()
        };
        return (
            climbs,
            format!(
                "each of {} fresh process(es) held {} of {} at the end of its trial (median; {}..{}){tail}",
                levels.len(),
                size(median),
                kind.words(),
                size(sorted[0]),
                size(sorted[sorted.len() - 1]),
            ),
        );
    }
    let finding = worker.kind_finding(kind);
    let per_trial = finding.and_then(|k| k.per_trial.as_ref());
    match (worker.verdict, per_trial) {
        (Verdict::Leak, Some(r)) => (
            true,
            format!(
                "LEAKS {} of {}{}",
                rate(r, "repeat"),
                kind.words(),
                site_clause(worker)
            ),
        ),
        (verdict, Some(r)) => (
            false,
            format!(
                "{} ({} of {})",
                verdict_name(verdict),
                rate(r, "repeat"),
                kind.words()
            ),
        ),
        (verdict, None) => (false, verdict_name(verdict).to_string()),
    }
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Leak => "leaks",
        Verdict::Plateau => "grows, then stops (a plateau, not a leak)",
        Verdict::Stable => "stable: no leak",
        Verdict::InsufficientData => "too few repeats to judge (at least 6)",
    }
}
