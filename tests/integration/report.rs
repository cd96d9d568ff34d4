//! Reports: the examples in `reports/` stay true to the code, a SIGKILLed harness gets a crash
//! report that says so, kernel OOM kills land on the timeline, and worker text cannot inject
//! Markdown or leak secrets.

use crate::util::{exe, keep_fresh, memwarden, report, run_dir, tempdir, wait_until};
use std::path::Path;

/// (example, recording, kernel logs)
const EXAMPLES: [(&str, &str, &[&str]); 3] = [
    ("leak", "fixtures/runs/leak", &[]),
    ("plateau", "fixtures/runs/plateau", &[]),
    (
        "crash",
        "fixtures/runs/crashed",
        &["fixtures/kernel-log/crashed.journal"],
    ),
];

/// Regenerates every example and compares it byte for byte with `reports/`. With
/// `MEMWARDEN_UPDATE_REPORTS=1` it rewrites them instead.
#[test]
fn example_reports_are_fresh() {
    let update = std::env::var_os("MEMWARDEN_UPDATE_REPORTS").is_some();
    for (name, run, logs) in EXAMPLES {
        let temp = tempdir();
        let mut extra = vec!["--no-host"];
        for log in logs {
            extra.extend(["--kernel-log", log]);
        }
        report(Path::new(run), temp.path(), &extra);
        keep_fresh(temp.path(), &Path::new("reports").join(name), update);
    }
}

#[test]
fn sigkill_mid_run_gives_a_crash_report_that_says_so() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let mut harness = memwarden()
        .args(["run", "--interval", "50ms", "--out"])
        .arg(&dir)
        .args([
            "--",
            &exe(),
            "fixture-worker",
            "--trials",
            "1000",
            "--trial-ms",
            "100",
        ])
        .args(["--gap-ms", "50", "--leak-mib", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("harness starts");
    let events = dir.join("events.log");
    // Kill during a trial (100 ms of each 150), after twelve have ended.
    wait_until("a trial is running after twelve have ended", || {
        std::fs::read_to_string(&events).is_ok_and(|e| {
            let ends = e.matches("\"trial_end\"").count();
            ends >= 12 && e.matches("\"trial_start\"").count() == ends + 1
        })
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(harness.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    harness.wait().expect("reaped");
    let text = report(&dir, &temp.path().join("report"), &[]);
    assert!(text.contains("# memwarden report: crash"), "{text}");
    assert!(
        text.contains("The recording ended without a clean stop"),
        "{text}"
    );
    assert!(text.contains("## After the crash"), "{text}");
    assert!(text.contains("running trial"), "{text}");
    assert!(text.contains("The host has not rebooted since"), "{text}");
    assert!(
        text.contains("last sample: the recording ends here"),
        "{text}"
    );
    assert!(text.contains("**Worker 0: leak**"), "{text}");
}

#[test]
fn kernel_oom_kills_are_placed_on_the_timeline_and_matched_to_workers() {
    let temp = tempdir();
    let text = report(
        Path::new("fixtures/runs/crashed"),
        temp.path(),
        &[
            "--no-host",
            "--kernel-log",
            "fixtures/kernel-log/crashed.journal",
            "--kernel-log",
            "fixtures/kernel-log/oom.dmesg",
        ],
    );
    let row = text
        .lines()
        .find(|l| l.contains("kernel OOM kill: pid 10209"))
        .expect("the journal's kill is on the timeline");
    assert!(row.starts_with("| 18:58:43 (+"), "{row}");
    assert!(row.contains("anon-rss 22.0 MiB, worker 1"), "{row}");
    // dmesg counts from a boot this report cannot place (--no-host): listed apart.
    assert!(text.contains("could not be placed"), "{text}");
    assert!(text.contains("pid 4242 (python), anon-rss 15.00 GiB, not a recorded worker process"));
}

#[test]
fn worker_text_cannot_inject_markdown_and_secrets_stay_out() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let script = format!(
        "exec {} fixture-worker --trials 8 --trial-ms 20 --gap-ms 20 --leak-mib 4 --param 'note=[x](http://evil.example)'",
        exe()
    );
    let out = memwarden()
        .args(["run", "--interval", "20ms", "--out"])
        .arg(&dir)
        .args([
            "--",
            "sh",
            "-c",
            &script,
            "sh",
            "--api-token",
            "hunter2",
            "PASSWORD=swordfish",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = report(&dir, &temp.path().join("report"), &[]);
    assert!(
        !text.contains("hunter2") && !text.contains("swordfish"),
        "{text}"
    );
    assert!(text.contains("PASSWORD=\\*\\*\\*"), "{text}");
    assert!(!text.contains("[x](http"), "{text}");
    assert!(text.contains("\\[x\\]\\(http\\://evil"), "{text}");
}

/// A worker whose Optuna log memwarden did not read (as with `attach`): the report takes its
/// trials from `--worker-log` and finds the leak per trial.
#[test]
fn trials_come_from_a_worker_log_written_outside_the_harness() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let log = temp.path().join("optuna.log");
    let script = format!(
        "exec {} fixture-worker --optuna --trials 12 --trial-ms 60 --gap-ms 40 --leak-mib 4 2> {}",
        exe(),
        log.display()
    );
    let out = memwarden()
        .args([
            "run",
            "--interval",
            "20ms",
            "--trial-regex",
            "NEVER(?P<trial>x)",
            "--out",
        ])
        .arg(&dir)
        .args(["--", "sh", "-c", &script])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let without = report(&dir, &temp.path().join("a"), &[]);
    assert!(without.contains("MiB per hour"), "{without}");
    let log = log.display().to_string();
    let with = report(&dir, &temp.path().join("b"), &["--worker-log", &log]);
    assert!(with.contains("12 trial(s)"), "{with}");
    assert!(
        with.contains("**Worker 0: leak** in anonymous memory, 4.0"),
        "{with}"
    );
}

#[test]
fn svg_plots_on_request() {
    let temp = tempdir();
    let text = report(
        Path::new("fixtures/runs/plateau"),
        temp.path(),
        &["--svg", "--no-host"],
    );
    assert!(text.contains("](plots/worker-0-retained.svg)"), "{text}");
    let svg = std::fs::read_to_string(temp.path().join("plots/worker-0-retained.svg"))
        .expect("an SVG plot");
    assert!(svg.starts_with("<svg") && svg.contains("retained per trial (plateau)"));
    assert!(!temp.path().join("plots/worker-0-retained.png").exists());
}
