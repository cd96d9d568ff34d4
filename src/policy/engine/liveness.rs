//! The engine's liveness invariant (see `engine`'s module comment), checked against a small world
//! of workers that act as real ones do: trials that take time, a trial's end and the next start
//! printed back to back (Optuna's log), pauses that land after that start line, cooperative
//! workers asking at a gate, stops that take up to the grace period, crashes, memory that leaks
//! per trial. Named regression tests replay the two runs of issue 29; a property test feeds
//! random worlds and policies.

use super::*;
use crate::policy::Policy;
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
const S: u64 = 1_000_000_000;
const TICK: u64 = S / 10;

/// A deterministic generator for the world's choices (proptest picks the seed).
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Clone)]
struct Shape {
    workers: u32,
    cooperative: Vec<bool>,
    back_to_back: bool,
    trial_ns: u64,
    leak_bytes: u64,
    base_bytes: u64,
    total_bytes: u64,
    outside_bytes: u64,
    /// Chance per tick per worker of a crash, in millionths.
    crash_per_million: u64,
}

#[derive(Default, Clone)]
struct SimWorker {
    alive: bool,
    paused: bool,
    /// Time left in the running trial (frozen while paused).
    trial_left_ns: Option<u64>,
    ask_at: Option<u64>,
    stopping_until: Option<u64>,
    pss: u64,
    trials: u32,
}

struct World {
    shape: Shape,
    engine: Engine,
    workers: Vec<SimWorker>,
    dice: Dice,
    grace_ns: u64,
    now: u64,
    completed: Vec<u64>,
    actions: Vec<Action>,
}

impl World {
    fn new(shape: Shape, policy: Policy, seed: u64) -> Self {
        let grace_ns = policy.restart.grace.as_nanos() as u64;
        let mut world = Self {
            engine: Engine::new(policy, shape.workers),
            workers: vec![SimWorker::default(); shape.workers as usize],
            shape,
            dice: Dice(seed | 1),
            grace_ns,
            now: 0,
            completed: Vec::new(),
            actions: Vec::new(),
        };
        let starts = world.engine.begin(0);
        world.apply(starts);
        world
    }

    fn feed(&mut self, input: Input) -> Vec<Action> {
        let actions = self.engine.step(self.now, input);
        self.actions.extend(actions.iter().cloned());
        actions
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            let Some(index) = action.worker else {
                continue;
            };
            let grace = self.grace_ns;
            let delay = self.dice.below(grace + 1);
            let w = &mut self.workers[index as usize];
            match action.kind {
                ActionKind::Start { .. } => {
                    *w = SimWorker {
                        alive: true,
                        pss: self.shape.base_bytes,
                        ..SimWorker::default()
                    }
                }
                // SIGTERM with SIGCONT, SIGKILL after the grace period: gone by then.
                ActionKind::Stop => w.stopping_until = Some(self.now + delay),
                ActionKind::Pause => w.paused = true,
                ActionKind::Resume => w.paused = false,
                ActionKind::AbortTrial => {
                    if w.trial_left_ns.is_some() && self.dice.chance(500) {
                        w.trial_left_ns = Some(0);
                    }
                }
                ActionKind::Answer(Answer::Go) => {
                    w.ask_at = None;
                    w.trial_left_ns = Some(self.shape.trial_ns);
                    let trial = w.trials.to_string();
                    let more = self.feed(Input::TrialStart {
                        worker: index,
                        trial,
                    });
                    self.apply(more);
                }
                ActionKind::Answer(Answer::Wait(after)) => {
                    w.ask_at = Some(self.now + after.as_nanos() as u64)
                }
                ActionKind::Answer(Answer::Abort) => w.ask_at = None,
                ActionKind::BackOff { .. } | ActionKind::GiveUp => {}
                ActionKind::BrakeOn | ActionKind::BrakeOff | ActionKind::Escalate => {}
            }
        }
    }

    fn start_trial(&mut self, index: u32) {
        let w = &mut self.workers[index as usize];
        w.trial_left_ns = Some(self.shape.trial_ns);
        let trial = w.trials.to_string();
        let actions = self.feed(Input::TrialStart {
            worker: index,
            trial,
        });
        self.apply(actions);
    }

    /// One tick of the world: workers run, memory is read, stops complete, crashes happen.
    fn tick(&mut self) {
        self.now += TICK;
        for index in 0..self.shape.workers {
            let i = index as usize;
            let cooperative = self.shape.cooperative[i];
            let w = &mut self.workers[i];
            if !w.alive || w.paused || w.stopping_until.is_some() {
                continue;
            }
            match w.trial_left_ns {
                Some(left) if left > TICK => w.trial_left_ns = Some(left - TICK),
                Some(_) => {
                    w.trial_left_ns = None;
                    w.pss += self.shape.leak_bytes;
                    w.trials += 1;
                    self.completed.push(self.now);
                    let actions = self.feed(Input::TrialEnd { worker: index });
                    // The next start line was written with the end: it arrives whatever the
                    // end's actions were (a pause lands after it).
                    if !cooperative && self.shape.back_to_back {
                        self.workers[i].trial_left_ns = Some(self.shape.trial_ns);
                        let trial = self.workers[i].trials.to_string();
                        let more = self.feed(Input::TrialStart {
                            worker: index,
                            trial,
                        });
                        self.apply(actions);
                        self.apply(more);
                    } else {
                        self.apply(actions);
                        if cooperative {
                            self.workers[i].ask_at = Some(self.now);
                        }
                    }
                }
                None if cooperative => {
                    if w.ask_at.is_none_or(|at| at <= self.now) {
                        w.ask_at = Some(u64::MAX);
                        let actions = self.feed(Input::Ask { worker: index });
                        self.apply(actions);
                    }
                }
                None => self.start_trial(index),
            }
        }
        let used: u64 = self.workers.iter().filter(|w| w.alive).map(|w| w.pss).sum();
        let available = self
            .shape
            .total_bytes
            .saturating_sub(self.shape.outside_bytes + used);
        let reading = Reading {
            mem_total_bytes: self.shape.total_bytes,
            mem_available_bytes: available,
            psi_full_avg10: Some(0.0),
            limit_bytes: None,
            devices: Vec::new(),
            workers: (0u32..)
                .zip(&self.workers)
                .filter(|(_, w)| w.alive)
                .map(|(i, w)| {
                    (
                        i,
                        WorkerMemory {
                            pss_bytes: w.pss,
                            gpu_bytes: None,
                            pss_stale: false,
                            cgroup_bytes: None,
                        },
                    )
                })
                .collect(),
        };
        let actions = self.feed(Input::Tick(reading));
        self.apply(actions);
        for index in 0..self.shape.workers {
            let w = &mut self.workers[index as usize];
            let stopped = w.stopping_until.is_some_and(|at| at <= self.now);
            let crashed = w.alive
                && w.stopping_until.is_none()
                && self.dice.below(1_000_000) < self.shape.crash_per_million;
            if stopped || crashed {
                *w = SimWorker::default();
                let actions = self.feed(Input::WorkerExit {
                    worker: index,
                    success: false,
                });
                self.apply(actions);
            }
        }
    }

    /// The brake is off, or something moves: a worker free to run a trial (running and not
    /// held: in a trial, or not waiting for a gate's answer), a restart under way (a worker
    /// stopping), or no worker alive at all (nothing a restart could free; the engine says so).
    fn progress_possible(&self) -> bool {
        !self.engine.brake_on()
            || self.workers.iter().all(|w| !w.alive)
            || self
                .workers
                .iter()
                .zip(&self.shape.cooperative)
                .any(|(w, &coop)| {
                    w.stopping_until.is_some()
                        || (w.alive && !w.paused && (w.trial_left_ns.is_some() || !coop))
                })
    }

    /// Runs for `duration_ns`; the longest stretch with the brake on and nothing possible.
    fn run(&mut self, duration_ns: u64) -> u64 {
        let (mut stalled_since, mut longest) = (None, 0);
        while self.now < duration_ns {
            self.tick();
            if self.progress_possible() {
                stalled_since = None;
            } else {
                let since = *stalled_since.get_or_insert(self.now);
                longest = longest.max(self.now - since);
            }
        }
        longest
    }
}

fn policy(text: &str) -> Policy {
    Policy::parse(text, "test.toml").expect("valid policy")
}

/// Issue 29's first run: 4 workers keeping 8 MiB a trial, 1.5 GiB, the trial's end and the next
/// start printed together. Each is paused just after its next start line.
fn issue_29(leak_mib: u64) -> Shape {
    Shape {
        workers: 4,
        cooperative: vec![false; 4],
        back_to_back: true,
        trial_ns: TICK,
        leak_bytes: leak_mib * MIB,
        base_bytes: 10 * MIB,
        total_bytes: 1536 * MIB,
        outside_bytes: 0,
        crash_per_million: 0,
    }
}

#[test]
fn workers_paused_after_their_next_start_line_are_restarted_not_waited_on() {
    let mut world = World::new(issue_29(8), policy(""), 29);
    let longest = world.run(60 * S);
    let stops: Vec<&Action> = world
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Stop)
        .collect();
    assert!(!stops.is_empty(), "the old engine restarted none");
    let held = stops
        .iter()
        .find(|a| a.reason.contains("restarted while held by the brake"))
        .expect("a restart of a held worker");
    assert!(
        held.reason.contains(", which it had started, is lost"),
        "names the trial it loses: {}",
        held.reason
    );
    let escalations = world
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Escalate)
        .count() as u64;
    assert_eq!(
        escalations,
        world.engine.counters().escalations,
        "each one written"
    );
    // Default policy: escalation.after 30 s + restart.grace 10 s + a tick.
    assert!(longest <= 40 * S + TICK, "stalled {longest} ns");
    // Trials complete after the first brake, and not only right after it.
    let first_brake = world
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::BrakeOn)
        .expect("the brake engaged")
        .t_ns;
    let late = world
        .completed
        .iter()
        .filter(|&&t| t > first_brake + 30 * S)
        .count();
    assert!(late > 0, "no trial completed in the run's last half");
}

#[test]
fn after_the_emergency_floor_the_paused_workers_are_still_restarted() {
    // Issue 29's second run: 64 MiB a trial; the emergency floor restarts first, then all
    // workers sat paused to the end.
    let mut world = World::new(issue_29(64), policy(""), 64);
    let longest = world.run(45 * S);
    let rules = &world.engine.counters().restarts;
    assert!(rules.values().sum::<u64>() >= 2, "{rules:?}");
    assert!(longest <= 40 * S + TICK, "stalled {longest} ns");
    let last = world.completed.last().copied().unwrap_or(0);
    assert!(last > 30 * S, "the last completed trial was at {last} ns");
}

#[test]
fn an_escalation_without_a_worker_to_restart_says_why() {
    let mut engine = Engine::new(policy("[escalation]\nafter = \"5s\"\n"), 1);
    engine.begin(0);
    engine.step(
        0,
        Input::TrialStart {
            worker: 0,
            trial: "3".into(),
        },
    );
    let tick = |available| {
        Input::Tick(Reading {
            mem_total_bytes: 1536 * MIB,
            mem_available_bytes: available,
            workers: [(
                0,
                WorkerMemory {
                    pss_bytes: 900 * MIB,
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        })
    };
    engine.step(S, tick(100 * MIB));
    // Restarting at the trial's end, within the grace period.
    let first = engine.step(6 * S, tick(100 * MIB));
    assert_eq!(first[0].kind, ActionKind::Escalate);
    let second = engine.step(11 * S, tick(100 * MIB));
    let again = second
        .iter()
        .find(|a| a.kind == ActionKind::Escalate)
        .expect("an escalation");
    assert_eq!(again.worker, None);
    assert!(
        again
            .reason
            .ends_with("no worker can be restarted: of 1 worker(s), 1 already restarting"),
        "{}",
        again.reason
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Liveness: in any interleaving, the brake never holds everything for longer than
    /// `escalation.after` + `restart.grace` + one tick without a trial running or a restart
    /// under way.
    #[test]
    fn the_brake_never_stalls_the_run_past_its_bound(
        seed in any::<u64>(),
        workers in 1u32..=4,
        cooperative in proptest::collection::vec(any::<bool>(), 4),
        back_to_back in any::<bool>(),
        trial_ticks in 1u64..=30,
        leak_mib in 0u64..=96,
        outside_mib in 0u64..=1200,
        crash_per_million in prop_oneof![Just(0u64), 0u64..=2000],
        after_brakes in 1u32..=30,
        after_s in 1u64..=60,
        grace_s in 1u64..=15,
        wait_s in 1u64..=10,
        floor in any::<bool>(),
    ) {
        let shape = Shape {
            workers,
            cooperative: cooperative[..workers as usize].to_vec(),
            back_to_back,
            trial_ns: trial_ticks * TICK,
            leak_bytes: leak_mib * MIB,
            base_bytes: 20 * MIB,
            total_bytes: 2048 * MIB,
            outside_bytes: outside_mib * MIB,
            crash_per_million,
        };
        let text = format!(
            "[brake]\nwait = \"{wait_s}s\"\n[escalation]\nafter_brakes = {after_brakes}\nafter = \"{after_s}s\"\n[restart]\ngrace = \"{grace_s}s\"\n{}",
            if floor { "" } else { "emergency_floor = \"1B\"\n" }
        );
        let mut world = World::new(shape, policy(&text), seed);
        let longest = world.run(180 * S);
        let bound = (after_s + grace_s) * S + TICK;
        prop_assert!(longest <= bound, "stalled {} s, bound {} s", longest as f64 / 1e9, bound as f64 / 1e9);
    }
}
