//! The fleet's answers as text for a terminal (`memwarden fleet` without `--json`).

use super::query::Answers;

/// `4.5 MiB/trial`, or `-` where there is no rate.
pub(super) fn per_trial(bytes: Option<f64>) -> String {
    bytes.map_or("-".into(), |b| format!("{}/trial", crate::units::size(b)))
}

/// The answers as text, for a terminal.
pub fn text(a: &Answers) -> String {
    use crate::units::size;
    let mut out = format!("{} run(s) on {} host(s) in {}\n", a.runs, a.hosts, a.dest);
    if a.leaks.is_empty() {
        out.push_str("\nno leaking worker\n");
    } else {
        out.push_str(&format!(
            "\nleaking workers ({}), fastest first:\n",
            a.leaks.len()
        ));
        for l in &a.leaks {
            out.push_str(&format!(
                "  {} {} worker {}: {} in {}{}{}, started {}\n",
                l.host,
                l.run,
                l.worker,
                per_trial(l.per_trial_bytes),
                l.kind,
                l.first_clear_trial
                    .as_ref()
                    .map_or(String::new(), |t| format!(", clear from trial {t}")),
                l.site
                    .as_ref()
                    .map_or(String::new(), |s| format!(", at {s}")),
                l.start,
            ));
        }
    }
    out.push_str("\nby host:\n");
    for h in &a.hosts_summary {
        out.push_str(&format!(
            "  {}: {} run(s), {} leaking (fastest {}), {} OOM kill(s), {} restart(s)\n",
            h.host,
            h.runs,
            h.leaking_runs,
            per_trial(h.fastest_per_trial_bytes),
            h.oom_kills,
            h.restarts
        ));
    }
    if !a.troubled.is_empty() {
        out.push_str("\nOOM-killed or restarted most:\n");
        for t in &a.troubled {
            out.push_str(&format!(
                "  {} {} worker {}: {} OOM kill(s), {} crash restart(s), {} policy restart(s)\n",
                t.host, t.run, t.worker, t.oom_kills, t.crash_restarts, t.policy_restarts
            ));
        }
    }
    if !a.parameters.is_empty() {
        out.push_str("\nparameter values that went with retained growth:\n");
        for p in &a.parameters {
            out.push_str(&format!(
                "  {}{}: in {} run(s) on {} host(s), median +{}/trial\n",
                p.name,
                p.value
                    .as_ref()
                    .map_or(" (trend)".into(), |v| format!("={v}")),
                p.runs,
                p.hosts,
                p.median_effect_bytes.map_or("-".into(), size)
            ));
        }
    }
    out
}
