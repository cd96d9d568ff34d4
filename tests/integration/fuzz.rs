//! Property-based fuzzing of every reader of input memwarden does not control: the metrics
//! endpoint's request reader, the tracer's record reader, the marker and Optuna line parser,
//! the policy parser and the manifest reader. Each target takes generated input (random bytes,
//! and strings shaped like the real thing, so the parsers' deeper paths are reached) and must
//! return, never panic, with any result it gives self-consistent.
//!
//! The suite runs `MEMWARDEN_FUZZ_CASES` cases per target (2,000 by default);
//! `benches/fuzz.sh` runs a million each in release mode and prints the counts.

use memwarden::metrics::http::{head_end, parse_head};
use memwarden::policy::Policy;
use memwarden::pytrace::TraceRecord;
use memwarden::recording::Manifest;
use memwarden::supervisor::trials::TrialParser;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

fn config() -> Config {
    let cases = std::env::var("MEMWARDEN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    Config {
        cases,
        // Shrunk failures are printed; nothing is written into the source tree.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

/// Bytes: random, or a request shaped like HTTP with hostile headers.
fn request() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        "(GET|HEAD|POST|get|) (/metrics|/|\\*|http://x/|/a?b#c|)( HTTP/1\\.[01]|)\r?\n((Content-Length|Host|X-[a-z]{1,8}): ?[0-9a-z -]{0,40}\r?\n){0,8}\r?\n.{0,40}"
            .prop_map(String::into_bytes),
    ]
}

/// A tracer line: random, or JSON shaped like its records with odd values.
fn trace_line() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,300}",
        "\\{\"kind\":\"(hello|epoch|sites|error|torch|note|x)\",\"pid\":-?[0-9]{1,12},\"worker\":(null|-?[0-9]{1,12}|\"a\")(,\"[a-z_]{1,12}\":(null|true|-?[0-9.e+]{1,20}|\"[^\"]{0,20}\"|\\[\\]|\\{\\}))*\\}",
    ]
}

/// A worker output line: random, or markers, Optuna lines and the tracer's memory line.
fn output_line() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,200}",
        "MEMWARDEN (trial_start|trial_end|trial_memory|gate|x) ?[^ ]{0,12}( [a-z_]{0,8}=[^ ]{0,16}){0,6}",
        "\\[[IWE] 2026-[0-9]{2}-[0-9]{2} [0-9:,]{12}\\] Trial -?[0-9]{1,20} (finished|pruned|failed)( with value: [^ ]{0,12})?( and parameters: \\{('[a-z]{1,6}': [^,}]{0,12}, ?){0,4}\\})?\\.?",
    ]
}

/// A policy file: random text, or TOML shaped like a policy with odd values.
fn policy_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,300}",
        "(\\[(brake|restart|escalation|start|containment|redact|x)\\]\n([a-z_]{1,20} = (\"[^\"\n]{0,16}\"|-?[0-9.e+]{1,12}|nan|inf|-inf|true|\\[\"[^\"\n]{0,12}\"\\])\n){0,5}){0,4}",
    ]
}

/// A manifest: random text, or JSON shaped like one with extreme numbers.
fn manifest_text() -> impl Strategy<Value = String> {
    let number = "(0|1|4294967295|18446744073709551615|-1|1e400|null|\"x\")";
    prop_oneof![
        ".{0,300}".boxed(),
        (number, number, number, number).prop_map(|(w, i, s, e)| format!(
            r#"{{"format_version":1,"memwarden_version":"0","mode":"run","command":[],"workers":{w},"host":"h","boot_id":"b","kernel":"k","start_wall_ns":{s},"start_rfc3339":"","interval_ns":{i},"page_size":4096,"status":"finished","end_wall_ns":{e},"end_reason":null}}"#
        )).boxed(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_request_reader_returns_on_any_bytes(bytes in request()) {
        if let Some(end) = head_end(&bytes) {
            prop_assert!(end <= bytes.len());
            if let Ok(request) = parse_head(&bytes[..end]) {
                prop_assert!(request.path.starts_with('/'));
            }
        }
        let _ = parse_head(&bytes);
    }

    #[test]
    fn the_tracer_record_reader_returns_on_any_line(line in trace_line()) {
        if let Ok(record) = serde_json::from_str::<TraceRecord>(&line) {
            let _ = record.pid();
            let _ = record.into_event();
        }
    }

    #[test]
    fn the_line_parser_returns_on_any_output(lines in proptest::collection::vec(output_line(), 1..8)) {
        let mut parser = TrialParser::new(None, 0);
        for (i, line) in lines.iter().enumerate() {
            for boundary in parser.on_line(line, i as u64) {
                if let memwarden::supervisor::TrialBoundary::Start { params, .. } = boundary {
                    prop_assert!(params.len() <= memwarden::supervisor::trials::MAX_PARAMS + 1);
                }
            }
        }
    }

    #[test]
    fn the_policy_parser_returns_on_any_text(text in policy_text()) {
        if let Ok(policy) = Policy::parse(&text, "fuzz.toml") {
            let pressure = policy.brake.max_psi_full;
            prop_assert!((0.0..=100.0).contains(&pressure), "{pressure}");
        }
    }

    #[test]
    fn the_manifest_reader_returns_on_any_text(text in manifest_text()) {
        if let Ok(manifest) = serde_json::from_str::<Manifest>(&text) {
            if manifest.check_values(std::path::Path::new("manifest.json")).is_ok() {
                prop_assert!(manifest.workers <= 1024);
            }
        }
    }
}
