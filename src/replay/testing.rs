//! Test support: the leak fixture's findings with trials of one's own (one worker, one
//! retained anonymous level per trial).

use crate::analysis::{Findings, Kind, LevelTriple, TrialRecord};
use crate::recording::Params;

pub fn findings_with(trials: impl IntoIterator<Item = (Params, f64)>) -> Findings {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/runs/leak");
    let recording = crate::recording::Recording::open(&dir).expect("fixture opens");
    let mut findings = crate::analysis::analyze(&recording, &Default::default()).expect("analyzes");
    findings.trials = trials
        .into_iter()
        .enumerate()
        .map(|(i, (params, level))| TrialRecord {
            worker: 0,
            trial: i.to_string().into(),
            ordinal: i,
            start_ns: None,
            end_ns: None,
            state: "complete".into(),
            params,
            tree: [(
                Kind::Anon,
                LevelTriple {
                    baseline: None,
                    peak: None,
                    retained: Some(level),
                },
            )]
            .into_iter()
            .collect(),
            processes: Default::default(),
        })
        .collect();
    findings
}
