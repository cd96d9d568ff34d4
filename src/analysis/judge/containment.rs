//! How containment went, read from a recording's events alone: how long the brake held, each
//! worker's paused time, escalations and restarts, trials completed per minute before and after
//! the first brake, and the longest stretch after it with no completed trial. A stretch longer
//! than `escalation.after` + `restart.grace` is "containment stalled": the brake kept the box
//! alive by freezing the search, which only a restart could have undone (issue 29).

use crate::policy::Policy;
use crate::recording::{Event, EventKind, PolicyAction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Containment {
    /// When the brake first engaged, seconds since the start.
    pub first_brake_s: f64,
    /// Time the brake was on, in all.
    pub brake_on_s: f64,
    /// Per worker, the time it sat paused by the brake.
    pub paused_s: BTreeMap<u32, f64>,
    pub escalations: u64,
    /// Workers the policy stopped to start them again (every rule).
    pub restarts: u64,
    /// Trials completed per minute before the first brake (`None` when it engaged at once).
    pub trials_per_minute_before: Option<f64>,
    pub trials_per_minute_after: Option<f64>,
    /// The longest stretch after the first brake with no completed trial, and its start.
    pub longest_without_trial_s: f64,
    pub longest_from_s: f64,
    /// `escalation.after` + `restart.grace` of the run's policy.
    pub bound_s: f64,
    /// The longest stretch passed the bound.
    pub stalled: bool,
}

/// The bound a stall is measured against, from the policy in force.
pub fn bound(policy: &Policy) -> Duration {
    policy.escalation.after + policy.restart.grace
}

/// Containment figures of the live policy's events (or the simulated ones), up to `end_ns`;
/// `None` where the brake never engaged.
pub fn containment(
    events: &[Event],
    end_ns: u64,
    bound: Duration,
    simulated: bool,
) -> Option<Containment> {
    let policy = |e: &Event| match &e.kind {
        EventKind::Policy {
            action,
            simulated: s,
            ..
        } if *s == simulated => Some(*action),
        _ => None,
    };
    let first_brake = events
        .iter()
        .find(|e| policy(e) == Some(PolicyAction::BrakeOn))?
        .t_ns;
    let end_ns = end_ns.max(first_brake);
    let (mut brake_since, mut brake_on_ns) = (None, 0u64);
    let mut paused_since: BTreeMap<u32, u64> = BTreeMap::new();
    let mut paused_ns: BTreeMap<u32, u64> = BTreeMap::new();
    let (mut escalations, mut restarts) = (0, 0);
    let mut ends = Vec::new();
    for event in events {
        let t = event.t_ns.min(end_ns);
        let mut unpause = |worker: Option<u32>| {
            if let Some(since) = worker.and_then(|w| paused_since.remove(&w)) {
                *paused_ns.entry(worker.unwrap_or_default()).or_default() += t - since.min(t);
            }
        };
        match (&event.kind, policy(event)) {
            (_, Some(PolicyAction::BrakeOn)) => {
                brake_since.get_or_insert(t);
            }
            (_, Some(PolicyAction::BrakeOff)) => {
                if let Some(since) = brake_since.take() {
                    brake_on_ns += t - since;
                }
            }
            (_, Some(PolicyAction::Pause)) => {
                if let Some(worker) = event.worker {
                    paused_since.entry(worker).or_insert(t);
                    paused_ns.entry(worker).or_default();
                }
            }
            (_, Some(PolicyAction::Resume | PolicyAction::Stop)) => unpause(event.worker),
            (_, Some(PolicyAction::Escalate)) => escalations += 1,
            (EventKind::WorkerExit { .. }, _) => unpause(event.worker),
            (EventKind::TrialEnd { .. }, _) => ends.push(event.t_ns),
            _ => {}
        }
        if policy(event) == Some(PolicyAction::Stop) {
            restarts += 1;
        }
    }
    if let Some(since) = brake_since {
        brake_on_ns += end_ns - since;
    }
    for (worker, since) in paused_since {
        *paused_ns.entry(worker).or_default() += end_ns - since.min(end_ns);
    }
    let before = ends.iter().filter(|&&t| t <= first_brake).count();
    let per_minute =
        |count: usize, span_ns: u64| (span_ns > 0).then(|| count as f64 / (span_ns as f64 / 60e9));
    let mut marks: Vec<u64> = std::iter::once(first_brake)
        .chain(
            ends.iter()
                .copied()
                .filter(|&t| t > first_brake && t <= end_ns),
        )
        .chain(std::iter::once(end_ns))
        .collect();
    marks.sort_unstable();
    let (longest_from, longest_ns) = marks
        .windows(2)
        .map(|pair| (pair[0], pair[1] - pair[0]))
        .max_by_key(|&(_, gap)| gap)
        .unwrap_or((first_brake, 0));
    let seconds = |ns: u64| ns as f64 / 1e9;
    Some(Containment {
        first_brake_s: seconds(first_brake),
        brake_on_s: seconds(brake_on_ns),
        paused_s: paused_ns
            .into_iter()
            .map(|(w, ns)| (w, seconds(ns)))
            .collect(),
        escalations,
        restarts,
        trials_per_minute_before: per_minute(before, first_brake),
        trials_per_minute_after: per_minute(ends.len() - before, end_ns - first_brake),
        longest_without_trial_s: seconds(longest_ns),
        longest_from_s: seconds(longest_from),
        bound_s: bound.as_secs_f64(),
        stalled: longest_ns > bound.as_nanos() as u64,
    })
}

impl Containment {
    /// The figures in one paragraph of plain words, as the report, `analyze` and the end of a
    /// run say them.
    pub fn words(&self) -> Vec<String> {
        use crate::units::duration;
        let rate = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{r:.1}"));
        let paused: Vec<String> = self
            .paused_s
            .iter()
            .map(|(w, s)| format!("worker {w} {}", duration(*s)))
            .collect();
        let mut lines = vec![
            format!(
                "the brake first engaged at +{} and was on for {} in all; paused: {}",
                duration(self.first_brake_s),
                duration(self.brake_on_s),
                if paused.is_empty() { "none".to_string() } else { paused.join(", ") }
            ),
            format!(
                "{} escalation(s), {} restart(s); trials completed per minute: {} before the first brake, {} after",
                self.escalations,
                self.restarts,
                rate(self.trials_per_minute_before),
                rate(self.trials_per_minute_after)
            ),
            format!(
                "longest stretch after the first brake with no completed trial: {} (from +{})",
                duration(self.longest_without_trial_s),
                duration(self.longest_from_s)
            ),
        ];
        if self.stalled {
            lines.push(format!(
                "STALLED: that is longer than escalation.after + restart.grace ({}); the brake held the search without a restart freeing memory",
                duration(self.bound_s)
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn policy(t_s: u64, worker: Option<u32>, action: PolicyAction) -> Event {
        Event {
            t_ns: t_s * S,
            wall_ns: 0,
            worker,
            kind: EventKind::Policy {
                action,
                reason: String::new(),
                worker_pss_bytes: None,
                available_bytes: None,
                simulated: false,
            },
        }
    }

    fn end(t_s: u64) -> Event {
        Event {
            t_ns: t_s * S,
            wall_ns: 0,
            worker: Some(0),
            kind: EventKind::TrialEnd {
                trial: "t".into(),
                state: "ok".into(),
                value: None,
                memory: None,
            },
        }
    }

    #[test]
    fn a_brake_that_holds_everything_is_a_stall() {
        // Issue 29's recording: 4 trials a second until the brake at 5 s, then nothing.
        let mut events: Vec<Event> = (1..=5).map(end).collect();
        events.push(policy(5, None, PolicyAction::BrakeOn));
        events.push(policy(5, Some(0), PolicyAction::Pause));
        events.push(policy(6, Some(1), PolicyAction::Pause));
        let c = containment(&events, 60 * S, Duration::from_secs(40), false).expect("braked");
        assert_eq!(c.first_brake_s, 5.0);
        assert_eq!(c.brake_on_s, 55.0);
        assert_eq!(c.paused_s, [(0, 55.0), (1, 54.0)].into());
        assert_eq!(c.trials_per_minute_before, Some(60.0));
        assert_eq!(c.trials_per_minute_after, Some(0.0));
        assert_eq!((c.longest_without_trial_s, c.longest_from_s), (55.0, 5.0));
        assert!(c.stalled);
        assert!(c.words().last().is_some_and(|l| l.starts_with("STALLED: ")));
    }

    #[test]
    fn restarts_that_keep_trials_coming_are_no_stall() {
        let mut events = vec![
            policy(5, None, PolicyAction::BrakeOn),
            policy(5, Some(0), PolicyAction::Pause),
            policy(15, None, PolicyAction::Escalate),
            policy(15, Some(0), PolicyAction::Stop),
            end(17),
            policy(18, None, PolicyAction::BrakeOff),
        ];
        events.extend((19..60).step_by(10).map(end));
        let c = containment(&events, 60 * S, Duration::from_secs(40), false).expect("braked");
        assert_eq!((c.escalations, c.restarts), (1, 1));
        assert_eq!(c.paused_s, [(0, 10.0)].into(), "a stop ends the pause");
        assert_eq!(c.brake_on_s, 13.0);
        assert_eq!((c.longest_without_trial_s, c.longest_from_s), (12.0, 5.0));
        assert!(!c.stalled);
    }

    #[test]
    fn simulated_and_live_actions_are_counted_apart() {
        let events = vec![policy(5, None, PolicyAction::BrakeOn)];
        assert!(containment(&events, 60 * S, Duration::from_secs(40), true).is_none());
        assert!(containment(&events, 60 * S, Duration::from_secs(40), false).is_some());
    }
}
