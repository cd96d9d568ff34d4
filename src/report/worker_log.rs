//! Trials from Optuna logs written outside the harness (`report --worker-log`), so an `attach`
//! recording of a worker memwarden did not start still gets per-trial findings. Optuna's lines
//! carry their own time (`[I 2026-11-22 18:31:02,123]`), taken as UTC, the default of
//! containers and servers; lines before the recording's start are left out.

use crate::recording::{Event, EventKind};
use crate::supervisor::{TrialBoundary, TrialParser};
use regex::Regex;
use std::sync::LazyLock;

static STAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[[A-Z] (?P<date>\d{4}-\d\d-\d\d) (?P<hms>\d\d:\d\d:\d\d),(?P<ms>\d{3})\]")
        .expect("bug: the Optuna time pattern is valid")
});

/// The first time stamp in an Optuna log (ns since the epoch): where a report from logs alone
/// starts its clock.
pub fn first_time_ns(text: &str) -> Option<u64> {
    text.lines().find_map(line_time_ns)
}

fn line_time_ns(line: &str) -> Option<u64> {
    let caps = STAMP.captures(line)?;
    let mut date = caps["date"].split('-').map(|p| p.parse::<u32>().ok());
    let (year, month, day) = (
        date.next().flatten(),
        date.next().flatten(),
        date.next().flatten(),
    );
    let wall = super::kernel_log::civil_ns(year.map(|y| y as i32), month, day, &caps["hms"], 0)?;
    Some(wall + caps["ms"].parse::<u64>().unwrap_or(0) * 1_000_000)
}

/// Trial events for `worker`, on the recording's clock.
pub fn trial_events(text: &str, worker: u32, start_wall_ns: u64) -> Vec<Event> {
    let mut parser: Option<TrialParser> = None;
    let mut events = Vec::new();
    for line in text.lines() {
        let Some(caps) = STAMP.captures(line) else {
            continue;
        };
        let mut date = caps["date"].split('-').map(|p| p.parse::<u32>().ok());
        let (year, month, day) = (
            date.next().flatten(),
            date.next().flatten(),
            date.next().flatten(),
        );
        let Some(wall) =
            super::kernel_log::civil_ns(year.map(|y| y as i32), month, day, &caps["hms"], 0)
        else {
            continue;
        };
        let wall = wall + caps["ms"].parse::<u64>().unwrap_or(0) * 1_000_000;
        let Some(t_ns) = wall.checked_sub(start_wall_ns) else {
            continue;
        };
        let parser = parser.get_or_insert_with(|| TrialParser::new(None, 0));
        for boundary in parser.on_line(line, t_ns) {
            let (t_ns, kind) = match boundary {
                TrialBoundary::Start {
                    t_ns,
                    trial,
                    params,
                    source,
                } => (
                    t_ns,
                    EventKind::TrialStart {
                        trial: trial.into(),
                        params: std::sync::Arc::new(
                            params.into_iter().map(|(k, v)| (k.into(), v)).collect(),
                        ),
                        source,
                    },
                ),
                TrialBoundary::End {
                    t_ns,
                    trial,
                    state,
                    value,
                    memory,
                } => (
                    t_ns,
                    EventKind::TrialEnd {
                        trial: trial.into(),
                        state: state.into(),
                        value,
                        memory,
                    },
                ),
            };
            events.push(Event {
                t_ns,
                wall_ns: start_wall_ns + t_ns,
                worker: Some(worker),
                kind,
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optuna_lines_become_trials_on_the_recording_clock() {
        // 2026-11-22T18:31:00Z
        let start = 1_795_372_260_000_000_000;
        let text = "[I 2026-11-22 18:30:59,000] A new study created in memory with name: x\n\
                    [I 2026-11-22 18:31:02,500] Trial 0 finished with value: 0.5 and parameters: {'bs': 64}. Best is trial 0 with value: 0.5.\n\
                    [I 2026-11-22 18:31:04,000] Trial 1 pruned.\n";
        let events = trial_events(text, 3, start);
        let kinds: Vec<(u64, &str)> = events
            .iter()
            .map(|e| {
                let kind = match &e.kind {
                    EventKind::TrialStart { .. } => "start",
                    EventKind::TrialEnd { .. } => "end",
                    _ => "other",
                };
                (e.t_ns / 1_000_000, kind)
            })
            .collect();
        assert_eq!(
            kinds,
            [(0, "start"), (2500, "end"), (2500, "start"), (4000, "end")]
        );
        assert!(events.iter().all(|e| e.worker == Some(3)));
    }
}
