//! Every parser of text from outside (worker output, logs, the policy file, recordings, the
//! command line's quantities) against generated input: near-misses of each syntax and plain
//! garbage. Beyond "never panics", each property checks what must hold of the result: a
//! well-formed line gives exactly what it says, and a damaged recording never yields a record
//! that was not written.
//!
//! `MEMWARDEN_FUZZ_CASES` sets the cases per property (default 2,000, a few seconds in CI); the
//! long run quoted in the notes is `MEMWARDEN_FUZZ_CASES=10000000 cargo test --release --test
//! integration parsers::`. A failure found is kept below as a regression test.

use memwarden::recording::{decode_all, encode, Event, EventKind};
use memwarden::report::{oom_kills, worker_log};
use memwarden::supervisor::{TrialBoundary, TrialParser};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config() -> Config {
    let cases = std::env::var("MEMWARDEN_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    Config {
        cases,
        // Failures are kept as regression tests in this file, not in a side directory.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Text that is mostly printable with some of everything else.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,80}",
        any::<String>(),
        "[0-9a-z=:.,()\\[\\]{}'\" +-]{0,60}",
    ]
}

/// A Python literal as Optuna prints parameter values, nested a little.
fn python_literal() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:?}")),
        Just("None".to_string()),
        Just("True".to_string()),
        Just("inf".to_string()),
        "'[ -&(-~]{0,12}'",
        "\"[ -!#-~]{0,12}\"",
        "'[ -~]{0,6}\\\\'[ -~]{0,6}'",
        "[ -~]{0,10}",
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("({})", v.join(", "))),
            prop::collection::vec(("'[a-z_]{1,8}'", inner), 0..4).prop_map(|v| {
                let pairs: Vec<String> = v.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", pairs.join(", "))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn marker_lines_give_what_they_say(
        prefix in "[ -~]{0,20}",
        id in "[A-Za-z0-9_.-]{1,12}",
        pairs in prop::collection::btree_map("[a-z_]{1,8}", "[!-~]{1,10}", 0..4),
        garbage in text(),
    ) {
        let mut parser = TrialParser::new(None, 0);
        let words: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let line = format!("{prefix}MEMWARDEN trial_start {id} {}", words.join(" "));
        // A prefix that itself holds a marker is a different line.
        prop_assume!(!prefix.contains("MEMWARDEN trial_"));
        let boundaries = parser.on_line(&line, 5);
        match boundaries.as_slice() {
            [TrialBoundary::Start { trial, params, t_ns, .. }] => {
                prop_assert_eq!(trial, &id);
                prop_assert_eq!(*t_ns, 5);
                let keys: Vec<&String> = params.keys().collect();
                let wanted: Vec<&String> = pairs.keys().collect();
                prop_assert_eq!(keys, wanted);
            }
            other => prop_assert!(false, "{line:?} gave {other:?}"),
        }
        let _ = parser.on_line(&garbage, 6);
        let _ = parser.on_line(&format!("MEMWARDEN trial_{garbage}"), 7);
    }

    #[test]
    fn optuna_lines_with_any_parameters_end_their_trial(
        n in any::<u32>(),
        value in python_literal(),
        params in prop::collection::vec(("[a-z_]{1,8}", python_literal()), 0..5),
        tail in "[ -~]{0,30}",
    ) {
        let dict: Vec<String> = params.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
        let line = format!(
            "[I 2026-11-22 18:31:02,123] Trial {n} finished with value: {value} and parameters: {{{}}}. Best is trial 0 with value: 0.1.{tail}",
            dict.join(", ")
        );
        let mut parser = TrialParser::new(None, 0);
        let boundaries = parser.on_line(&line, 10);
        // Optuna's value is one word, or a list: what the pattern takes for it.
        if !value.is_empty() && !value.contains(char::is_whitespace) && !value.contains(']') {
            let end = boundaries.iter().find_map(|b| match b {
                TrialBoundary::End { trial, .. } => Some(trial.clone()),
                _ => None,
            });
            prop_assert_eq!(end, Some(n.to_string()), "{}", line);
        }
        let _ = memwarden::supervisor::trials::parse_python_dict(&format!("{{{}}}", dict.join(", ")));
        let _ = memwarden::supervisor::trials::parse_python_value(&value);
    }

    #[test]
    fn python_literal_parsing_never_panics(text in text()) {
        let _ = memwarden::supervisor::trials::parse_python_dict(&text);
        let _ = memwarden::supervisor::trials::parse_python_value(&text);
    }

    #[test]
    fn a_user_regex_match_never_panics(line in text(), number in any::<u64>()) {
        let regex = regex::Regex::new(
            r"step (?P<trial>\S+) (?P<phase>start|end)(?: state=(?P<state>\S+))?(?: value=(?P<value>\S+))?(?: lr=(?P<lr>\S+))?",
        )
        .expect("bug: the pattern is valid");
        let mut parser = TrialParser::new(Some(regex), 0);
        let _ = parser.on_line(&line, 1);
        let _ = parser.on_line(&format!("step {number} start lr={line}"), 2);
        let _ = parser.on_line(&format!("step {line} end state={number} value={line}"), 3);
    }

    #[test]
    fn kernel_log_kills_are_read_whole_or_not_at_all(
        pid in 1..i32::MAX,
        name in "[ -'*-~]{0,15}",
        anon_kib in 0u64..(1 << 40),
        year in any::<i32>(),
        seconds in 0.0f64..1e9,
        garbage in text(),
    ) {
        let line = format!(
            "[{seconds:.6}] Out of memory: Killed process {pid} ({name}) total-vm:123kB, anon-rss:{anon_kib}kB, file-rss:0kB"
        );
        let kills = oom_kills(&format!("{garbage}\n{line}\n{garbage}"), year);
        let kill = kills.iter().find(|k| k.pid == pid);
        prop_assert!(kill.is_some(), "{line:?} gave {kills:?}");
        let kill = kill.expect("bug: checked");
        prop_assert_eq!(&kill.name, &name);
        prop_assert_eq!(kill.anon_rss_bytes, Some(anon_kib * 1024));
        for format in [
            format!("[Sun Nov 22 18:31:02 {year}] {garbage}"),
            format!("Nov 22 18:31:02 host kernel: {garbage}"),
            format!("{year:04}-11-22T18:31:02+0000 host kernel: Killed process {pid} ({garbage})"),
            format!("{garbage} Memory cgroup out of memory: Killed process {garbage}"),
        ] {
            let _ = oom_kills(&format, year);
        }
    }

    #[test]
    fn worker_logs_never_panic(
        garbage in text(),
        start_wall_ns in any::<u64>(),
        date in "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2},[0-9]{3}",
        n in any::<u32>(),
    ) {
        let log = format!(
            "[I {date}] Trial {n} finished with value: 1.0 and parameters: {{'x': 1}}. Best is trial 0 with value: 1.0.\n{garbage}\n[W {date}] {garbage}"
        );
        let _ = worker_log::first_time_ns(&log);
        let _ = worker_log::trial_events(&log, 0, start_wall_ns);
        let _ = worker_log::trial_events(&garbage, 1, start_wall_ns);
    }

    #[test]
    fn a_policy_file_parses_or_is_one_line_naming_the_file(
        lines in prop::collection::vec(
            prop_oneof![
                Just("[brake]".to_string()),
                Just("[restart]".to_string()),
                Just("[escalation]".to_string()),
                Just("[start]".to_string()),
                Just("[containment]".to_string()),
                Just("[nope".to_string()),
                (
                    prop::sample::select(vec![
                        "budget", "min_headroom", "max_psi_full", "after_brakes", "after",
                        "max_worker_pss", "max_worker_gpu", "every_trials", "every", "deadline",
                        "emergency_floor", "backoff", "backoff_max", "max_crashes", "stagger",
                        "canary_trials", "canary_max_growth", "memory_max", "nice", "ionice",
                        "oom_score_adj", "grace", "wait", "min_device_free", "when_finished",
                    ]),
                    prop_oneof![
                        "\"[0-9]{1,4}(\\.[0-9])?(B|KiB|MiB|GiB|GB|%|ms|s|m|h| parsec)?\"",
                        "-?[0-9]{1,20}",
                        Just("true".to_string()),
                        "\"[ -!#-~]{0,12}\"",
                        "[ -~]{0,10}",
                    ],
                )
                    .prop_map(|(k, v)| format!("{k} = {v}")),
                text(),
            ],
            0..12,
        ),
    ) {
        let source = lines.join("\n");
        if let Err(error) = memwarden::policy::Policy::parse(&source, "p.toml") {
            let message = error.to_string();
            prop_assert!(message.starts_with("p.toml"), "{message}");
            prop_assert!(!message.contains('\n'), "more than one line: {message:?}");
        }
    }

    #[test]
    fn a_damaged_recording_never_yields_a_record_that_was_not_written(
        messages in prop::collection::vec(any::<String>(), 1..8),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let written: Vec<Event> = messages
            .iter()
            .enumerate()
            .map(|(i, message)| Event {
                t_ns: i as u64,
                wall_ns: 0,
                worker: Some(i as u32),
                kind: EventKind::Note { message: message.clone() },
            })
            .collect();
        let mut bytes = Vec::new();
        for event in &written {
            encode(event, &mut bytes).expect("bug: an event encodes");
        }
        let (clean, stats): (Vec<Event>, _) = decode_all(&bytes);
        prop_assert_eq!(&clean, &written);
        prop_assert_eq!(stats.garbled + stats.torn_tail_bytes, 0);
        for (at, value) in &damage {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let (read, _): (Vec<Event>, _) = decode_all(&bytes);
        for event in &read {
            prop_assert!(written.contains(event), "invented {event:?}");
        }
        // In order, each at most once.
        let positions: Vec<usize> = read
            .iter()
            .filter_map(|e| written.iter().position(|w| w == e))
            .collect();
        prop_assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
    }

    #[test]
    fn sizes_and_durations_parse_to_what_they_say(
        number in 0u32..100_000,
        unit in prop::sample::select(vec![
            ("B", 1.0), ("KiB", 1024.0), ("MiB", 1048576.0), ("GiB", 1073741824.0),
            ("KB", 1e3), ("MB", 1e6), ("GB", 1e9),
        ]),
        space in any::<bool>(),
        garbage in text(),
        bytes in any::<f64>(),
    ) {
        let text = format!("{number}{}{}", if space { " " } else { "" }, unit.0);
        let parsed = memwarden::units::parse_bytes(&text);
        prop_assert_eq!(parsed, Ok(f64::from(number) * unit.1), "{}", text);
        for input in [garbage.as_str(), &format!("{garbage}MiB"), &format!("{number}{garbage}")] {
            let _ = memwarden::units::parse_bytes(input);
            let _ = memwarden::units::parse_size(input);
            let _ = memwarden::units::parse_duration(input);
            let _ = memwarden::units::parse_positive_duration(input);
            let _ = input.parse::<memwarden::analysis::gates::GrowthBudget>();
        }
        let _ = memwarden::units::size(bytes);
        let _ = memwarden::units::duration(bytes);
    }
}
