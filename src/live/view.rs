//! The live view's lines: one for the run (headroom against the limit that applies, pressure,
//! the brake, restarts), one per worker (its state, memory by kind, trials and the trend of
//! what it retains per trial). Pure: a status in, lines out; `run`, `attach`, `watch` and
//! `soak` all show these.

use super::status::{LiveStatus, LiveWorker, WorkerState};
use crate::units::{duration, size};

/// The run's line: elapsed time, the brake, restarts and crashes.
pub fn run_line(status: &LiveStatus) -> String {
    let mut parts = vec![format!(
        "{} · {} worker(s)",
        duration(status.elapsed_ns as f64 / 1e9),
        status.workers.len()
    )];
    parts.push(match (status.brake_on, status.held_back) {
        (true, held) => format!("brake ON ({held} held back)"),
        (false, 0) => "brake off".into(),
        (false, held) => format!("brake off ({held} held back)"),
    });
    parts.push(format!(
        "{} restart(s) · {} crash(es)",
        status.restarts(),
        status.crashes
    ));
    if let Some(reason) = &status.stopping {
        parts.push(format!("stopping: {reason}"));
    }
    parts.join(" · ")
}

/// The memory line: headroom against the limit that applies, and pressure (PSI).
pub fn memory_line(status: &LiveStatus) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(system) = &status.system {
        let (total, available) = system.effective_memory();
        let of = if system.cgroup_limit_bytes.is_some_and(|l| l <= total) {
            "the cgroup limit"
        } else {
            "the host"
        };
        parts.push(format!(
            "memory: headroom {} of {} ({of})",
            size(available as f64),
            size(total as f64)
        ));
        parts.push(match (system.psi_some_avg10, system.psi_full_avg10) {
            (Some(some), Some(full)) => format!("PSI some {some:.1}% full {full:.1}%"),
            (Some(some), None) => format!("PSI some {some:.1}%"),
            _ => "PSI n/a".into(),
        });
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// One line per worker, columns aligned across workers.
pub fn worker_lines(status: &LiveStatus) -> Vec<String> {
    let rows: Vec<[String; 5]> = status
        .workers
        .iter()
        .map(|(index, w)| worker_row(*index, w))
        .collect();
    let mut widths = [0usize; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

fn worker_row(index: u32, w: &LiveWorker) -> [String; 5] {
    let memory = if w.memory.processes == 0 && w.memory.pss_bytes == 0 {
        "-".to_string()
    } else {
        let m = &w.memory;
        let gpu = m
            .gpu_bytes
            .map_or(String::new(), |g| format!("  GPU {}", size(g as f64)));
        format!(
            "{}{} {}  anon {}  shmem {}{gpu}",
            if m.processes == 0 { "last " } else { "" },
            if m.pss_stale { "PSS~" } else { "PSS" },
            size(m.pss_bytes as f64),
            size(m.anon_bytes as f64),
            size(m.shmem_bytes as f64),
        )
    };
    let trials = format!(
        "{} trial(s){}",
        w.trials(),
        if w.in_trial { " +1" } else { "" }
    );
    let trend = match w.trend_per_trial() {
        Some(slope) => format!(
            "trend {}{}/trial",
            if slope >= 0.0 { "+" } else { "" },
            size(slope),
        ),
        None => "trend: too few trials".into(),
    };
    let state = match (w.state, w.starts) {
        (WorkerState::Running, starts) if starts > 1 => format!("running (start {starts})"),
        (state, _) => state.words(),
    };
    [format!("worker {index}"), state, memory, trials, trend]
}

/// The lines below a frame's first: the memory line and one per worker, indented.
pub fn body_lines(status: &LiveStatus) -> Vec<String> {
    memory_line(status)
        .into_iter()
        .chain(worker_lines(status))
        .map(|l| format!("  {l}"))
        .collect()
}

/// The whole frame: the run's line, the workers', and the newest note (many notes are only
/// recorded, never printed: a GPU not measured, a PSS read that keeps failing).
pub fn frame(status: &LiveStatus) -> String {
    let mut lines = vec![format!("memwarden · {}", run_line(status))];
    lines.extend(body_lines(status));
    if let Some(note) = status.notes.back() {
        let mut note = note.clone();
        if let Some((cut, _)) = note.char_indices().nth(NOTE_CHARS) {
            note.truncate(cut);
            note.push_str("...");
        }
        lines.push(format!("  last note: {note}"));
    }
    lines.join("\n")
}

/// A note longer than this is cut in the view (it is whole in the recording and above).
const NOTE_CHARS: usize = 150;
