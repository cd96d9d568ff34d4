//! A trial as the pair of events that tell it: its start and its end, each by reference. What
//! holds a million trials at once (analysis) keeps these 24 bytes per trial and reads the
//! fields from the events, instead of a copy of each (issue 35); `Trial` is the owned form.

use super::events::{EndMemory, Event, EventKind, Params, Short};
use std::collections::HashMap;

/// One trial of one worker: its start event, its end event, either of which may be missing (a
/// trial still running when the recording ended; an end whose start was lost).
#[derive(Debug, Clone, Copy)]
pub struct TrialEvents<'a> {
    pub worker: u32,
    start: Option<&'a Event>,
    end: Option<&'a Event>,
}

impl<'a> TrialEvents<'a> {
    /// The start's id and parameters.
    fn started(&self) -> Option<(&'a Short, &'a Params)> {
        match &self.start?.kind {
            EventKind::TrialStart { trial, params, .. } => Some((trial, params)),
            _ => None,
        }
    }

    /// The end's id, state, objective value and memory reading.
    fn ended(&self) -> Option<Ended<'a>> {
        match &self.end?.kind {
            EventKind::TrialEnd {
                trial,
                state,
                value,
                memory,
            } => Some((trial, state, value.as_ref(), *memory)),
            _ => None,
        }
    }

    /// The trial's id (its start's and its end's: they are paired by it).
    pub fn trial(&self) -> &'a Short {
        match (self.started(), self.ended()) {
            (Some((trial, _)), _) | (None, Some((trial, ..))) => trial,
            (None, None) => unreachable!("bug: a trial is paired from one event at least"),
        }
    }

    pub fn start_ns(&self) -> Option<u64> {
        self.start.map(|e| e.t_ns)
    }

    pub fn end_ns(&self) -> Option<u64> {
        self.end.map(|e| e.t_ns)
    }

    /// `complete`, `pruned`, `failed`, ... or `running` when the recording ended first.
    pub fn state(&self) -> &'a str {
        self.ended()
            .map_or("running", |(_, state, ..)| state.as_str())
    }

    /// `None` where the start was not recorded.
    pub fn params(&self) -> Option<&'a Params> {
        Some(self.started()?.1)
    }

    pub fn value(&self) -> Option<&'a serde_json::Value> {
        self.ended()?.2
    }

    /// Memory read at the end line (see `EventKind::TrialEnd`).
    pub fn end_memory(&self) -> Option<EndMemory> {
        self.ended()?.3
    }
}

/// What a trial's end event tells: its id, state, objective value and memory reading.
type Ended<'a> = (
    &'a Short,
    &'a Short,
    Option<&'a serde_json::Value>,
    Option<EndMemory>,
);

/// Pairs trial starts and ends per worker, in order of the first of the two. A trial without an
/// end is `running` (the run ended or crashed during it); an end without a start keeps its
/// start empty. A start repeated before its end leaves the earlier one running.
pub fn pair_trials(events: &[Event]) -> Vec<TrialEvents<'_>> {
    let mut open: HashMap<(u32, &Short), usize> = HashMap::new();
    let mut trials: Vec<TrialEvents> = Vec::new();
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.t_ns);
    for event in sorted {
        let worker = event.worker.unwrap_or(0);
        match &event.kind {
            EventKind::TrialStart { trial, .. } => {
                open.insert((worker, trial), trials.len());
                trials.push(TrialEvents {
                    worker,
                    start: Some(event),
                    end: None,
                });
            }
            EventKind::TrialEnd { trial, .. } => match open.remove(&(worker, trial)) {
                Some(index) => trials[index].end = Some(event),
                None => trials.push(TrialEvents {
                    worker,
                    start: None,
                    end: Some(event),
                }),
            },
            _ => {}
        }
    }
    trials
}
