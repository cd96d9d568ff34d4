//! A fleet of real fixture recordings from two "hosts" (their manifests' host changed), published
//! into the layout: `fleet` names the leaking host, run and worker; DuckDB and polars (from PyPI,
//! in the test virtual environment) run the README's queries on it and get the right rows;
//! `check`, `diff` and `analyze` take a published run; and every bad input is one line.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The three recordings, published; built once and copied by the tests that damage it.
struct Fleet {
    _temp: tempfile::TempDir,
    runs: PathBuf,
    dest: PathBuf,
}

const TRIALS: &str = "--trials 16 --trial-ms 60 --gap-ms 40 --param bs=16,64";

fn fleet() -> &'static Fleet {
    static FLEET: OnceLock<Fleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        let temp = tempdir();
        let runs = temp.path().join("runs");
        let dest = temp.path().join("fleet");
        // host-a: two clean workers; host-b: worker 1 of two leaks 8 MiB a trial, and a
        // second run whose one worker leaks only when bs=64.
        let recordings = [
            ("host-a", "a-clean", "--workers 2", TRIALS.to_string()),
            (
                "host-b",
                "b-leak",
                "--workers 2",
                format!("{TRIALS} --leak-mib 8 --only-worker 1"),
            ),
            (
                "host-b",
                "b-param",
                "--workers 1",
                format!("{TRIALS} --leak-mib 8 --leak-when bs=64"),
            ),
        ];
        let threads: Vec<_> = recordings
            .into_iter()
            .map(|(host, name, run_args, fixture)| {
                let dir = runs.join(name);
                std::thread::spawn(move || {
                    run_fixture(&dir, &format!("-q --no-report {run_args}"), &fixture);
                    set_host(&dir, host);
                    dir
                })
            })
            .collect();
        for thread in threads {
            let dir = thread.join().expect("recorded");
            let out = publish(&dir, &dest);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Fleet {
            _temp: temp,
            runs,
            dest,
        }
    })
}

/// As if recorded on `host`.
pub fn set_host(dir: &Path, host: &str) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("JSON");
    manifest["host"] = host.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).expect("JSON")).expect("write");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// `memwarden publish RUN_DIR DEST`.
pub fn publish(run_dir: impl AsRef<Path>, dest: impl AsRef<Path>) -> std::process::Output {
    memwarden()
        .arg("publish")
        .arg(run_dir.as_ref())
        .arg(dest.as_ref())
        .output()
        .expect("publish runs")
}

/// `analyze --json` of a run directory or a published run, without the path it was read from.
fn analyze_json(dir: &Path) -> serde_json::Value {
    let out = memwarden()
        .args(["analyze", "--json"])
        .arg(dir)
        .output()
        .expect("analyze runs");
    let mut findings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    findings["run"]["dir"] = serde_json::Value::Null;
    findings
}

fn fleet_json(dest: &Path) -> serde_json::Value {
    let out = memwarden()
        .args(["fleet", "--json"])
        .arg(dest)
        .output()
        .expect("fleet runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn fleet_names_the_leaking_hosts_runs_and_workers_and_the_parameter_value() {
    let fleet = fleet();
    let answers = fleet_json(&fleet.dest);
    assert_eq!(answers["runs"], 3, "{answers:#}");
    assert_eq!(answers["hosts"], 2);
    let leaks = answers["leaks"].as_array().expect("leaks");
    let named: Vec<(String, String, u64)> = leaks
        .iter()
        .map(|l| {
            (
                l["host"].as_str().expect("host").to_string(),
                l["run"].as_str().expect("run").to_string(),
                l["worker"].as_u64().expect("worker"),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("host-b".to_string(), "b-leak".to_string(), 1),
            ("host-b".to_string(), "b-param".to_string(), 0)
        ],
        "{answers:#}"
    );
    let rate = leaks[0]["per_trial_bytes"].as_f64().expect("rate") / MIB;
    assert!((7.0..9.0).contains(&rate), "{rate} MiB/trial");
    assert_eq!(leaks[0]["kind"], "anon");
    assert!(leaks[0]["path"]
        .as_str()
        .expect("path")
        .ends_with("runs/host=host-b/run=b-leak"));
    let hosts = answers["hosts_summary"].as_array().expect("hosts");
    assert_eq!(hosts[0]["host"], "host-a");
    assert_eq!(hosts[0]["leaking_runs"], 0);
    assert_eq!(hosts[1]["leaking_runs"], 2);
    let parameter = &answers["parameters"][0];
    assert_eq!(parameter["name"], "bs", "{answers:#}");
    assert_eq!(parameter["value"], "64");
    // The text and the report say the same.
    let report = tempdir();
    let out = memwarden()
        .arg("fleet")
        .arg(&fleet.dest)
        .arg("--report")
        .arg(report.path())
        .output()
        .expect("fleet runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("host-b b-leak worker 1: 8.0 MiB/trial in anon")
            || text.contains("host-b b-leak worker 1: 7."),
        "{text}"
    );
    let markdown = std::fs::read_to_string(report.path().join("fleet.md")).expect("fleet.md");
    assert!(markdown.contains("| host-b | `b-leak` |"), "{markdown}");
    assert!(markdown.contains("| bs | 64 |"), "{markdown}");
    let png = std::fs::read(report.path().join("growth-by-host.png")).expect("plot");
    assert!(png.starts_with(b"\x89PNG"));
    // --since leaves out runs started before it.
    let out = memwarden()
        .args(["fleet", "--json", "--since", "1ms"])
        .arg(&fleet.dest)
        .output()
        .expect("fleet runs");
    let recent: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(recent["runs"], 0, "{recent}");
}

#[test]
fn analyze_check_and_diff_take_a_published_run_with_the_same_result() {
    let fleet = fleet();
    let published = fleet.dest.join("runs/host=host-b/run=b-leak");
    let original = fleet.runs.join("b-leak");
    let check = |dir: &Path| {
        memwarden()
            .arg("check")
            .arg(dir)
            .args(["--max-growth", "2MiB/trial"])
            .output()
            .expect("check runs")
    };
    let (a, b) = (check(&published), check(&original));
    assert_eq!(a.status.code(), Some(1));
    assert_eq!(a.status.code(), b.status.code());
    assert_eq!(a.stderr, b.stderr);
    assert_eq!(analyze_json(&published), analyze_json(&original));
    let out = memwarden()
        .arg("diff")
        .arg(fleet.dest.join("runs/host=host-a/run=a-clean"))
        .arg(&published)
        .output()
        .expect("diff runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("MORE growth"));
}

/// The README's code blocks in `language`, from its fleet section.
fn readme_blocks(language: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let section = readme
        .split("### Many runs, many hosts")
        .nth(1)
        .expect("the fleet section")
        .split("\n## ")
        .next()
        .expect("section");
    section
        .split(&format!("```{language}\n"))
        .skip(1)
        .map(|block| block.split("```").next().expect("block").to_string())
        .collect()
}

fn venv_run(cwd: &Path, script: &str) -> String {
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn duckdb_runs_the_readmes_queries_on_the_layout_and_gets_the_right_rows() {
    let fleet = fleet();
    let queries = readme_blocks("sql");
    assert_eq!(queries.len(), 4, "{queries:?}");
    let script = format!(
        "import duckdb, json\nfor q in json.loads({:?}):\n    print(json.dumps([list(map(str, r)) for r in duckdb.sql(q).fetchall()]))\n",
        serde_json::to_string(&queries).expect("JSON")
    );
    let out = venv_run(fleet.dest.parent().expect("parent"), &script);
    let answers: Vec<Vec<Vec<String>>> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("rows"))
        .collect();
    let [leaks, troubled, parameters, peaks] = answers.as_slice() else {
        panic!("{out}");
    };
    let who: Vec<(&str, &str, &str)> = leaks
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        who,
        [("host-b", "b-leak", "1"), ("host-b", "b-param", "0")],
        "{out}"
    );
    assert_eq!(leaks[0][4], "anon");
    let rate: f64 = leaks[0][5].parse().expect("MiB/trial");
    assert!((7.0..9.0).contains(&rate), "{rate}");
    assert!(troubled.is_empty(), "{troubled:?}");
    assert_eq!(parameters[0][..4], ["bs", "64", "1", "1"], "{parameters:?}");
    assert_eq!(
        peaks.len(),
        5,
        "one row per worker of the three runs: {peaks:?}"
    );
    assert_eq!(
        (
            peaks[0][0].as_str(),
            peaks[0][1].as_str(),
            peaks[0][2].as_str()
        ),
        ("host-b", "b-leak", "1")
    );
    let peak: f64 = peaks[0][3].parse().expect("MiB");
    assert!(peak > 100.0, "16 trials of 8 MiB: {peak}");
}

#[test]
fn polars_in_python_reads_the_layout_as_the_readme_shows() {
    let fleet = fleet();
    let blocks = readme_blocks("python");
    assert_eq!(blocks.len(), 1);
    let script = format!(
        "{}\nprint(leaks.select('host', 'run', 'worker').rows())\n",
        blocks[0]
    );
    let out = venv_run(fleet.dest.parent().expect("parent"), &script);
    assert!(
        out.trim_end()
            .ends_with("[('host-b', 'b-leak', 1), ('host-b', 'b-param', 0)]"),
        "{out}"
    );
}

fn one_line_exit_2(out: &std::process::Output, words: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(words), "{words:?} in {stderr}");
}

#[test]
pub fn publishing_again_is_idempotent_and_a_different_run_of_the_same_name_is_refused() {
    let fleet = fleet();
    let temp = tempdir();
    let dest = temp.path().join("fleet");
    copy_tree(&fleet.dest, &dest);
    let file = dest.join("samples/host=host-b/run=b-leak/000001.parquet");
    let before = std::fs::metadata(&file)
        .expect("file")
        .modified()
        .expect("mtime");
    let out = publish(fleet.runs.join("b-leak"), &dest);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already published"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dest.join("runs/host=host-b/run=b-leak")
            .display()
            .to_string()
    );
    let after = std::fs::metadata(&file)
        .expect("file")
        .modified()
        .expect("mtime");
    assert_eq!(before, after, "nothing was rewritten");
    // Another run that happens to have the same name on the same host.
    let other = temp.path().join("b-leak");
    run_fixture(
        &other,
        "-q --no-report",
        "--trials 2 --trial-ms 20 --gap-ms 10",
    );
    set_host(&other, "host-b");
    let out = publish(&other, &dest);
    one_line_exit_2(&out, "already holds another run b-leak from host host-b");
    assert_eq!(fleet_json(&dest)["runs"], 3, "nothing lost");
    let staged = std::fs::read_dir(dest.join(".staging")).map_or(0, |d| d.count());
    assert_eq!(staged, 0, "nothing is left staged");
}

#[test]
fn a_run_still_being_recorded_is_not_published() {
    let temp = tempdir();
    let dir = temp.path().join("live");
    let mut child = fixture_run(&dir, "-q --no-report", "--trials 100 --trial-ms 100")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("memwarden starts");
    wait_until("the recording starts", || {
        dir.join("manifest.json").exists()
    });
    let dest = temp.path().join("fleet");
    let out = publish(&dir, &dest);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    one_line_exit_2(&out, "still being recorded");
    assert!(!dest.join("runs").exists());
}

#[test]
fn a_torn_or_foreign_file_in_the_layout_is_named_and_other_files_are_left_alone() {
    let fleet = fleet();
    let temp = tempdir();
    let dest = temp.path().join("fleet");
    copy_tree(&fleet.dest, &dest);
    // Other tools' files beside the tables are not the tables'.
    std::fs::write(dest.join("findings/_SUCCESS"), "").expect("write");
    std::fs::write(
        dest.join("findings/host=host-a/run=a-clean/README.txt"),
        "x",
    )
    .expect("write");
    assert_eq!(fleet_json(&dest)["runs"], 3);
    // A Parquet file of another table dropped into findings.
    let foreign = dest.join("findings/host=host-a/run=a-clean/000002.parquet");
    std::fs::copy(
        dest.join("system/host=host-a/run=a-clean/000001.parquet"),
        &foreign,
    )
    .expect("copy");
    let out = memwarden()
        .arg("fleet")
        .arg(&dest)
        .output()
        .expect("fleet runs");
    one_line_exit_2(&out, "000002.parquet: not a table memwarden published");
    std::fs::remove_file(&foreign).expect("remove");
    // A file torn by a copy that was cut off.
    let torn = dest.join("findings/host=host-b/run=b-leak/000001.parquet");
    let bytes = std::fs::read(&torn).expect("read");
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).expect("tear");
    let out = memwarden()
        .arg("fleet")
        .arg(&dest)
        .output()
        .expect("fleet runs");
    one_line_exit_2(
        &out,
        "b-leak/000001.parquet: not a table memwarden published (torn",
    );
}

#[test]
fn no_destination_no_runs_and_no_recording_are_one_line_each() {
    let temp = tempdir();
    let out = memwarden()
        .arg("fleet")
        .arg(temp.path().join("absent"))
        .output()
        .expect("fleet runs");
    one_line_exit_2(&out, "no such directory");
    let out = memwarden()
        .arg("fleet")
        .arg(temp.path())
        .output()
        .expect("fleet runs");
    one_line_exit_2(&out, "no published runs here");
    let out = publish(temp.path(), temp.path().join("fleet"));
    one_line_exit_2(&out, "not a memwarden run directory");
}

#[test]
fn a_recording_that_ended_abruptly_is_published_with_its_damage_counted() {
    let temp = tempdir();
    let dest = temp.path().join("fleet");
    let crashed = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/runs/crashed");
    let out = publish(&crashed, &dest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let published = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let (a, b) = (analyze_json(&published), analyze_json(&crashed));
    assert_eq!(a["run"]["status"], "ended abruptly");
    assert_eq!(
        a["run"]["damaged_records"], 2,
        "the damage is not forgotten"
    );
    assert_eq!(a, b);
}

#[test]
fn a_run_without_findings_still_counts_on_its_host() {
    let fleet = fleet();
    let temp = tempdir();
    let dest = temp.path().join("fleet");
    copy_tree(&fleet.dest, &dest);
    // As a run with no samples is published: its runs row, no findings.
    std::fs::remove_dir_all(dest.join("findings/host=host-b/run=b-param")).expect("remove");
    std::fs::remove_dir_all(dest.join("parameters/host=host-b/run=b-param")).expect("remove");
    let answers = fleet_json(&dest);
    let host_b = &answers["hosts_summary"][1];
    assert_eq!(host_b["host"], "host-b", "{answers:#}");
    assert_eq!(host_b["runs"], 2);
    assert_eq!(host_b["leaking_runs"], 1);
    assert_eq!(answers["leaks"].as_array().map(Vec::len), Some(1));
    // And with no findings table at all.
    std::fs::remove_dir_all(dest.join("findings")).expect("remove");
    let answers = fleet_json(&dest);
    assert_eq!(answers["runs"], 3);
    assert_eq!(answers["hosts_summary"][1]["runs"], 2, "{answers:#}");
    assert_eq!(answers["hosts_summary"][1]["leaking_runs"], 0);
}

/// The backticked column names of FORMAT.md's row for published `table`, leaving out what
/// its parentheses say of them (values, units).
fn documented_columns(table: &str) -> std::collections::BTreeSet<String> {
    let format = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/FORMAT.md"))
        .expect("FORMAT.md");
    let row = format
        .lines()
        .find(|l| l.starts_with(&format!("| `{table}` |")))
        .unwrap_or_else(|| panic!("FORMAT.md has a row for {table}"));
    let columns = row
        .trim_end_matches('|')
        .rsplit(" | ")
        .next()
        .expect("cell");
    let (mut depth, mut outside) = (0, String::new());
    for c in columns.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// FORMAT.md's rows for the tables `publish` draws from a run (`runs`, `findings`,
/// `parameters`) name the columns their files hold: a column added, renamed or dropped in
/// `fleet::tables` fails here until FORMAT.md says so too.
#[test]
fn format_md_lists_every_column_of_the_published_tables() {
    use polars_io::prelude::*;
    let fleet = fleet();
    for table in ["runs", "findings", "parameters"] {
        let file = fleet
            .dest
            .join(table)
            .join("host=host-b")
            .join("run=b-leak")
            .join("000001.parquet");
        let mut reader = ParquetReader::new(std::fs::File::open(&file).expect("published"));
        let written: std::collections::BTreeSet<String> = reader
            .schema()
            .expect("schema")
            .iter_names()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(written, documented_columns(table), "{table}");
    }
}
