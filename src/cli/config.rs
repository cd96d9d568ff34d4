//! The config layer: command-line flags and the policy file turned, once, into what the harness
//! and the policy engine take. Commands call these and stay glue.

use super::{PolicyArgs, RecordArgs};
use crate::harness::HarnessConfig;
use crate::policy::Policy;
use crate::probe::ProcRoot;
use crate::recording::default_run_dir;
use crate::sampler::HoldLimits;
use std::time::Duration;

impl PolicyArgs {
    /// The policy from `--policy` and the knob flags (which win), or `None` when none was given.
    /// Returns the text to keep beside the recording too.
    pub fn load(&self) -> anyhow::Result<Option<(Policy, String)>> {
        let knobs = self.budget.is_some()
            || self.max_worker_pss.is_some()
            || self.restart_every_trials.is_some()
            || self.restart_every.is_some()
            || self.stagger.is_some()
            || self.canary_trials.is_some()
            || self.memory_max.is_some();
        let (mut policy, mut text) = match &self.policy {
            Some(path) => {
                let policy = Policy::load(path)?;
                crate::redact::install(policy.redact.patterns.clone());
                (policy, std::fs::read_to_string(path).unwrap_or_default())
            }
            None if knobs => (Policy::default(), String::new()),
            None => return Ok(None),
        };
        let mut flags = Vec::new();
        if let Some(budget) = self.budget {
            policy.budget = Some(budget);
            flags.push(format!("budget = \"{budget}B\""));
        }
        if let Some(max) = self.max_worker_pss {
            policy.restart.max_worker_pss = Some(max);
            flags.push(format!("restart.max_worker_pss = \"{max}B\""));
        }
        if let Some(n) = self.restart_every_trials {
            policy.restart.every_trials = Some(n);
            flags.push(format!("restart.every_trials = {n}"));
        }
        if let Some(every) = self.restart_every {
            policy.restart.every = Some(every);
            flags.push(format!(
                "restart.every = \"{}\"",
                humantime::format_duration(every)
            ));
        }
        if let Some(stagger) = self.stagger {
            policy.start.stagger = Some(stagger);
            flags.push(format!(
                "start.stagger = \"{}\"",
                humantime::format_duration(stagger)
            ));
        }
        if let Some(n) = self.canary_trials {
            policy.start.canary_trials = Some(n);
            flags.push(format!("start.canary_trials = {n}"));
        }
        if let Some(max) = self.memory_max {
            policy.containment.memory_max = Some(max);
            flags.push(format!("containment.memory_max = \"{max}B\""));
        }
        if let Err(conflict) = policy.check() {
            anyhow::bail!("the policy with the flags given: {}", conflict.message);
        }
        if !flags.is_empty() {
            text.push_str("\n# From the command line, overriding the above:\n# ");
            text.push_str(&flags.join("\n# "));
            text.push('\n');
        }
        Ok(Some((policy, text)))
    }
}

impl RecordArgs {
    /// The harness config these flags ask for (no policy yet; the caller adds it).
    pub fn harness_config(&self, grace: Duration) -> HarnessConfig {
        HarnessConfig {
            run_dir: self.out.clone().unwrap_or_else(default_run_dir),
            interval: self.interval,
            rollup_cpu_fraction: self.rollup_cpu / 100.0,
            hold: HoldLimits {
                max_stall_ns: self.max_stall.as_nanos() as u64,
                fraction: self.max_hold / 100.0,
            },
            grace,
            duration: self.duration,
            trial_regex: self.trial_regex.clone(),
            segment_duration: self.segment,
            root: ProcRoot::default(),
            policy: None,
            policy_text: None,
            mode: "run".into(),
            env: Vec::new(),
            live: None,
            trace_python: false,
            replay_optuna: false,
            log_cap: self.log_cap,
        }
    }
}
