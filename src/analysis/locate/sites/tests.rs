use super::*;
use crate::recording::PythonSite;

fn site(file: &str, line: u32, bytes: u64) -> PythonSite {
    PythonSite {
        file: file.into(),
        line,
        bytes,
        blocks: 1,
        largest_block: None,
        via: None,
        study: false,
        traceback: Vec::new(),
    }
}

fn report(epoch: u32, sites: Vec<PythonSite>) -> PythonSites {
    PythonSites {
        memory: crate::recording::SiteMemory::PythonHeap,
        pid: 7,
        trial: String::new(),
        epoch,
        traced_bytes: sites.iter().map(|s| s.bytes).sum(),
        cost_ms: 2.0,
        peak_bytes: None,
        slowdown: None,
        gap: None,
        stretch: None,
        sites,
    }
}

fn found(reports: &[PythonSites], measured: Option<f64>) -> (Vec<SiteFinding>, Option<Tracing>) {
    let params = crate::few::Few::new();
    let input: Vec<Report> = reports
        .iter()
        .enumerate()
        .map(|(at, sites)| Report {
            sites,
            params: &params,
            t_ns: at as u64,
        })
        .collect();
    sites(&input, measured)
}

#[test]
fn a_cumulative_site_grows_and_a_replaced_one_does_not() {
    const MIB: u64 = 1 << 20;
    let reports: Vec<PythonSites> = (1..=10)
        .map(|n| {
            report(
                0,
                vec![site("leak.py", 13, n * MIB), site("last.py", 4, 8 * MIB)],
            )
        })
        .collect();
    let (found, tracing) = found(&reports, Some(MIB as f64));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].file.as_str(), found[0].line), ("leak.py", 13));
    assert!((found[0].per_trial.bytes - MIB as f64).abs() < 1.0);
    let explained = tracing.and_then(|t| t.explained).expect("explained");
    assert!((explained - 1.0).abs() < 1e-6, "{explained}");
}

#[test]
fn the_studys_small_lines_are_summed_and_told_though_none_is_a_site() {
    // Three study-side lines of 3 KiB, 3 KiB and 2 KiB per trial (an in-memory study's
    // trial records): each far below a site of its own, 8 KiB per trial together. The
    // objective's own line is flat.
    let own = |file: &str, line: u32, bytes: u64| PythonSite {
        study: true,
        ..site(file, line, bytes)
    };
    let reports: Vec<PythonSites> = (1..=12)
        .map(|n| {
            report(
                0,
                vec![
                    own("optuna/trial/_trial.py", 410, n * 3072),
                    own("optuna/storages/_in_memory.py", 80, n * 3072 + (n % 3) * 64),
                    own("optuna/trial/_frozen.py", 120, n * 2048),
                    site("objective.py", 7, 4096),
                ],
            )
        })
        .collect();
    let (lines, tracing) = found(&reports, None);
    assert!(lines.is_empty(), "no line of its own: {lines:?}");
    let study = tracing
        .and_then(|t| t.study)
        .expect("the study's growth is told");
    assert!(
        (study.per_trial.bytes - 8192.0).abs() < 100.0,
        "{:?}",
        study.per_trial
    );
    assert!(study.confidence >= 0.95);
    assert_eq!(
        study.reports, 11,
        "the epoch's first report is its baseline"
    );
    assert_eq!(study.lines[2], "optuna/trial/_frozen.py:120");

    // The same lines holding steady: nothing is told.
    let steady: Vec<PythonSites> = (1..=12)
        .map(|n| report(0, vec![own("optuna/trial/_trial.py", 410, 30_000 + n % 2)]))
        .collect();
    let (_, tracing) = found(&steady, None);
    assert_eq!(tracing.and_then(|t| t.study), None);
}

#[test]
fn epochs_that_each_hold_one_trial_add_up() {
    const MIB: u64 = 1 << 20;
    // Every snapshot was over budget, so each report holds only its own trial's 2 MiB.
    let reports: Vec<PythonSites> = (0..8)
        .map(|n| report(n, vec![site("leak.py", 9, 2 * MIB)]))
        .collect();
    let (found, _) = found(&reports, None);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!((found[0].per_trial.bytes - 2.0 * MIB as f64).abs() < 1.0);
}

#[test]
fn epochs_of_one_report_count_beside_longer_ones() {
    const MIB: u64 = 1 << 20;
    // Epochs 0 and 2 hold two reports each (one difference), the others one report.
    let epochs = [0, 0, 1, 2, 2, 3, 4, 5];
    let mut level = 0;
    let reports: Vec<PythonSites> = epochs
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            let fresh = i == 0 || epochs[i - 1] != e;
            level = if fresh { MIB } else { level + MIB };
            report(e, vec![site("leak.py", 9, level)])
        })
        .collect();
    let (found, _) = found(&reports, None);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].reports, 6, "two baselines left out");
    assert!((found[0].per_trial.bytes - MIB as f64).abs() < 1.0);
}

#[test]
fn source_lines_are_trimmed_and_bounded() {
    assert_eq!(
        source_line("a\n    KEPT.append(x)\n", 2).as_deref(),
        Some("KEPT.append(x)")
    );
    assert_eq!(source_line("a\n", 0), None);
    assert_eq!(source_line("a\n", 5), None);
    assert!(source_line(&"x".repeat(500), 1).is_some_and(|l| l.chars().count() == 161));
}

/// A line growing 1 MiB per trial in a worker restarted once: its two processes ran one after
/// another (both counting trials from 0, as a new study does), so the line's rate is 1 MiB, not
/// their sum; in a parent and its forked child reporting side by side, it is the sum.
#[test]
fn a_restarted_workers_processes_are_not_summed_and_forked_children_are() {
    const MIB: u64 = 1 << 20;
    let reports = |pid: i32, trials: std::ops::Range<u64>| -> Vec<PythonSites> {
        trials
            .enumerate()
            .map(|(n, trial)| PythonSites {
                pid,
                trial: trial.to_string(),
                ..report(0, vec![site("leak.py", 13, (n as u64 + 1) * MIB)])
            })
            .collect()
    };
    let restarted: Vec<PythonSites> = reports(7, 0..10)
        .into_iter()
        .chain(reports(8, 0..10))
        .collect();
    let (lines, _) = found(&restarted, None);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        (lines[0].per_trial.bytes / MIB as f64 - 1.0).abs() < 1e-6,
        "{lines:?}"
    );
    assert_eq!((lines[0].processes, lines[0].reports), (2, 18));
    let forked: Vec<PythonSites> = reports(7, 0..10)
        .into_iter()
        .zip(reports(8, 0..10))
        .flat_map(|(parent, child)| [parent, child])
        .collect();
    let (lines, _) = found(&forked, None);
    assert!(
        (lines[0].per_trial.bytes / MIB as f64 - 2.0).abs() < 1e-6,
        "{lines:?}"
    );
}
