//! The house's rules, held against the code: each module of `src/` imports only from floors
//! below its own (the floors are the table in `src/lib.rs`'s module map), and no source file
//! runs over 500 lines (functions are held at 120 by clippy's `too_many_lines`, clippy.toml).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 500;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `| N | `a`, `b` |` rows of lib.rs's floor table: module name to floor.
fn floors(lib: &str) -> BTreeMap<String, u32> {
    let mut floors = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let mut cells = row.split('|');
        let Some(Ok(floor)) = cells.next().map(|c| c.trim().parse::<u32>()) else {
            continue;
        };
        let names = cells.next().unwrap_or_default();
        for name in names.split('`').skip(1).step_by(2) {
            floors.insert(name.to_string(), floor);
        }
    }
    floors
}

/// The top-level modules a file's code names through `crate::` (comments left out).
fn imports(code: &str) -> Vec<String> {
    let code: String = code
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut names = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b}`: the first name of each item at the group's top level.
            let (mut depth, mut items, mut item) = (0, Vec::new(), String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ => item.push(c),
                }
            }
            items.push(item);
            names.extend(items.iter().map(|item| leading_name(item.trim())));
        } else {
            names.push(leading_name(rest));
        }
    }
    names
}

fn leading_name(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn every_module_imports_only_from_floors_below_its_own() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let floors = floors(&lib);
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim_start_matches("pub ").strip_prefix("mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(
        declared.len() > 20,
        "lib.rs declares its modules: {declared:?}"
    );
    for module in &declared {
        assert!(
            floors.contains_key(*module),
            "src/lib.rs's floor table has no row for `{module}`"
        );
    }
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(src()).expect("under src");
        let first = relative.components().next().expect("a path");
        let module = first.as_os_str().to_string_lossy();
        let module = module.trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let own = floors[module];
        let code = std::fs::read_to_string(file).expect("source");
        for name in imports(&code) {
            if name == module {
                continue;
            }
            match floors.get(&name) {
                Some(&floor) if floor < own => {}
                Some(&floor) => upward.push(format!(
                    "{} (floor {own}) imports `{name}` (floor {floor})",
                    relative.display()
                )),
                None => upward.push(format!(
                    "{} imports `crate::{name}`, which has no floor",
                    relative.display()
                )),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not run down the floors of src/lib.rs:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_import_reader_sees_plain_and_grouped_imports() {
    let code = "use crate::units::MIB; // crate::ignored\nuse crate::{probe::{X, Y}, recording};\nlet _ = crate::stats::median(&v);";
    assert_eq!(imports(code), ["units", "probe", "recording", "stats"]);
    let table = "//! | 2 | `recording`, `plot` |\n//! | 1 | `units` |\n";
    assert_eq!(
        floors(table),
        BTreeMap::from([
            ("plot".to_string(), 2),
            ("recording".to_string(), 2),
            ("units".to_string(), 1)
        ])
    );
}

#[test]
fn no_source_file_runs_over_500_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file)
                .expect("source")
                .lines()
                .count();
            (lines > MAX_FILE_LINES).then(|| {
                format!(
                    "{}: {lines} lines",
                    file.strip_prefix(src()).expect("under src").display()
                )
            })
        })
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines (split them by what they own):\n{}",
        long.join("\n")
    );
}
