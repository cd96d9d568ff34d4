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
        "publish", "fleet",
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

#[test]
fn completions_offer_the_visible_commands_and_load_in_bash() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, stderr) = run(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {stderr}");
        for command in ["run", "attach", "watch", "man-page"] {
            assert!(script.contains(command), "{shell} offers {command}");
        }
        assert!(
            !script.contains("fixture-worker") && !script.contains("guardian"),
            "{shell} offers a hidden command"
        );
    }
    let (_, script, _) = run(&["completions", "bash"]);
    let loaded = std::process::Command::new("bash")
        .args([
            "-c",
            "eval \"$1\" && complete -p memwarden",
            "bash",
            &script,
        ])
        .output()
        .expect("bash runs");
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("-F _memwarden memwarden"),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let (code, _, stderr) = run(&["completions", "tcsh"]);
    assert_eq!(code, Some(2), "an unknown shell is bad usage: {stderr}");
}

#[test]
fn the_man_page_is_roff_and_one_page_per_visible_command() {
    let (code, page, _) = run(&["man-page"]);
    assert_eq!(code, Some(0));
    assert!(page.contains(".TH memwarden 1"), "{page}");
    assert!(page.contains("watch"), "the commands are listed: {page}");
    let temp = crate::util::tempdir();
    let dir = temp.path().join("man1");
    let (code, _, stderr) = run(&["man-page", "--out", &dir.display().to_string()]);
    assert_eq!(code, Some(0), "{stderr}");
    let run_page = std::fs::read_to_string(dir.join("memwarden-run.1")).expect("run's page");
    assert!(run_page.contains("\\-\\-workers"), "{run_page}");
    assert!(dir.join("memwarden.1").exists() && dir.join("memwarden-watch.1").exists());
    assert!(!dir.join("memwarden-guardian.1").exists());
    assert!(!dir.join("memwarden-fixture-worker.1").exists());
}

/// `cargo install memwarden` builds from the package, which holds only what Cargo.toml's
/// `include` lists: every file the sources embed must be in it.
#[test]
fn the_crate_package_holds_every_file_the_sources_embed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .expect("the repository");
    let root = root.as_path();
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("Cargo.toml parses");
    let include: Vec<String> = manifest["package"]["include"]
        .as_array()
        .expect("an include list")
        .iter()
        .filter_map(|v| v.as_str().map(|s| s.trim_start_matches('/').to_string()))
        .collect();
    let covered = |path: &str| {
        include.iter().any(|pattern| match pattern.split_once('*') {
            None => pattern == path,
            // `dir/*` is one level; `dir/**/*` any depth.
            Some((prefix, "*/*")) => path.starts_with(prefix),
            Some((prefix, _)) => path.starts_with(prefix) && !path[prefix.len()..].contains('/'),
        })
    };
    let embed = regex::Regex::new(r#"include_(?:str|bytes)!\(\s*"([^"]+)""#).expect("regex");
    let mut embedded = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src reads").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for found in embed.captures_iter(&text) {
                let target = path.parent().expect("a directory").join(&found[1]);
                let target = target.canonicalize().expect("an embedded file exists");
                let relative = target.strip_prefix(root).expect("inside the repository");
                embedded.push(relative.display().to_string());
            }
        }
    }
    assert!(embedded.len() >= 5, "{embedded:?}");
    let missing: Vec<&String> = embedded.iter().filter(|p| !covered(p)).collect();
    assert!(missing.is_empty(), "embedded but not packaged: {missing:?}");
    assert!(covered("src/live/view.rs") && !covered("fixtures/runs/leak/manifest.json"));
}
