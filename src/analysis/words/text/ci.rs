//! The CI gates as text: `check`'s verdict against its budget (with each test's, where the
//! pytest plugin recorded them) and `diff`'s comparison of two runs.

use super::*;

pub fn check(report: &CheckReport) -> String {
    let mut out = String::new();
    let per = report.budget.per.unit();
    let budget = format!("{:.2} MiB/{per}", report.budget.bytes / MIB);
    for w in &report.workers {
        let _ = match (w.outcome, &w.rate) {
            (crate::analysis::judge::gates::Outcome::NotEnoughData, _) | (_, None) => {
                let reasons: Vec<String> = w
                    .kinds
                    .iter()
                    .filter_map(|k| Some(format!("{}: {}", k.kind.name(), k.why.as_ref()?)))
                    .collect();
                writeln!(
                    out,
                    "worker {}: NOT ENOUGH DATA to judge against {budget} ({})",
                    w.worker,
                    reasons.join("; ")
                )
            }
            (outcome, Some(r)) => writeln!(
                out,
                "worker {}: {} {} {} budget {budget} ({}); judged by {}: {}",
                w.worker,
                w.kind.name(),
                rate(r, per),
                if outcome == crate::analysis::judge::gates::Outcome::Exceeds {
                    "EXCEEDS"
                } else {
                    "within"
                },
                w.verdict.word(),
                w.kind.name(),
                w.chosen_because
            ),
        };
    }
    tests(&mut out, &report.tests);
    for fault in &report.faults {
        let _ = writeln!(out, "FAILED: {fault}");
    }
    out
}

/// Lines past this many per outcome are counted, not printed (`--json` lists every test).
const TEST_LINES: usize = 50;

/// A per-test check: a line for each test over its budget or not judged, one for the rest.
fn tests(out: &mut String, tests: &[crate::analysis::judge::per_test::TestCheck]) {
    use crate::analysis::judge::per_test::TestOutcome;
    use crate::analysis::judge::repeats::{enough_repeats, RepeatVerdict, DEFAULT_WARMUP};
    if tests.is_empty() {
        return;
    }
    let mut shown = [0usize; 2];
    for t in tests {
        let slot = match t.outcome {
            TestOutcome::Exceeds => 0,
            TestOutcome::NotEnoughData => 1,
            _ => continue,
        };
        shown[slot] += 1;
        if shown[slot] > TEST_LINES {
            continue;
        }
        let budget = format!(
            "{:.2} MiB/repeat{}",
            t.budget_bytes / MIB,
            if t.budget_marked { " (its marker)" } else { "" }
        );
        let figure = t
            .per_repeat
            .map(|r| format!("{} {}", t.kind.name(), rate(&r, "repeat")));
        let failed = if t.failed > 0 {
            format!("; {} repeat(s) failed", t.failed)
        } else {
            String::new()
        };
        let line = match (t.outcome, figure) {
            (TestOutcome::Exceeds, Some(figure)) => {
                let warmup: Vec<String> = t
                    .decided()
                    .map(|k| k.levels[..t.warmup.min(k.levels.len())].iter().map(|&l| size(l)).collect())
                    .unwrap_or_default();
                format!(
                    "{}: {figure} EXCEEDS budget {budget}; warm-up ended at {}{failed}",
                    t.test,
                    warmup.join(", ")
                )
            }
            (_, Some(figure))
                if t.decided().is_some_and(|k| k.verdict == RepeatVerdict::Undecided) =>
            {
                format!(
                    "{}: NOT ENOUGH DATA against {budget}: {figure} reaches the budget: repeat more (--memwarden-repeat {}){failed}",
                    t.test,
                    (t.repeats * 2).max(10)
                )
            }
            _ => format!(
                "{}: NOT ENOUGH DATA against {budget}: {} complete repeat(s), {} needed (--memwarden-repeat {}){failed}",
                t.test,
                t.repeats,
                enough_repeats(DEFAULT_WARMUP as usize),
                enough_repeats(DEFAULT_WARMUP as usize) + t.failed
            ),
        };
        let _ = writeln!(out, "{line}");
    }
    for (slot, what) in ["over their budgets", "not judged"].iter().enumerate() {
        if shown[slot] > TEST_LINES {
            let _ = writeln!(
                out,
                "... and {} more test(s) {what} (--json lists every test)",
                shown[slot] - TEST_LINES
            );
        }
    }
    let count = |o: TestOutcome| tests.iter().filter(|t| t.outcome == o).count();
    let kinds: Vec<&str> = tests[0].kinds.iter().map(|k| k.kind.name()).collect();
    let skipped = count(TestOutcome::Skipped);
    let _ = writeln!(
        out,
        "{} of {} test(s) within their budgets per repeat ({} retained at each repeat's end, after {} warm-up repeat(s)){}",
        count(TestOutcome::Within),
        tests.len(),
        kinds.join(", "),
        DEFAULT_WARMUP,
        if skipped > 0 {
            format!("; {skipped} skipped, not judged")
        } else {
            String::new()
        }
    );
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
