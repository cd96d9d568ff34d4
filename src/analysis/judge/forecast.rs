//! When memory runs out at the measured rates, and the settings that prevent it: how many
//! workers fit, how often to restart them, what per-worker limit to set. The arithmetic a person
//! would otherwise do on the back of an envelope, done the same way every time.

use super::findings::Forecast;

use crate::units::GIB;
/// Kept free for the rest of the host: the kernel, page cache, the harness.
const RESERVE_FRACTION: f64 = 0.10;

/// What the forecast needs from one worker (bytes, bytes per trial, bytes per hour).
#[derive(Debug, Clone, Copy)]
pub struct WorkerRates {
    /// The worker's level at the start of the run.
    pub first_bytes: f64,
    /// The typical transient peak above the retained level during a trial.
    pub transient_bytes: f64,
    /// Ongoing growth; 0 for workers without a leak verdict.
    pub per_trial: f64,
    pub per_hour: f64,
    /// Median wall time of a trial including the gap after it.
    pub trial_hours: Option<f64>,
}

pub struct Machine {
    pub mem_total_bytes: f64,
    pub first_available_bytes: f64,
    pub last_available_bytes: f64,
}

/// The longest restart period advised where trials have no measured duration.
const MAX_RESTART_PERIOD_TRIALS: u64 = 1_000_000;

/// `window_s`: how long the run recorded. Under `MIN_HOURLY_WINDOW_S` no time is projected
/// (a rate per hour from seconds is not a measurement): the outlook is in trials only.
pub fn forecast(
    machine: &Machine,
    workers: &[WorkerRates],
    horizon_hours: f64,
    window_s: f64,
) -> Forecast {
    let short = window_s < super::gates::MIN_HOURLY_WINDOW_S;
    let n = workers.len().max(1) as f64;
    let workers_first: f64 = workers.iter().map(|w| w.first_bytes).sum();
    let reserve = RESERVE_FRACTION * machine.mem_total_bytes;
    let others = (machine.mem_total_bytes - machine.first_available_bytes - workers_first).max(0.0);
    let budget = (machine.mem_total_bytes - reserve - others).max(0.0);
    let per_hour: f64 = workers.iter().map(|w| w.per_hour.max(0.0)).sum();
    let per_trial: f64 = workers.iter().map(|w| w.per_trial.max(0.0)).sum();
    let headroom = (machine.last_available_bytes - reserve).max(0.0);
    let max_of = |f: fn(&WorkerRates) -> f64| workers.iter().map(f).fold(0.0, f64::max);
    // Every worker runs the same code, so plan for each to behave like the worst one.
    let worst_per_trial = max_of(|w| w.per_trial);
    let worst_per_hour = max_of(|w| w.per_hour);
    let transient = max_of(|w| w.transient_bytes);
    let mut bases: Vec<f64> = workers.iter().map(|w| w.first_bytes).collect();
    bases.sort_by(f64::total_cmp);
    let base = bases.get(bases.len() / 2).copied().unwrap_or(0.0);
    let trial_hours = workers
        .iter()
        .filter_map(|w| w.trial_hours)
        .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));

    let footprint = base + transient + worst_per_hour.max(0.0) * horizon_hours;
    let max_workers = (footprint > 0.0).then(|| (budget / footprint).floor() as u32);
    let allowance = budget / n;
    // A period longer than the horizon (or than any run, where trials have no duration) is
    // no advice: growth that slow needs no restarts ("every 325384403 trials" was printed).
    let restart_every_trials = (worst_per_trial > 0.0 && allowance > base + transient)
        .then(|| ((allowance - base - transient) / worst_per_trial).floor() as u64)
        .filter(|&k| match trial_hours {
            Some(h) => k as f64 * h <= horizon_hours,
            None => k <= MAX_RESTART_PERIOD_TRIALS,
        });
    let restart_every_minutes = restart_every_trials
        .zip(trial_hours)
        .map(|(k, h)| k as f64 * h * 60.0);
    let leaking = worst_per_trial > 0.0 || worst_per_hour > 0.0;

    let mut advice = Vec::new();
    if leaking {
        if let Some(k) = max_workers.filter(|_| !short) {
            advice.push(format!(
                "for {horizon_hours:.0} h without restarts, at most {k} worker(s) fit in {:.1} GiB",
                budget / GIB
            ));
        }
        match restart_every_trials {
            Some(k) => advice.push(format!(
                "with {} worker(s), restart each every {k} trials{} or when it passes {:.2} GiB",
                workers.len(),
                restart_every_minutes.map_or(String::new(), |m| format!(" (~{m:.0} min)")),
                allowance / GIB
            )),
            None if worst_per_trial > 0.0 && allowance > base + transient => advice.push(format!(
                "with {} worker(s), no restarts are needed within {horizon_hours:.0} h at this growth",
                workers.len()
            )),
            None if worst_per_trial > 0.0 => advice.push(format!(
                "{} worker(s) do not fit even right after a restart: run fewer",
                workers.len()
            )),
            None => {}
        }
    } else if budget < n * (base + transient) {
        advice.push(format!(
            "{} worker(s) need {:.1} GiB at their peaks, more than the {:.1} GiB budget",
            workers.len(),
            n * (base + transient) / GIB,
            budget / GIB
        ));
    }
    Forecast {
        mem_total_bytes: machine.mem_total_bytes,
        available_bytes: machine.last_available_bytes,
        budget_bytes: budget,
        workers: workers.len() as u32,
        growth_bytes_per_hour: per_hour,
        growth_bytes_per_trial: per_trial,
        exhausted_in_hours: (per_hour > 0.0 && !short).then(|| headroom / per_hour),
        exhausted_in_trials: (per_trial > 0.0).then(|| headroom / per_trial),
        horizon_hours,
        max_workers: if leaking && !short { max_workers } else { None },
        restart_every_trials,
        restart_every_minutes,
        worker_limit_bytes: restart_every_trials.map(|_| allowance),
        advice,
        short_window_s: short.then_some(window_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overnight incident: two workers at 2 GiB leaking to 15 GiB in an hour on 31 GiB.
    #[test]
    fn overnight_incident_numbers() {
        let machine = Machine {
            mem_total_bytes: 31.0 * GIB,
            first_available_bytes: 26.0 * GIB,
            last_available_bytes: 4.0 * GIB,
        };
        let worker = WorkerRates {
            first_bytes: 2.0 * GIB,
            transient_bytes: 0.5 * GIB,
            per_trial: 0.1 * GIB,
            per_hour: 11.0 * GIB,
            trial_hours: Some(1.0 / 110.0),
        };
        let f = forecast(&machine, &[worker, worker], 12.0, 3600.0);
        // Budget: 31 − 3.1 reserve − 1 other = 26.9 GiB; headroom 4 − 3.1 = 0.9 GiB.
        assert!((f.budget_bytes / GIB - 26.9).abs() < 0.01);
        assert!((f.exhausted_in_hours.expect("hours") - 0.9 / 22.0).abs() < 0.001);
        assert_eq!(f.max_workers, Some(0));
        // 13.45 GiB each: (13.45 − 2.5) / 0.1 = 109 trials.
        assert_eq!(f.restart_every_trials, Some(109));
        assert!(f
            .advice
            .iter()
            .any(|a| a.contains("restart each every 109 trials")));
    }

    /// 16 GiB, 12 GiB available at the start and the end.
    fn idle_16_gib() -> Machine {
        Machine {
            mem_total_bytes: 16.0 * GIB,
            first_available_bytes: 12.0 * GIB,
            last_available_bytes: 12.0 * GIB,
        }
    }

    #[test]
    fn no_leak_no_restarts() {
        let machine = idle_16_gib();
        let worker = WorkerRates {
            first_bytes: GIB,
            transient_bytes: 0.0,
            per_trial: 0.0,
            per_hour: 0.0,
            trial_hours: None,
        };
        let f = forecast(&machine, &[worker], 12.0, 3600.0);
        assert_eq!((f.exhausted_in_hours, f.restart_every_trials), (None, None));
        assert!(f.advice.is_empty());
    }

    /// Growth so slow that a restart period would outlast the horizon is no restart advice.
    #[test]
    fn a_restart_period_beyond_the_horizon_is_not_advised() {
        let machine = idle_16_gib();
        for trial_hours in [Some(1.0 / 3600.0), None] {
            let worker = WorkerRates {
                first_bytes: GIB,
                transient_bytes: 0.0,
                per_trial: 40.0,
                per_hour: 40.0 * 3600.0,
                trial_hours,
            };
            let f = forecast(&machine, &[worker], 12.0, 3600.0);
            assert_eq!(f.restart_every_trials, None, "{trial_hours:?}");
            assert!(
                f.advice
                    .iter()
                    .any(|a| a.contains("no restarts are needed within 12 h")),
                "{:?}",
                f.advice
            );
        }
    }

    /// Seconds of recording give trials, never hours: no time to exhaustion, no workers that
    /// fit "for 12 h" (the forecast printed +591179 MiB/h from a 3 s pytest run).
    #[test]
    fn a_short_run_forecasts_in_trials_only() {
        let machine = idle_16_gib();
        let worker = WorkerRates {
            first_bytes: GIB,
            transient_bytes: 0.0,
            per_trial: 0.5 * GIB / 1024.0,
            per_hour: 600.0 * GIB,
            trial_hours: Some(1.0 / 3600.0),
        };
        let f = forecast(&machine, &[worker], 12.0, 3.0);
        assert_eq!((f.exhausted_in_hours, f.max_workers), (None, None));
        assert_eq!(f.short_window_s, Some(3.0));
        assert!(f.exhausted_in_trials.is_some_and(|t| t > 1000.0), "{f:?}");
        assert!(
            !f.advice.iter().any(|a| a.contains("without restarts")),
            "{:?}",
            f.advice
        );
        let long = forecast(&machine, &[worker], 12.0, 300.0);
        assert!(long.exhausted_in_hours.is_some() && long.short_window_s.is_none());
    }
}
