//! Reading recordings back: bad input, damaged streams, compacted and raw segments.

use crate::util::*;

fn assert_one_line_error(args: &[&std::ffi::OsStr], expected: &str) {
    let out = memwarden().args(args).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("memwarden: error: ") && stderr.contains(expected),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn export_of_a_missing_or_unreadable_run_directory_is_one_clear_error() {
    let temp = tempdir();
    let missing = temp.path().join("nope");
    assert_one_line_error(
        &["export".as_ref(), missing.as_os_str()],
        "no such directory",
    );
    assert_one_line_error(
        &["export".as_ref(), temp.path().as_os_str()],
        "not a memwarden run directory",
    );
    let file = temp.path().join("file");
    std::fs::write(&file, "x").expect("write");
    assert_one_line_error(&["export".as_ref(), file.as_os_str()], "no such directory");
    let garbled = temp.path().join("garbled");
    std::fs::create_dir(&garbled).expect("mkdir");
    std::fs::write(garbled.join("manifest.json"), b"\x00{not json").expect("write");
    assert_one_line_error(
        &["export".as_ref(), garbled.as_os_str()],
        "unreadable manifest",
    );
    let newer = temp.path().join("newer");
    std::fs::create_dir(&newer).expect("mkdir");
    let good = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/runs/crashed/manifest.json"
    ))
    .expect("fixture");
    std::fs::write(
        newer.join("manifest.json"),
        good.replace("\"format_version\": 1", "\"format_version\": 99"),
    )
    .expect("write");
    assert_one_line_error(
        &["export".as_ref(), newer.as_os_str()],
        "is newer than this memwarden reads",
    );
}

/// An error's cause is printed once: thiserror messages that print their source do not also
/// carry it as the source, which `{:#}` would print again.
#[test]
fn an_error_names_its_cause_once() {
    let temp = tempdir();
    let garbled = temp.path().join("garbled");
    std::fs::create_dir(&garbled).expect("mkdir");
    std::fs::write(garbled.join("manifest.json"), b"{not json").expect("write");
    let out = memwarden()
        .arg("export")
        .arg(&garbled)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let cause = "key must be a string at line 1 column 2";
    assert_eq!(stderr.matches(cause).count(), 1, "{stderr}");
}

/// A failure of memwarden's own work (here a full disk under `export -o`) is exit 3, not the
/// 2 of bad input, and still one line.
#[test]
fn a_full_disk_is_exit_3_not_bad_input() {
    let out = memwarden()
        .args(["export", "--table", "samples", "-o", "/dev/full"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/runs/crashed"
        ))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("memwarden: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("cannot write /dev/full")
            && errors[0].matches("No space left").count() == 1,
        "{stderr}"
    );
}

/// `fixtures/runs/crashed` is a recording left by a SIGKILLed harness: raw segments, no
/// compaction, a torn final record.
#[test]
fn a_crashed_recording_reads_back_and_damage_is_reported() {
    let fixture = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/runs/crashed"
    ));
    let intact = export(fixture, "samples").rows.len();
    assert!(intact > 0);

    let temp = tempdir();
    let copy = temp.path().join("crashed");
    std::fs::create_dir(&copy).expect("mkdir");
    for entry in std::fs::read_dir(fixture).expect("fixture") {
        let entry = entry.expect("entry");
        if entry.path().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
        }
    }
    // Flip bytes in the middle of the samples and cut the events mid-record.
    let samples = copy.join("samples-000001.log");
    let mut bytes = std::fs::read(&samples).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&samples, &bytes).expect("write");
    let events = copy.join("events.log");
    let bytes = std::fs::read(&events).expect("read");
    std::fs::write(&events, &bytes[..bytes.len() - 7]).expect("write");

    let out = memwarden()
        .args(["export", "--table", "samples"])
        .arg(&copy)
        .output()
        .expect("export");
    assert!(out.status.success());
    let rows = String::from_utf8_lossy(&out.stdout).lines().count() - 1;
    assert!(
        rows < intact && rows + 40 > intact,
        "one damaged tick lost at most: {rows} of {intact}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("damaged record"),
        "damage is reported"
    );
    let events = memwarden()
        .args(["export", "--table", "events"])
        .arg(&copy)
        .output()
        .expect("export");
    assert!(events.status.success());
}

#[test]
fn segments_compact_during_the_run_and_read_back_as_one_table() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    run_fixture(
        &dir,
        "--interval 20ms --segment 400ms",
        "--trials 8 --trial-ms 100 --gap-ms 50",
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let parquet = names
        .iter()
        .filter(|n| n.starts_with("samples-") && n.ends_with(".parquet"))
        .count();
    assert!(parquet >= 2, "several compacted segments: {names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".log") && n != "events.log"),
        "logs removed after compaction: {names:?}"
    );
    let samples = export(&dir, "samples");
    let t: Vec<f64> = samples
        .rows
        .iter()
        .filter_map(|r| samples.get(r, "t"))
        .collect();
    assert!(
        t.windows(2).all(|w| w[0] <= w[1]),
        "segments read back in order"
    );
    assert!(t.len() > 40);
    let out = memwarden()
        .args(["export", "--format", "parquet", "--table", "trials", "-o"])
        .arg(temp.path().join("t.parquet"))
        .arg(&dir)
        .output()
        .expect("export");
    assert!(
        out.status.success()
            && temp
                .path()
                .join("t.parquet")
                .metadata()
                .is_ok_and(|m| m.len() > 0)
    );
}
