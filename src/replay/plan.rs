//! Which recorded trial a replay runs, and how its parameters reach the command: the
//! environment and `{name}` placeholders in its arguments.

use crate::recording::{value_text, Trial};
use serde_json::Value;
use std::collections::BTreeMap;

pub type Params = BTreeMap<String, Value>;

/// A trial to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialCase {
    pub worker: u32,
    pub trial: String,
    pub params: Params,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReplayError {
    #[error("no trial {trial} in the recording{on} (it has {count} trial(s){range})")]
    NoTrial {
        trial: String,
        on: String,
        count: usize,
        range: String,
    },
    #[error("trial {trial} ran on workers {workers}: choose one with --worker")]
    Ambiguous { trial: String, workers: String },
    #[error("the recording's trials have no parameters: nothing to bisect")]
    NothingToBisect,
}

/// The recorded trial `trial` (of `worker`, when given).
pub fn find_trial(
    trials: &[Trial],
    trial: &str,
    worker: Option<u32>,
) -> Result<TrialCase, ReplayError> {
    let found: Vec<&Trial> = trials
        .iter()
        .filter(|t| t.trial == trial && worker.is_none_or(|w| t.worker == w))
        .collect();
    match found.as_slice() {
        [one] => Ok(TrialCase {
            worker: one.worker,
            trial: one.trial.to_string(),
            params: one
                .params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }),
        [] => Err(ReplayError::NoTrial {
            trial: trial.to_string(),
            on: worker.map_or(String::new(), |w| format!(" of worker {w}")),
            count: trials.len(),
            range: match (trials.first(), trials.last()) {
                (Some(a), Some(b)) => format!(", from {} to {}", a.trial, b.trial),
                _ => String::new(),
            },
        }),
        many => Err(ReplayError::Ambiguous {
            trial: trial.to_string(),
            workers: many
                .iter()
                .map(|t| t.worker.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Replaces `{name}` in each argument with the parameter's value. Braces that do not name a
/// parameter stay as they are (a Python format string in an argument is not ours).
pub fn substitute(argv: &[String], params: &Params) -> Vec<String> {
    argv.iter()
        .map(|arg| {
            let mut out = arg.clone();
            for (name, value) in params {
                let placeholder = format!("{{{name}}}");
                if out.contains(&placeholder) {
                    out = out.replace(&placeholder, &value_text(value));
                }
            }
            out
        })
        .collect()
}

/// The environment a replayed worker gets.
pub fn environment(case: &TrialCase, repeat: u32) -> Vec<(String, String)> {
    vec![
        (
            "MEMWARDEN_TRIAL_PARAMS".into(),
            Value::Object(case.params.clone().into_iter().collect()).to_string(),
        ),
        ("MEMWARDEN_TRIAL_REPEAT".into(), repeat.to_string()),
        ("MEMWARDEN_TRIAL".into(), case.trial.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trial(worker: u32, id: &str, params: &[(&str, Value)]) -> Trial {
        Trial {
            worker,
            trial: id.into(),
            start_ns: Some(0),
            end_ns: Some(1),
            state: "complete".into(),
            value: None,
            params: std::sync::Arc::new(
                params
                    .iter()
                    .map(|(k, v)| ((*k).into(), v.clone()))
                    .collect(),
            ),
            end_memory: None,
        }
    }

    #[test]
    fn placeholders_become_single_verbatim_arguments() {
        let params: Params = [
            ("lr".to_string(), json!(0.001)),
            ("note".to_string(), json!("a b; rm -rf / $(id) `x` {lr}")),
        ]
        .into();
        let argv = [
            "train.py",
            "--lr={lr}",
            "--note",
            "{note}",
            "{unknown}",
            "{}",
        ]
        .map(String::from);
        let out = substitute(&argv, &params);
        assert_eq!(out[1], "--lr=0.001");
        assert_eq!(
            out[3], "a b; rm -rf / $(id) `x` {lr}",
            "one argument, verbatim"
        );
        assert_eq!(out[4..], ["{unknown}", "{}"]);
    }

    #[test]
    fn a_trial_is_found_or_the_error_says_what_there_is() {
        let trials = vec![
            trial(0, "3", &[("bs", json!(16))]),
            trial(1, "3", &[("bs", json!(64))]),
            trial(1, "4", &[]),
        ];
        assert_eq!(
            find_trial(&trials, "3", Some(1)).expect("found").params["bs"],
            json!(64)
        );
        assert_eq!(
            find_trial(&trials, "3", None).err().map(|e| e.to_string()),
            Some("trial 3 ran on workers 0, 1: choose one with --worker".into())
        );
        assert_eq!(
            find_trial(&trials, "17", None).err().map(|e| e.to_string()),
            Some("no trial 17 in the recording (it has 3 trial(s), from 3 to 4)".into())
        );
    }
}
