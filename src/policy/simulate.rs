//! Re-running a recording under a policy: the recorded readings and trials go through the same
//! engine as live, and each restart it orders is applied to the memory that follows.
//!
//! The counterfactual is deliberately simple and said out loud in reports: a restarted worker
//! drops back to the PSS it had when it (last) started, then grows as the recording shows from
//! that moment on; what it freed is added to available memory. A worker the recording shows
//! asking at the gate (refused or told to abort) is cooperative: each recorded trial start is a
//! question to the brake; any other is paused between trials, as the harness pauses a worker
//! that never asks. The recording cannot show what a held trial would have changed, so trials
//! still happen as recorded. The run's own stop ends it: workers stopped then did not crash.

use super::config::Policy;
use super::engine::{Action, ActionKind, Counters, Engine, Input, Reading};
use crate::recording::{Event, EventKind};
use crate::units::{duration, size};
use std::collections::BTreeMap;

/// One recorded tick, as the engine reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TickRow {
    pub t_ns: u64,
    pub reading: Reading,
}

/// What the recording holds, in time order.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Tick(TickRow),
    TrialStart {
        worker: u32,
        trial: String,
    },
    TrialEnd {
        worker: u32,
    },
    WorkerStart {
        worker: u32,
        attempt: u32,
    },
    WorkerExit {
        worker: u32,
        success: bool,
    },
    /// The harness began stopping the run (its duration, a signal, every worker done).
    RunStop,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatedPoint {
    pub t_ns: u64,
    pub recorded_available_bytes: u64,
    pub simulated_available_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Simulation {
    pub actions: Vec<Action>,
    pub counters: Counters,
    /// Available memory as recorded and as simulated, one point per tick.
    pub points: Vec<SimulatedPoint>,
    /// Per worker, the highest PSS as recorded and as simulated.
    pub peaks: BTreeMap<u32, (u64, u64)>,
}

impl Simulation {
    pub fn min_available(&self) -> Option<(u64, u64)> {
        let recorded = self
            .points
            .iter()
            .map(|p| p.recorded_available_bytes)
            .min()?;
        let simulated = self
            .points
            .iter()
            .map(|p| p.simulated_available_bytes)
            .min()?;
        Some((recorded, simulated))
    }
}

#[derive(Default, Clone, Copy)]
struct Counterfactual {
    /// The PSS the worker started from (its first reading after a start).
    base_bytes: Option<u64>,
    /// Bytes a simulated restart took away from what the recording shows.
    freed_bytes: u64,
}

/// Feeds a recording, item by item in time order, through the engine.
pub struct Simulator {
    engine: Engine,
    state: BTreeMap<u32, Counterfactual>,
    simulation: Simulation,
    last_reading: Option<Reading>,
    now_ns: u64,
    begun: bool,
    cooperative: std::collections::BTreeSet<u32>,
}

impl Simulator {
    /// `cooperative`: the workers the recording shows asking at the gate.
    pub fn new(policy: Policy, workers: u32, cooperative: std::collections::BTreeSet<u32>) -> Self {
        Self {
            cooperative,
            engine: Engine::new(policy, workers),
            state: BTreeMap::new(),
            simulation: Simulation::default(),
            last_reading: None,
            now_ns: 0,
            begun: false,
        }
    }

    /// The recording's sampling interval: what the engine looks ahead (as it did live).
    pub fn reading_every(mut self, interval: std::time::Duration) -> Self {
        self.engine = self.engine.reading_every(interval);
        self
    }

    pub fn push(&mut self, item: Recorded) {
        let inputs = match item {
            Recorded::Tick(row) => {
                if !self.begun {
                    self.engine.adopt_running(row.t_ns);
                    self.begun = true;
                }
                self.now_ns = self.now_ns.max(row.t_ns);
                let simulated = apply(&row.reading, &mut self.state);
                record_point(&mut self.simulation, row.t_ns, &row.reading, &simulated);
                self.last_reading = Some(row.reading);
                vec![Input::Tick(simulated)]
            }
            Recorded::TrialStart { worker, trial } if self.cooperative.contains(&worker) => {
                vec![Input::Ask { worker }, Input::TrialStart { worker, trial }]
            }
            Recorded::TrialStart { worker, trial } => vec![Input::TrialStart { worker, trial }],
            Recorded::RunStop => {
                self.engine.shut_down();
                return;
            }
            Recorded::TrialEnd { worker } => vec![Input::TrialEnd { worker }],
            Recorded::WorkerStart { worker, attempt } => {
                // A restart the recording already holds: it freed its memory for real.
                if attempt > 0 {
                    self.state.insert(worker, Counterfactual::default());
                }
                return;
            }
            Recorded::WorkerExit { worker, success } => {
                vec![Input::WorkerExit { worker, success }]
            }
        };
        if !self.begun {
            return;
        }
        let mut queue: std::collections::VecDeque<Input> = inputs.into();
        while let Some(input) = queue.pop_front() {
            for action in self.engine.step(self.now_ns, input) {
                if action.kind == ActionKind::Stop {
                    if let (Some(worker), Some(reading)) = (action.worker, &self.last_reading) {
                        restart(worker, reading, &mut self.state);
                        // The stop is taken to be immediate; the engine then starts it again.
                        queue.push_back(Input::WorkerExit {
                            worker,
                            success: true,
                        });
                    }
                }
                self.simulation.actions.push(action);
            }
        }
    }

    pub fn finish(mut self) -> Simulation {
        self.simulation.counters = self.engine.counters().clone();
        self.simulation
    }
}

pub fn simulate(
    policy: Policy,
    workers: u32,
    recorded: impl IntoIterator<Item = Recorded>,
) -> Simulation {
    let mut simulator = Simulator::new(policy, workers, Default::default());
    for item in recorded {
        simulator.push(item);
    }
    simulator.finish()
}

/// The reading as it would have been, given the restarts so far.
fn apply(reading: &Reading, state: &mut BTreeMap<u32, Counterfactual>) -> Reading {
    let mut simulated = reading.clone();
    let mut freed_total = 0u64;
    for (worker, memory) in simulated.workers.iter_mut() {
        let entry = state.entry(*worker).or_default();
        entry.base_bytes.get_or_insert(memory.pss_bytes);
        let freed = entry.freed_bytes.min(memory.pss_bytes);
        memory.pss_bytes -= freed;
        freed_total += freed;
    }
    simulated.mem_available_bytes =
        (reading.mem_available_bytes + freed_total).min(reading.mem_total_bytes);
    simulated
}

fn restart(worker: u32, reading: &Reading, state: &mut BTreeMap<u32, Counterfactual>) {
    let Some(memory) = reading.workers.get(&worker) else {
        return;
    };
    let entry = state.entry(worker).or_default();
    let base = entry.base_bytes.unwrap_or(0);
    entry.freed_bytes = memory.pss_bytes.saturating_sub(base);
}

fn record_point(simulation: &mut Simulation, t_ns: u64, recorded: &Reading, simulated: &Reading) {
    simulation.points.push(SimulatedPoint {
        t_ns,
        recorded_available_bytes: recorded.mem_available_bytes,
        simulated_available_bytes: simulated.mem_available_bytes,
    });
    for (worker, memory) in &recorded.workers {
        let peak = simulation.peaks.entry(*worker).or_default();
        peak.0 = peak.0.max(memory.pss_bytes);
        let simulated_pss = simulated.workers.get(worker).map_or(0, |m| m.pss_bytes);
        peak.1 = peak.1.max(simulated_pss);
    }
}

/// How a simulation is told: as text, as JSON, and as the report's events.
impl Simulation {
    /// The simulated actions as `policy` events marked simulated, on the recording's clock.
    pub fn events(&self, start_wall_ns: u64) -> Vec<Event> {
        let start = start_wall_ns;
        self.actions
            .iter()
            .filter(|a| a.kind != ActionKind::Answer(crate::policy::Answer::Go))
            .map(|a| Event {
                t_ns: a.t_ns,
                wall_ns: start + a.t_ns,
                worker: a.worker,
                kind: EventKind::Policy {
                    action: a.name(),
                    reason: a.reason.clone(),
                    worker_pss_bytes: a.worker_pss_bytes,
                    available_bytes: a.available_bytes,
                    simulated: true,
                },
            })
            .collect()
    }

    /// What the policy would have done, and what it would have left, in sentences.
    pub fn text(&self) -> String {
        let counters = &self.counters;
        let restarts: u64 = counters.restarts.values().sum();
        let by_rule: Vec<String> = counters
            .restarts
            .iter()
            .map(|(rule, n)| format!("{n} by {rule}"))
            .collect();
        let mut out = format!(
            "Under this policy: the brake would have engaged {} time(s) and held back {} trial(s); {} escalation(s); {restarts} restart(s){}.\n",
            counters.brake_engagements,
            counters.brakes,
            counters.escalations,
            if by_rule.is_empty() { String::new() } else { format!(" ({})", by_rule.join(", ")) },
        );
        for action in self.actions.iter().filter(|a| listed(a)) {
            let who = action
                .worker
                .map_or(String::new(), |w| format!("worker {w} "));
            out.push_str(&format!(
                "  +{:<9} {who}{}: {}\n",
                duration(action.t_ns as f64 / 1e9),
                action.name(),
                action.reason
            ));
        }
        if let Some((recorded, after)) = self.min_available() {
            out.push_str(&format!(
                "Lowest available memory: {} recorded, {} under the policy.\n",
                size(recorded as f64),
                size(after as f64)
            ));
        }
        for (worker, (recorded, after)) in &self.peaks {
            out.push_str(&format!(
                "Worker {worker}: peak PSS {} recorded, {} under the policy.\n",
                size(*recorded as f64),
                size(*after as f64)
            ));
        }
        out.push_str("Model: a restarted worker drops back to the PSS it started with, then grows as recorded; trials happen as recorded.\n");
        out
    }

    /// The same as `--json` prints it (schema version 1).
    pub fn json(&self) -> serde_json::Value {
        let actions: Vec<serde_json::Value> = self
            .actions
            .iter()
            .filter(|a| listed(a))
            .map(|a| {
                serde_json::json!({
                    "t_s": a.t_ns as f64 / 1e9,
                    "worker": a.worker,
                    "action": a.name(),
                    "reason": a.reason,
                    "worker_pss_bytes": a.worker_pss_bytes,
                    "available_bytes": a.available_bytes,
                })
            })
            .collect();
        let (recorded, after) = self.min_available().unzip();
        serde_json::json!({
            "schema_version": 1,
            "counters": self.counters,
            "actions": actions,
            "min_available_bytes": { "recorded": recorded, "simulated": after },
            "end_available_bytes": {
                "recorded": self.points.last().map(|p| p.recorded_available_bytes),
                "simulated": self.points.last().map(|p| p.simulated_available_bytes),
            },
            "peak_pss_bytes": self.peaks.iter().map(|(w, (r, s))| serde_json::json!({
                "worker": w, "recorded": r, "simulated": s
            })).collect::<Vec<_>>(),
        })
    }
}

/// Answers to a worker's question before each trial are counted, not listed.
fn listed(action: &Action) -> bool {
    !matches!(action.kind, ActionKind::Answer(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::WorkerMemory;

    const GIB: u64 = 1 << 30;

    fn tick(t_s: u64, available: u64, pss: u64) -> Recorded {
        Recorded::Tick(TickRow {
            t_ns: t_s * 1_000_000_000,
            reading: Reading {
                mem_total_bytes: 32 * GIB,
                mem_available_bytes: available,
                psi_full_avg10: None,
                limit_bytes: None,
                devices: Vec::new(),
                workers: [(
                    0,
                    WorkerMemory {
                        pss_bytes: pss,
                        gpu_bytes: None,
                        pss_stale: false,
                        cgroup_bytes: None,
                    },
                )]
                .into(),
            },
        })
    }

    #[test]
    fn a_simulated_restart_frees_what_the_worker_grew_since_its_start() {
        let policy =
            Policy::parse("[restart]\nmax_worker_pss = \"4GiB\"\n", "p.toml").expect("valid");
        // The worker grows 1 GiB a second from 1 GiB; the machine loses the same.
        let recorded = (0..8).map(|s| tick(s, (20 - s) * GIB, (1 + s) * GIB));
        let simulation = simulate(policy, 1, recorded);
        let stops: Vec<u64> = simulation
            .actions
            .iter()
            .filter(|a| a.kind == ActionKind::Stop)
            .map(|a| a.t_ns / 1_000_000_000)
            .collect();
        // Over 4 GiB at 4 s (5 GiB): back to 1 GiB, so over again at 8 s... which the run
        // does not reach.
        assert_eq!(stops, [4]);
        let last = simulation.points.last().expect("points");
        assert_eq!(last.recorded_available_bytes, 13 * GIB);
        assert_eq!(last.simulated_available_bytes, 17 * GIB, "4 GiB freed");
        assert_eq!(simulation.peaks[&0], (8 * GIB, 5 * GIB));
    }

    #[test]
    fn a_restart_the_recording_holds_resets_the_counterfactual() {
        let policy =
            Policy::parse("[restart]\nmax_worker_pss = \"4GiB\"\n", "p.toml").expect("valid");
        let mut recorded: Vec<Recorded> =
            (0..6).map(|s| tick(s, 20 * GIB, (1 + s) * GIB)).collect();
        recorded.push(Recorded::WorkerStart {
            worker: 0,
            attempt: 1,
        });
        recorded.push(tick(6, 20 * GIB, GIB));
        let simulation = simulate(policy, 1, recorded);
        let last = simulation.points.last().expect("points");
        assert_eq!(
            last.simulated_available_bytes,
            20 * GIB,
            "nothing more to free"
        );
    }
}
