//! The command line as users see it: help texts and one-line errors, pinned by snapshots so a
//! change to them is a decision, not an accident. Paths are replaced by placeholders.

use crate::util::*;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = memwarden().args(args).output().expect("memwarden runs");
    let clean =
        |bytes: &[u8]| String::from_utf8_lossy(bytes).replace(env!("CARGO_MANIFEST_DIR"), "[repo]");
    (out.status.code(), clean(&out.stdout), clean(&out.stderr))
}

#[test]
fn help_texts() {
    for command in [
        "run", "attach", "export", "analyze", "check", "diff", "report", "demo", "watch",
    ] {
        let (code, stdout, _) = run(&[command, "--help"]);
        assert_eq!(code, Some(0));
        insta::assert_snapshot!(format!("help_{command}"), stdout);
    }
    let (_, stdout, _) = run(&["--help"]);
    insta::assert_snapshot!("help", stdout);
}

#[test]
fn usage_errors() {
    let cases: [(&str, &[&str]); 8] = [
        ("no_command", &["run"]),
        ("bad_interval", &["run", "--interval", "0s", "--", "true"]),
        ("bad_unit", &["run", "--grace", "5 parsecs", "--", "true"]),
        (
            "bad_regex",
            &["run", "--trial-regex", "no groups", "--", "true"],
        ),
        ("unknown_table", &["export", "--table", "nope", "x"]),
        (
            "budget_without_per",
            &["check", "--max-growth", "1MiB", "x"],
        ),
        (
            "budget_bad_unit",
            &["check", "--max-growth", "1 parsec/trial", "x"],
        ),
        ("unknown_kind", &["diff", "--kind", "vram", "a", "b"]),
    ];
    for (name, args) in cases {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(2), "{name}");
        assert!(stdout.is_empty(), "{name}");
        insta::assert_snapshot!(format!("usage_{name}"), stderr);
    }
}

#[test]
fn input_errors() {
    let missing = format!("{}/fixtures/no-such-run", env!("CARGO_MANIFEST_DIR"));
    let (code, _, stderr) = run(&["export", &missing]);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!("export_missing_dir", stderr);
    let fixtures = format!("{}/fixtures", env!("CARGO_MANIFEST_DIR"));
    let (code, _, stderr) = run(&["export", &fixtures]);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!("export_not_a_run", stderr);
    let temp = tempdir();
    let dir = temp.path().join("run");
    let out = memwarden()
        .args(["attach", "--out"])
        .arg(&dir)
        .arg("999999999")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "memwarden: error: no process with pid 999999999\n");
    assert!(
        !dir.exists(),
        "nothing is created for a pid that does not exist"
    );
}
