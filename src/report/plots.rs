//! From the analysis to plot data, and the files: memory by kind over time per worker (with
//! trial starts marked), retained memory per trial with the fitted trend, and the system's
//! available memory and pressure.

use super::PlotRef;
use crate::analysis::{slot, Analysis, Basis, Kind, SystemSummary, Timeline, Verdict};
use crate::plot::{self, Format, Line, PlotError, TimeChart, TrialChart};
use std::path::Path;

use crate::units::MIB;
/// Workers beyond this many that neither leak nor plateau get no plots of their own.
const QUIET_WORKERS_PLOTTED: usize = 2;

fn seconds(t_ns: u64) -> f64 {
    t_ns as f64 / 1e9
}

fn kind_line(timeline: &Timeline, kind: Kind, name: &str) -> Option<Line> {
    let points: Vec<(f64, f64)> = timeline
        .buckets()
        .filter_map(|b| Some((seconds(b.t_ns), b.last[kind as usize]?)))
        .collect();
    (!points.is_empty() && points.iter().any(|p| p.1 > 0.0)).then(|| Line {
        name: name.to_string(),
        points,
    })
}

/// Draws one plot into `dir` and gives the report's link to it.
fn emit(
    dir: &Path,
    format: Format,
    name: &str,
    title: &str,
    draw: impl FnOnce(&Path, Format) -> Result<(), PlotError>,
) -> Result<PlotRef, PlotError> {
    let file = format!("{name}.{}", format.extension());
    draw(&dir.join(&file), format)?;
    Ok(PlotRef {
        title: title.to_string(),
        file: format!("plots/{file}"),
    })
}

/// What the policy did, drawn on the system memory chart.
#[derive(Debug, Clone, Default)]
pub struct PolicyMarks {
    /// Seconds since the start of each worker restart (stop) the policy ordered.
    pub restarts_s: Vec<f64>,
    /// Available memory under a simulated policy: (seconds, bytes).
    pub simulated_available: Vec<(f64, f64)>,
}

/// Writes the plots into `dir` (`plots/` beside the report) and says what it wrote.
pub fn write_plots(
    analysis: &Analysis,
    start_wall_ns: u64,
    dir: &Path,
    format: Format,
    policy: &PolicyMarks,
) -> Result<Vec<PlotRef>, PlotError> {
    let mut refs = Vec::new();
    let time_chart = |name: &str, chart: &TimeChart| {
        emit(dir, format, name, &chart.title, |path, format| {
            plot::time_chart(path, format, chart)
        })
    };
    let f = &analysis.findings;
    let mut quiet = 0;
    for w in &f.workers {
        let growing = matches!(w.verdict, Verdict::Leak | Verdict::Plateau);
        if !growing {
            quiet += 1;
            if quiet > QUIET_WORKERS_PLOTTED {
                continue;
            }
        }
        let Some(chart) = worker_chart(analysis, w.worker, start_wall_ns) else {
            continue;
        };
        refs.push(time_chart(&format!("worker-{}-memory", w.worker), &chart)?);
        if w.basis == Basis::Trials {
            if let Some(chart) = trial_chart(analysis, w.worker, w.kind) {
                let name = format!("worker-{}-retained", w.worker);
                refs.push(emit(dir, format, &name, &chart.title, |path, format| {
                    plot::trial_chart(path, format, &chart)
                })?);
            }
        }
    }
    if let Some(system) = &analysis.system {
        for (name, chart) in system_charts(system, start_wall_ns, policy) {
            refs.push(time_chart(name, &chart)?);
        }
    }
    for (device, timeline) in &analysis.devices {
        if let Some(chart) = device_chart(*device, timeline, start_wall_ns) {
            refs.push(time_chart(&format!("gpu-{device}-memory"), &chart)?);
        }
    }
    Ok(refs)
}

/// A worker's tree memory by kind over time, its trial starts marked.
fn worker_chart(analysis: &Analysis, worker: u32, start_wall_ns: u64) -> Option<TimeChart> {
    let timeline = analysis.timelines.get(&worker)?;
    let stacked: Vec<Line> = [
        (Kind::Anon, "anonymous"),
        (Kind::File, "file-backed"),
        (Kind::Shmem, "shared memory"),
        (Kind::Swap, "swap"),
    ]
    .iter()
    .filter_map(|(kind, name)| kind_line(timeline, *kind, name))
    .collect();
    let lines: Vec<Line> = kind_line(timeline, Kind::Pss, "PSS (whole tree)")
        .into_iter()
        .chain(kind_line(timeline, Kind::Gpu, "GPU"))
        .collect();
    let marks: Vec<f64> = analysis
        .findings
        .trials
        .iter()
        .filter(|t| t.worker == worker)
        .filter_map(|t| t.start_ns.map(seconds))
        .collect();
    Some(TimeChart {
        title: format!("Worker {worker}: memory of its process tree by kind"),
        start_wall_ns,
        stacked,
        lines,
        marks,
        marks_label: "trial starts".into(),
        ..TimeChart::default()
    })
}

/// The system's available memory (with the policy's restarts and, simulated, what it would
/// have left), and its memory pressure where recorded.
fn system_charts(
    system: &SystemSummary,
    start_wall_ns: u64,
    policy: &PolicyMarks,
) -> Vec<(&'static str, TimeChart)> {
    let available: Vec<(f64, f64)> = system
        .timeline
        .buckets()
        .filter_map(|b| Some((seconds(b.t_ns), b.min[slot::AVAILABLE]?)))
        .collect();
    let mut lines = vec![Line {
        name: "available (lowest per interval)".into(),
        points: available,
    }];
    if !policy.simulated_available.is_empty() {
        lines.push(Line {
            name: "available under the policy (simulated)".into(),
            points: policy.simulated_available.clone(),
        });
    }
    let mut charts = vec![(
        "system-memory",
        TimeChart {
            title: "System: available memory".into(),
            start_wall_ns,
            lines,
            thresholds: vec![
                (system.mem_total_bytes, "total".into()),
                (0.1 * system.mem_total_bytes, "10% reserve".into()),
            ],
            marks: policy.restarts_s.clone(),
            marks_label: "worker restarts by the policy".into(),
            ..TimeChart::default()
        },
    )];
    let psi: Vec<(f64, f64)> = system
        .timeline
        .buckets()
        .filter_map(|b| Some((seconds(b.t_ns), b.max[slot::PSI_FULL]?)))
        .collect();
    if !psi.is_empty() {
        charts.push((
            "system-pressure",
            TimeChart {
                title: "System: memory pressure (PSI full avg10)".into(),
                start_wall_ns,
                lines: vec![Line {
                    name: "PSI full avg10 (highest per interval)".into(),
                    points: psi,
                }],
                thresholds: vec![(10.0, "10%: tasks stall on memory".into())],
                percent: true,
                ..TimeChart::default()
            },
        ));
    }
    charts
}

/// One GPU's memory used over time, against its total.
fn device_chart(device: u32, timeline: &Timeline, start_wall_ns: u64) -> Option<TimeChart> {
    let used: Vec<(f64, f64)> = timeline
        .buckets()
        .filter_map(|b| Some((seconds(b.t_ns), b.max[slot::DEVICE_USED]?)))
        .collect();
    let total = timeline
        .buckets()
        .filter_map(|b| b.max[slot::DEVICE_TOTAL])
        .last();
    if used.is_empty() {
        return None;
    }
    Some(TimeChart {
        title: format!("GPU {device}: memory used (all processes)"),
        start_wall_ns,
        lines: vec![Line {
            name: "used (highest per interval)".into(),
            points: used,
        }],
        thresholds: total
            .map(|t| (t, "total".to_string()))
            .into_iter()
            .collect(),
        ..TimeChart::default()
    })
}

fn trial_chart(analysis: &Analysis, worker: u32, kind: Kind) -> Option<TrialChart> {
    let f = &analysis.findings;
    let finding = f.workers.iter().find(|w| w.worker == worker)?;
    let k = finding.kind_finding(kind)?;
    let trials: Vec<_> = f.trials.iter().filter(|t| t.worker == worker).collect();
    let retained: Vec<(f64, f64)> = trials
        .iter()
        .filter_map(|t| Some((t.ordinal as f64, t.tree.get(&kind)?.retained?)))
        .collect();
    let peaks: Vec<(f64, f64)> = trials
        .iter()
        .filter_map(|t| Some((t.ordinal as f64, t.tree.get(&kind)?.peak?)))
        .collect();
    let from_label = k
        .plateau_from_trial
        .as_ref()
        .or(k.step.as_ref().map(|s| &s.trial));
    let from = from_label
        .and_then(|label| trials.iter().find(|t| t.trial == label))
        .map_or(0.0, |t| t.ordinal as f64);
    let fit = k.per_trial.and_then(|rate| {
        let offsets: Vec<f64> = retained
            .iter()
            .filter(|(x, _)| *x >= from)
            .map(|(x, y)| y - rate.bytes * x)
            .collect();
        let to = retained.last()?.0;
        Some((from, to, crate::stats::median(&offsets), rate.bytes))
    });
    Some(TrialChart {
        title: format!(
            "Worker {worker}: {} retained per trial ({})",
            kind.words(),
            finding.verdict.word()
        ),
        retained,
        peaks,
        fit,
        fit_label: k.per_trial.map_or(String::new(), |r| {
            format!("trend {:+.2} MiB/trial", r.bytes / MIB)
        }),
    })
}
