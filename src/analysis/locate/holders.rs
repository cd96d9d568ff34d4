//! Who holds the PyTorch tensors a worker keeps from trial to trial, from the tracer's tensor
//! census (`--trace-python`, python/memwarden/_tensors.py). Pure: census reports in their
//! trials' order, with those trials' parameters, in; ranked holders out.
//!
//! Each report gives, per holder, what it held at that trial's end: cumulative. A holder's
//! growth per trial is the Theil–Sen slope of its bytes (its storages plus what its autograd
//! graphs keep) against the trial's place in the worker's order, so a census skipped for its
//! cost leaves a gap, not a wrong step. The increments between consecutive trials go to the
//! parameter analysis, which names the value that goes with the growth in bytes.

use super::params::{parameter_effects, TrialGrowth};
use crate::analysis::measures::Rate;
use crate::recording::PythonTensors;
use crate::stats::theil_sen;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The tracer lists at most this many holders per census: one missing from a full list may be
/// below its cut, not empty.
const LISTED: usize = 20;
/// Holders growing slower than this are not told.
const MIN_BYTES_PER_TRIAL: f64 = 256.0 * 1024.0;
/// Trend confidence enough for a holder whose slope interval reaches zero.
const CONFIDENT: f64 = 0.99;
/// A mechanism is named when it holds at least this share of the holder's bytes.
const MECHANISM_SHARE: f64 = 0.5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderFinding {
    /// `module.NAME`, `module.OBJ.attr`, a function for a closure (see FORMAT.md).
    pub holder: String,
    pub container: String,
    pub place: String,
    pub device: String,
    pub pid: i32,
    /// Its storages and graphs together.
    pub per_trial: Rate,
    /// One-sided confidence that what it holds grows.
    pub confidence: f64,
    /// By the last census: all it held, and of that what views pin of larger storages and
    /// what its autograd graphs keep.
    pub bytes: f64,
    pub view_bytes: f64,
    pub graph_bytes: f64,
    pub storages: u64,
    pub largest_bytes: u64,
    pub reports: usize,
    /// Its rate over the worker's measured growth per trial.
    #[serde(default)]
    pub share: Option<f64>,
    /// The trial parameter whose values go with this holder's growth, with its bytes per
    /// trial, as `name=value (+N MiB/trial)`.
    pub parameter: Option<String>,
}

impl HolderFinding {
    /// The named mechanism that keeps most of it, if one does.
    pub fn mechanism(&self) -> Option<Mechanism> {
        if self.bytes <= 0.0 {
            return None;
        }
        if self.graph_bytes >= MECHANISM_SHARE * self.bytes {
            Some(Mechanism::Graph)
        } else if self.view_bytes >= MECHANISM_SHARE * self.bytes {
            Some(Mechanism::View)
        } else {
            None
        }
    }
}

impl HolderFinding {
    /// The holder in words, for both renderers: what holds how much per trial, and the
    /// mechanism's sentence (what keeps it, and what to do) where one is named.
    pub fn words(&self) -> (String, Option<String>) {
        use crate::units::{size, MIB};
        let with = self
            .parameter
            .as_ref()
            .map_or(String::new(), |p| format!(", with {p}"));
        let device = if self.device == "cpu" {
            String::new()
        } else {
            format!(" on {}", self.device)
        };
        let share = self.share.map_or(String::new(), |s| {
            format!(", {:.0}% of the growth", 100.0 * s)
        });
        let storages = if self.largest_bytes >= 64 << 10 {
            format!(
                " in {} storage(s) of up to {}",
                self.storages,
                size(self.largest_bytes as f64)
            )
        } else {
            String::new()
        };
        let headline = format!(
            "{} ({}, {}): {:+.2} MiB/trial (95% CI {:.2}..{:.2}) of tensors{device}{share}; {} held at the last census{storages}{with}",
            self.holder,
            self.container,
            self.place,
            self.per_trial.bytes / MIB,
            self.per_trial.low_bytes / MIB,
            self.per_trial.high_bytes / MIB,
            size(self.bytes),
        );
        let mechanism = self.mechanism().map(|m| match m {
            Mechanism::Graph => format!(
                "kept through grad_fn: its tensors' autograd graphs hold {} of saved activations; store `loss.item()` or `.detach()`, not the tensor",
                size(self.graph_bytes)
            ),
            Mechanism::View => format!(
                "a view pins {} of larger tensors: a small slice keeps its whole base alive; keep `.clone()` of the slice",
                size(self.view_bytes)
            ),
        });
        (headline, mechanism)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Tensors with a `grad_fn` keep their graph's saved activations.
    Graph,
    /// Small views pin storages much larger than themselves.
    View,
}

/// One census, placed in its worker's trials.
pub struct Report<'a> {
    pub census: &'a PythonTensors,
    /// The trial's place in the worker's order.
    pub ordinal: usize,
    pub params: &'a crate::recording::ParamMap,
}

/// The holders whose tensors grow, fastest first (at most 8).
pub fn holders(reports: &[Report]) -> Vec<HolderFinding> {
    let mut by_pid: BTreeMap<i32, Vec<&Report>> = BTreeMap::new();
    for r in reports {
        by_pid.entry(r.census.pid).or_default().push(r);
    }
    let mut found = Vec::new();
    for (pid, mut reports) in by_pid {
        reports.sort_by_key(|r| r.ordinal);
        let names: std::collections::BTreeSet<&str> = reports
            .iter()
            .flat_map(|r| r.census.holders.iter().map(|h| h.holder.as_str()))
            .collect();
        for name in names {
            if let Some(h) = one(pid, name, &reports) {
                found.push(h);
            }
        }
    }
    // A restarted worker's processes ran one after another (their censuses' trials, in the
    // worker's order, do not overlap; their trial numbers may, as a new study counts from 0):
    // one finding per holder, from the process censused most, not one per process.
    let spans: BTreeMap<i32, (usize, usize)> = reports.iter().fold(BTreeMap::new(), |mut of, r| {
        let span = of.entry(r.census.pid).or_insert((r.ordinal, r.ordinal));
        *span = (span.0.min(r.ordinal), span.1.max(r.ordinal));
        of
    });
    let apart = |a: i32, b: i32| match (spans.get(&a), spans.get(&b)) {
        (Some(a), Some(b)) => a.1 < b.0 || b.1 < a.0,
        _ => false,
    };
    let mut kept: Vec<HolderFinding> = Vec::new();
    for h in found {
        match kept
            .iter_mut()
            .find(|k| k.holder == h.holder && apart(k.pid, h.pid))
        {
            Some(k) if h.reports > k.reports => *k = h,
            Some(_) => {}
            None => kept.push(h),
        }
    }
    kept.sort_by(|a, b| b.per_trial.bytes.total_cmp(&a.per_trial.bytes));
    kept.truncate(8);
    kept
}

fn one(pid: i32, name: &str, reports: &[&Report]) -> Option<HolderFinding> {
    // (ordinal, bytes held, params): a report that does not list the holder held none of it,
    // unless its list was full.
    let series: Vec<(f64, f64, &Report)> = reports
        .iter()
        .filter_map(|r| {
            let held = r.census.holders.iter().find(|h| h.holder == name);
            match held {
                Some(h) => Some((r.ordinal as f64, (h.bytes + h.graph_bytes) as f64, *r)),
                None if r.census.holders.len() < LISTED => Some((r.ordinal as f64, 0.0, *r)),
                None => None,
            }
        })
        .collect();
    let x: Vec<f64> = series.iter().map(|s| s.0).collect();
    let y: Vec<f64> = series.iter().map(|s| s.1).collect();
    let trend = theil_sen(&x, &y)?;
    // A holder that grows in steps (only some trials add to it) has many tied pairs, and
    // its slope's interval may reach zero over a few censuses while the trend test is sure.
    if trend.slope < MIN_BYTES_PER_TRIAL
        || (trend.slope_low <= 0.0 && trend.growth_confidence < CONFIDENT)
    {
        return None;
    }
    let last = reports
        .iter()
        .rev()
        .find_map(|r| r.census.holders.iter().find(|h| h.holder == name))?;
    let growth: Vec<TrialGrowth> = series
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 == 1.0)
        .map(|w| TrialGrowth {
            params: w[1].2.params,
            growth: w[1].1 - w[0].1,
        })
        .collect();
    let parameter = parameter_effects(&growth)
        .into_iter()
        .find(|p| p.significant && p.effect_bytes > 0.0)
        .map(|p| {
            format!(
                "{} ({:+.1} MiB/trial)",
                super::sites::parameter_words(&p),
                p.effect_bytes / crate::units::MIB
            )
        });
    Some(HolderFinding {
        holder: name.to_string(),
        container: last.container.clone(),
        place: last.place.clone(),
        device: last.device.clone(),
        pid,
        per_trial: Rate::from(&trend),
        confidence: trend.growth_confidence,
        bytes: (last.bytes + last.graph_bytes) as f64,
        view_bytes: last.view_bytes as f64,
        graph_bytes: last.graph_bytes as f64,
        storages: last.storages,
        largest_bytes: last.largest_bytes,
        reports: series.len(),
        share: None,
        parameter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::TensorHolder;

    fn census(trial: usize, holders: &[(&str, u64, u64)]) -> PythonTensors {
        PythonTensors {
            pid: 7,
            trial: trial.to_string(),
            tensors: 0,
            storages: 0,
            bytes: 0,
            cost_ms: 1.0,
            walked: 0,
            holders: holders
                .iter()
                .map(|&(name, bytes, graph)| TensorHolder {
                    holder: name.into(),
                    container: "list".into(),
                    place: "module-level".into(),
                    device: "cpu".into(),
                    bytes,
                    storages: 1,
                    tensors: 1,
                    largest_bytes: bytes,
                    view_bytes: 0,
                    graph_bytes: graph,
                })
                .collect(),
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_holder_that_keeps_8_mib_when_a_value_is_set_is_named_with_it() {
        // keep=True on odd trials: the list grows 8 MiB on those only; a cache that is
        // replaced every trial never grows.
        let params: Vec<crate::recording::ParamMap> = (0..24)
            .map(|i| {
                let mut p = crate::few::Few::new();
                p.insert("keep".into(), serde_json::json!(i % 2 == 1));
                p
            })
            .collect();
        let mut held = 0;
        let reports: Vec<PythonTensors> = (0..24)
            .map(|i| {
                if i % 2 == 1 {
                    held += 8 * MIB;
                }
                census(i, &[("m.LOG", held, 0), ("m.LAST", 4 * MIB, 0)])
            })
            .collect();
        let placed: Vec<Report> = reports
            .iter()
            .zip(&params)
            .enumerate()
            .map(|(i, (census, params))| Report {
                census,
                ordinal: i,
                params,
            })
            .collect();
        let found = holders(&placed);
        assert_eq!(found.len(), 1, "{found:#?}");
        let h = &found[0];
        assert_eq!(h.holder, "m.LOG");
        assert!((h.per_trial.bytes / MIB as f64 - 4.0).abs() < 0.1, "{h:?}");
        let parameter = h.parameter.as_deref().unwrap_or("");
        assert!(parameter.starts_with("keep=true (+8.0 MiB/trial)"), "{h:?}");
        assert_eq!(h.mechanism(), None);
    }

    #[test]
    fn losses_kept_with_their_graphs_name_the_graph() {
        let params = crate::few::Few::new();
        let reports: Vec<PythonTensors> = (0..8)
            .map(|i| census(i, &[("m.LOSSES", 4 * i as u64, 4 * MIB * i as u64)]))
            .collect();
        let placed: Vec<Report> = reports
            .iter()
            .enumerate()
            .map(|(i, census)| Report {
                census,
                ordinal: i,
                params: &params,
            })
            .collect();
        let found = holders(&placed);
        assert_eq!(found[0].mechanism(), Some(Mechanism::Graph), "{found:#?}");
        assert!((found[0].per_trial.bytes / MIB as f64 - 4.0).abs() < 0.01);
    }
}
