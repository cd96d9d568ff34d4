//! Every fact the findings can state, rendered by both the terminal and the report. The
//! fixtures' runs reach only some of them (no step, no numeric trend, no held forecast), so
//! the rest are set on a real analysis here; the snapshots were taken with the renderers as
//! they were before `analysis::statements`, so the move had to keep every byte.

use memwarden::analysis::holders::HolderFinding;
use memwarden::analysis::{
    analyze_with_series, text, Analysis, Kind, Options, ParameterFinding, StepFinding, Verdict,
    WorkerFinding,
};
use memwarden::recording::Recording;
use memwarden::report::{render, ReportInput};
use std::path::Path;

fn every_fact() -> (Recording, Analysis) {
    let recording =
        Recording::open(Path::new("fixtures/runs/crashed")).expect("the crashed fixture opens");
    let mut analysis =
        analyze_with_series(&recording, &Options::default()).expect("the fixture analyses");
    let f = &mut analysis.findings;
    let anon = |w: &mut WorkerFinding| {
        let kind = w.kind;
        w.kinds
            .iter_mut()
            .find(|k| k.kind == kind)
            .expect("the worker's own kind has a finding")
            .clone()
    };
    // Worker 0: one step, two new regions of a mapping, a child process with no share.
    let mut k = anon(&mut f.workers[0]);
    k.step = Some(StepFinding {
        trial: "7".into(),
        size_bytes: 64.0 * 1048576.0,
    });
    k.peak_bytes = None;
    f.workers[0].kinds.retain(|o| o.kind != k.kind);
    f.workers[0].kinds.push(k);
    if let Some(p) = &mut f.workers[0].process {
        p.main = false;
        p.share = None;
    }
    // Holders of tensors: one kept through autograd graphs, one pinned by views, one plain
    // with the parameter that goes with it.
    let holder = |name: &str, graph: f64, view: f64, parameter: Option<&str>| HolderFinding {
        holder: name.into(),
        container: "list".into(),
        place: "module-level".into(),
        device: "cpu".into(),
        pid: 4242,
        per_trial: memwarden::analysis::Rate {
            bytes: 4.0 * 1048576.0,
            low_bytes: 3.5 * 1048576.0,
            high_bytes: 4.5 * 1048576.0,
        },
        confidence: 0.999,
        bytes: 40.0 * 1048576.0,
        view_bytes: view * 1048576.0,
        graph_bytes: graph * 1048576.0,
        storages: 10,
        largest_bytes: 4 << 20,
        reports: 10,
        share: Some(0.5),
        parameter: parameter.map(str::to_string),
    };
    f.workers[0].holders = vec![
        holder("train.LOSSES", 36.0, 0.0, None),
        holder("train.VIEWS", 0.0, 39.0, None),
        holder(
            "train.GRAD_LOG",
            0.0,
            0.0,
            Some("keep_grads=true (+8.0 MiB/trial)"),
        ),
    ];
    f.workers[0].mappings[0].regions_added = 2;
    f.workers[0].mappings[0].region_bytes = Some(9.0 * 1048576.0);
    // Worker 1: a plateau, rated per hour, with no start or end level.
    let mut k = anon(&mut f.workers[1]);
    k.plateau_from_trial = Some("4".into());
    k.per_trial = None;
    k.first_bytes = None;
    f.workers[1].verdict = Verdict::Plateau;
    f.workers[1].kinds.retain(|o| o.kind != k.kind);
    f.workers[1].kinds.push(k);
    // Worker 2: stable; worker 3: nothing known.
    let mut stable = f.workers[1].clone();
    stable.worker = 2;
    stable.verdict = Verdict::Stable;
    let mut unknown = stable.clone();
    // The stable worker's study grows on its own (told whatever the verdict), by more per
    // traced trial than the worker's whole growth.
    stable.tracing = Some(memwarden::analysis::sites::Tracing {
        processes: 1,
        reports: 11,
        explained: Some(0.0),
        mean_cost_ms: 16.6,
        max_cost_ms: 43.6,
        slowdown: Some(12.4),
        gap: Some(113),
        stretch: Some(2),
        peak_bytes: None,
        native: false,
        study: Some(memwarden::analysis::study::StudyGrowth {
            per_trial: memwarden::analysis::Rate {
                bytes: 28.3 * 1024.0,
                low_bytes: 3.7 * 1024.0,
                high_bytes: 74.9 * 1024.0,
            },
            confidence: 0.996,
            reports: 6,
            lines: vec![
                "/venv/lib/python3.11/site-packages/optuna/samplers/_tpe/_truncnorm.py:106".into(),
                "/work/study.py:21".into(),
            ],
            measured_bytes: Some(6.4 * 1024.0),
        }),
    });
    unknown.worker = 3;
    unknown.kind = Kind::Gpu;
    f.workers.push(stable);
    f.workers.push(unknown);
    let parameter = |name: &str, value: Option<&str>, rho: Option<f64>| ParameterFinding {
        name: name.into(),
        value: value.map(str::to_string),
        with_bytes: 3.0 * 1048576.0,
        without_bytes: 0.5 * 1048576.0,
        effect_bytes: 2.5 * 1048576.0,
        effect_low_bytes: value.map(|_| 2.0 * 1048576.0),
        effect_high_bytes: value.map(|_| 3.0 * 1048576.0),
        trials_with: 6,
        trials_without: 14,
        rho,
        p_value: 0.0004,
        significant: true,
    };
    f.parameters = vec![
        parameter("cache", Some("true"), None),
        parameter("batch_size", None, Some(0.81)),
        parameter("lr", None, None),
    ];
    (recording, analysis)
}

fn both(recording: &Recording, analysis: &Analysis) -> String {
    let input = ReportInput {
        manifest: &recording.manifest,
        events: &recording.events,
        analysis,
        kills: &[],
        current_boot_id: None,
        boot_wall_ns: None,
        data_files: Vec::new(),
        plots: Vec::new(),
        reporter_version: "test".into(),
        simulation: None,
    };
    format!(
        "{}\n----- report -----\n{}",
        text::findings(&analysis.findings),
        render(&input)
    )
}

#[test]
fn every_fact_renders_in_the_terminal_and_the_report() {
    let (recording, mut analysis) = every_fact();
    // The fixture recorded 3 s: its own forecast is in trials only.
    insta::assert_snapshot!("every_fact_runs_out_in_trials", both(&recording, &analysis));
    let fc = analysis.findings.forecast.as_mut().expect("a forecast");
    // As an hour of recording would have given it.
    fc.short_window_s = None;
    fc.exhausted_in_hours = Some(0.445);
    fc.max_workers = Some(0);
    fc.advice.insert(
        0,
        "for 12 h without restarts, at most 0 worker(s) fit in 20.8 GiB".into(),
    );
    insta::assert_snapshot!("every_fact_runs_out", both(&recording, &analysis));
    let fc = analysis.findings.forecast.as_mut().expect("a forecast");
    fc.exhausted_in_hours = None;
    fc.restart_every_trials = None;
    fc.max_workers = None;
    insta::assert_snapshot!("every_fact_holds", both(&recording, &analysis));
}
