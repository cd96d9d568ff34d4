use super::*;
use serde_json::json;

fn ends(boundaries: &[TrialBoundary]) -> Vec<(String, String)> {
    boundaries
        .iter()
        .filter_map(|b| match b {
            TrialBoundary::End { trial, state, .. } => Some((trial.clone(), state.clone())),
            _ => None,
        })
        .collect()
}

fn end_memory(boundaries: &[TrialBoundary]) -> Option<EndMemory> {
    boundaries.iter().find_map(|b| match b {
        TrialBoundary::End { memory, .. } => *memory,
        _ => None,
    })
}

#[test]
fn memory_the_worker_read_at_its_end_goes_with_that_end() {
    let mut p = TrialParser::new(None, 0);
    let marked = p.on_line(
        "MEMWARDEN trial_end 3 status=complete memwarden_anon=4096 memwarden_file=8192 \
             memwarden_shmem=0 lr=0.1",
        10,
    );
    let memory = end_memory(&marked).expect("read by the worker");
    assert_eq!(
        (memory.anon_bytes, memory.file_bytes, memory.read_by),
        (4096, 8192, EndReader::Worker)
    );
    // Half the fields: not a reading.
    let partial = p.on_line("MEMWARDEN trial_end 4 memwarden_anon=4096", 20);
    assert_eq!(end_memory(&partial), None);
    // The tracer's line comes before Optuna's; a line in between does not lose it, and it
    // goes only with its own trial's end.
    let mut p = TrialParser::new(None, 0);
    let line = "MEMWARDEN trial_memory 7 memwarden_anon=1 memwarden_file=2 memwarden_shmem=3";
    assert!(p.on_line(line, 5).is_empty());
    assert!(p.on_line("[I] some other log line", 6).is_empty());
    let other = p.on_line(
        "[I 2026] Trial 6 finished with value: 1.0 and parameters: {}.",
        7,
    );
    assert_eq!(end_memory(&other), None, "not trial 6's");
    assert!(p.on_line(line, 8).is_empty());
    let optuna = p.on_line(
        "[I 2026] Trial 7 finished with value: 1.0 and parameters: {}.",
        9,
    );
    assert_eq!(end_memory(&optuna).map(|m| m.shmem_bytes), Some(3));
    let again = p.on_line(
        "[I 2026] Trial 8 finished with value: 1.0 and parameters: {}.",
        10,
    );
    assert_eq!(end_memory(&again), None, "used once");
}

#[test]
fn marker_protocol() {
    let mut p = TrialParser::new(None, 0);
    let start = p.on_line("MEMWARDEN trial_start 7 lr=0.01 opt=adam batch_size=64", 10);
    assert_eq!(
        start,
        vec![TrialBoundary::Start {
            t_ns: 10,
            trial: "7".into(),
            params: [
                ("lr", json!(0.01)),
                ("opt", json!("adam")),
                ("batch_size", json!(64))
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            source: TrialSource::Marker,
        }]
    );
    let end = p.on_line("[worker] MEMWARDEN trial_end 7 status=pruned value=0.5", 20);
    assert_eq!(
        end,
        vec![TrialBoundary::End {
            t_ns: 20,
            trial: "7".into(),
            state: "pruned".into(),
            value: Some(json!(0.5)),
            memory: None,
        }]
    );
    assert!(p.on_line("MEMWARDEN trial_bogus", 30).is_empty());
    assert!(p.on_line("MEMWARDEN trial_start", 30).is_empty());
}

#[test]
fn optuna_lines_are_sequential_trials_with_parameters() {
    let mut p = TrialParser::new(None, 5);
    let lines = [
            "[I 2024-05-01 10:00:01,123] Trial 0 finished with value: 0.25 and parameters: {'lr': 0.001, 'optimizer': 'adam', 'layers': 3, 'dropout': None}. Best is trial 0 with value: 0.25.",
            "[I 2024-05-01 10:00:02,000] Trial 1 pruned. ",
            "[W 2024-05-01 10:00:03,000] Trial 2 failed with parameters: {'lr': 0.1, 'name': \"it's, odd\"} because of the following error: ValueError('x').",
            "[I 2024-05-01 10:00:04,000] Trial 3 finished with values: [0.1, 2.0] and parameters: {'x': [1, 2]}. ",
            "[W 2024-05-01 10:00:05,000] Trial 4 failed with value None.",
        ];
    let out: Vec<_> = lines
        .iter()
        .enumerate()
        .flat_map(|(i, l)| p.on_line(l, 100 * (i as u64 + 1)))
        .collect();
    assert_eq!(
        ends(&out),
        [
            ("0", "complete"),
            ("1", "pruned"),
            ("2", "failed"),
            ("3", "complete"),
            ("4", "failed")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let TrialBoundary::Start {
        t_ns,
        params,
        source,
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!((*t_ns, *source), (5, TrialSource::Optuna));
    assert_eq!(params["lr"], json!(0.001));
    assert_eq!(params["optimizer"], json!("adam"));
    assert_eq!(params["layers"], json!(3));
    assert_eq!(params["dropout"], Value::Null);
    // The second trial starts where the first ended.
    let TrialBoundary::Start { t_ns, .. } = &out[2] else {
        panic!()
    };
    assert_eq!(*t_ns, 100);
    let TrialBoundary::Start { params, .. } = &out[4] else {
        panic!()
    };
    assert_eq!(params["name"], json!("it's, odd"));
    let TrialBoundary::End { value, .. } = &out[1] else {
        panic!()
    };
    assert_eq!(value, &Some(json!(0.25)));
    let TrialBoundary::Start { params, .. } = &out[6] else {
        panic!()
    };
    assert_eq!(params["x"], json!([1, 2]));
}

#[test]
fn optuna_lines_are_ignored_once_markers_are_used() {
    let mut p = TrialParser::new(None, 0);
    p.on_line("MEMWARDEN trial_start 0", 1);
    assert!(p
        .on_line(
            "Trial 0 finished with value: 1.0 and parameters: {'a': 1}. ",
            2
        )
        .is_empty());
}

#[test]
fn user_regex_with_phase_and_params() {
    let regex = Regex::new(r"epoch (?P<trial>\d+) (?P<phase>start|end) bs=(?P<bs>\d+)").ok();
    let mut p = TrialParser::new(regex, 0);
    let start = p.on_line("epoch 3 start bs=32", 1);
    let TrialBoundary::Start {
        trial,
        params,
        source,
        ..
    } = &start[0]
    else {
        panic!()
    };
    assert_eq!((trial.as_str(), *source), ("3", TrialSource::Regex));
    assert_eq!(params["bs"], json!(32));
    assert_eq!(
        ends(&p.on_line("epoch 3 end bs=32", 2)),
        vec![("3".into(), "complete".into())]
    );
    // Without a phase group, each match is a sequential trial.
    let mut q = TrialParser::new(Regex::new(r"done (?P<trial>\w+)").ok(), 0);
    assert_eq!(q.on_line("done a", 7).len(), 2);
    assert!(q.on_line("MEMWARDEN trial_start 1", 8).is_empty());
}

#[test]
fn odd_values_are_kept_as_text() {
    assert_eq!(parse_python_value("1e-05"), json!(1e-05));
    assert_eq!(parse_python_value("nan"), json!("nan"));
    assert_eq!(
        parse_python_value("<object at 0x1>"),
        json!("<object at 0x1>")
    );
    assert_eq!(parse_python_dict("{}"), BTreeMap::new());
    assert_eq!(parse_python_dict("{'a': (1, 'b')}")["a"], json!([1, "b"]));
}
