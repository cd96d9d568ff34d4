//! `memwarden fleet --report DIR`: the fleet's answers as Markdown, with a plot of each run's
//! fastest retained growth over time, one line per host.

use super::query::Answers;
use super::terminal::per_trial as rate;
use crate::markdown::{code, escape};
use crate::plot::{self, Format, Line, TimeChart};
use crate::units::size;
use anyhow::Context;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes `DIR/fleet.md` and `DIR/growth-by-host.png`; returns the Markdown's path.
pub fn write(answers: &Answers, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let plot = "growth-by-host.png";
    let drawn = draw_timeline(answers, &dir.join(plot))?;
    let path = dir.join("fleet.md");
    std::fs::write(&path, markdown(answers, drawn.then_some(plot)))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

pub fn markdown(a: &Answers, plot: Option<&str>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Fleet: {}\n", escape(&a.dest));
    let leaking_runs: std::collections::BTreeSet<(&str, &str)> = a
        .leaks
        .iter()
        .map(|l| (l.host.as_str(), l.run.as_str()))
        .collect();
    let _ = writeln!(
        md,
        "{} run(s) on {} host(s); {} run(s) with a leaking worker, {} leaking worker(s).\n",
        a.runs,
        a.hosts,
        leaking_runs.len(),
        a.leaks.len()
    );
    if let Some(plot) = plot {
        let _ = writeln!(
            md,
            "![Retained growth per trial of each run's fastest worker, by host]({plot})\n"
        );
    }
    let _ = writeln!(md, "## Leaking workers, fastest first\n");
    if a.leaks.is_empty() {
        let _ = writeln!(md, "None.\n");
    } else {
        let _ = writeln!(
            md,
            "| host | run | study | worker | kind | growth (95% CI) | clear from trial | line | started |\n|---|---|---|---|---|---|---|---|---|"
        );
        for l in &a.leaks {
            let interval = match (l.per_trial_low_bytes, l.per_trial_high_bytes) {
                (Some(low), Some(high)) => format!(" ({}..{})", size(low), size(high)),
                _ => String::new(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {}{} | {} | {} | {} |",
                escape(&l.host),
                code(&l.run),
                escape(l.study.as_deref().unwrap_or("-")),
                l.worker,
                escape(&l.kind),
                rate(l.per_trial_bytes),
                interval,
                escape(l.first_clear_trial.as_deref().unwrap_or("-")),
                l.site.as_deref().map_or("-".into(), code),
                escape(&l.start)
            );
        }
        let _ = writeln!(
            md,
            "\n`memwarden analyze`, `check` and `diff` take a published run: {}.\n",
            code(&a.leaks[0].path)
        );
    }
    let _ = writeln!(md, "## By host\n");
    let _ = writeln!(
        md,
        "| host | runs | leaking runs | fastest leak | OOM kills | restarts |\n|---|---|---|---|---|---|"
    );
    for h in &a.hosts_summary {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            escape(&h.host),
            h.runs,
            h.leaking_runs,
            rate(h.fastest_per_trial_bytes),
            h.oom_kills,
            h.restarts
        );
    }
    let _ = writeln!(md, "\n## OOM-killed or restarted most\n");
    if a.troubled.is_empty() {
        let _ = writeln!(md, "No worker was OOM-killed or restarted.\n");
    } else {
        let _ = writeln!(
            md,
            "| host | run | worker | OOM kills | crash restarts | policy restarts |\n|---|---|---|---|---|---|"
        );
        for t in &a.troubled {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                escape(&t.host),
                code(&t.run),
                t.worker,
                t.oom_kills,
                t.crash_restarts,
                t.policy_restarts
            );
        }
    }
    let _ = writeln!(md, "\n## Parameter values that went with retained growth\n");
    if a.parameters.is_empty() {
        let _ = writeln!(
            md,
            "No parameter value went with significantly more retained growth in any run.\n"
        );
    } else {
        let _ = writeln!(
            md,
            "| parameter | value | runs | hosts | median extra growth |\n|---|---|---|---|---|"
        );
        for p in &a.parameters {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                escape(&p.name),
                p.value.as_deref().map_or("(numeric trend)".into(), escape),
                p.runs,
                p.hosts,
                rate(p.median_effect_bytes)
            );
        }
    }
    md
}

/// One line per host through its runs' fastest growth per trial, by start time. `false` when
/// there is nothing to draw.
fn draw_timeline(a: &Answers, path: &Path) -> anyhow::Result<bool> {
    let Some(first) = a.timeline.iter().map(|p| p.start_wall_ns).min() else {
        return Ok(false);
    };
    let mut hosts: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for p in &a.timeline {
        // A run whose growth is below 0 (it shrank) is drawn at 0: the axis is for growth.
        if let Some(bytes) = p.per_trial_bytes {
            hosts
                .entry(&p.host)
                .or_default()
                .push(((p.start_wall_ns - first) as f64 / 1e9, bytes.max(0.0)));
        }
    }
    let chart = TimeChart {
        title: "Retained growth per trial of each run's fastest worker (by run start)".into(),
        start_wall_ns: first,
        lines: hosts
            .into_iter()
            .map(|(host, points)| Line {
                name: host.to_string(),
                points,
            })
            .collect(),
        dots: true,
        y_suffix: "/trial".into(),
        ..TimeChart::default()
    };
    plot::time_chart(path, Format::Png, &chart)?;
    Ok(true)
}
