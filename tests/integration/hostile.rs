//! Hostile and careless input, one test per probe of issue 35: what a client of the metrics
//! port, a worker's command line, its output or its file descriptors, or a doctored recording
//! can do to memwarden. Each must leave the supervisor running, the worker's files untouched,
//! secrets unwritten and figures honest.

use crate::metrics::{free_port, http_get, Server};
use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

/// A field of /proc/PID/status, as a number (kB for sizes).
fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `memwarden run -q --no-report RUN_ARGS --out DIR -- COMMAND` to its end, with PYTHONPATH on
/// the helper package; asserts that memwarden succeeded.
fn run_to_end(
    dir: &std::path::Path,
    run_args: &[&str],
    command: &[&std::ffi::OsStr],
) -> std::process::Output {
    let out = memwarden()
        .args(["run", "-q", "--no-report"])
        .args(run_args)
        .arg("--out")
        .arg(dir)
        .arg("--")
        .args(command)
        .env("PYTHONPATH", "python")
        .output()
        .expect("memwarden runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The run's events.log as text (its records are JSON lines with a frame around each).
fn events_text(dir: &std::path::Path) -> String {
    String::from_utf8_lossy(&std::fs::read(dir.join("events.log")).unwrap_or_default()).into_owned()
}

/// A memwarden serving `/metrics` on a free port, with a quiet worker for a minute.
fn serving(dir: &std::path::Path) -> (Server, u16) {
    let port = free_port();
    let child = fixture_run(
        dir,
        &format!("-q --no-report --metrics-listen {port}"),
        "--trials 600 --trial-ms 100",
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("memwarden starts");
    let server = Server(child);
    wait_until("memwarden serves /metrics", || {
        http_get(port, "/metrics").is_some()
    });
    // The endpoint answers before the workers start: a measure taken then would miss the
    // threads that reading them starts (sampler, writer, output readers).
    wait_until("the worker runs trials", || {
        memwarden::recording::Recording::open(dir).is_ok_and(|r| !r.trials().is_empty())
    });
    (server, port)
}

/// Sends `head` then `body`, and returns the status line of the reply (empty if none).
fn send(port: u16, head: &[u8], body: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let _ = stream.write_all(head);
    let _ = stream.write_all(body);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_huge_content_length_neither_kills_the_supervisor_nor_its_endpoint() {
    let temp = tempdir();
    let (server, port) = serving(&temp.path().join("run"));
    for length in ["30000000000", "18446744073709551615", "-1", "nine"] {
        let head = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n");
        let status = send(port, head.as_bytes(), b"abc");
        assert!(
            status.contains("200"),
            "Content-Length {length}: {status:?}"
        );
    }
    let (status, body) = http_get(port, "/metrics").expect("/metrics still answers");
    assert_eq!(status, 200);
    assert!(body.contains("memwarden_run_active 1"), "{body}");
    assert!(alive(server.0.id() as i32), "memwarden died");
}

#[test]
fn a_gigabyte_header_line_and_five_thousand_idle_connections_cost_memwarden_nothing() {
    let temp = tempdir();
    let (server, port) = serving(&temp.path().join("run"));
    let pid = server.0.id();
    let rss_before_kib = status_field(pid, "VmRSS");
    let threads_before = status_field(pid, "Threads");

    // 1 GB of header with no line end: the server answers 431 after 8 KiB and closes, so the
    // sender sees its writes fail long before a gigabyte.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nX-Long: ")
        .expect("the request line");
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0u64;
    while sent < 1 << 30 {
        match stream.write(&chunk) {
            Ok(n) if n > 0 => sent += n as u64,
            _ => break,
        }
    }
    let rss_after_header_kib = status_field(pid, "VmRSS");
    assert!(sent < 1 << 30, "the server read a whole gigabyte of header");

    // 5,000 idle connections, held open together.
    let idle: Vec<TcpStream> = (0..5000)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(idle.len() > 4000, "only {} connections opened", idle.len());
    // Not a wait for an event: the cost is measured after the server has had half a second
    // under the idle connections (it may take, hold or drop them, as its limits say).
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle_kib = status_field(pid, "VmRSS");
    let threads_idle = status_field(pid, "Threads");
    drop(idle);
    eprintln!(
        "memwarden: RSS {rss_before_kib} kB before, {rss_after_header_kib} kB after a header of \
         {sent} bytes, {rss_idle_kib} kB under 5,000 idle connections; threads {threads_before} \
         before, {threads_idle} under them"
    );
    assert!(
        rss_after_header_kib < rss_before_kib + 16 * 1024,
        "{rss_before_kib} -> {rss_after_header_kib} kB"
    );
    assert!(
        rss_idle_kib < rss_before_kib + 16 * 1024,
        "{rss_before_kib} -> {rss_idle_kib} kB"
    );
    assert!(
        threads_idle <= threads_before,
        "{threads_before} -> {threads_idle} threads"
    );
    wait_until("/metrics answers again", || {
        http_get(port, "/metrics").is_some_and(|(status, _)| status == 200)
    });
    assert!(alive(pid as i32), "memwarden died");
}

#[test]
fn secrets_on_a_worker_command_line_are_written_nowhere() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    let secrets = ["hunter2", "dbpass42", "pwshort42", "apikey42", "mytok99"];
    let command = [
        "sh",
        "-c",
        "sleep 1.5",
        "w.py",
        "--password",
        "hunter2",
        "--storage",
        "postgresql://optuna:dbpass42@db:5432/optuna",
        "--pw",
        "pwshort42",
        "--api_key=apikey42",
        "HF_TOKEN=mytok99",
    ];
    let command: Vec<&std::ffi::OsStr> = command.iter().map(|w| w.as_ref()).collect();
    let out = run_to_end(&dir, &[], &command);
    let mut written = String::from_utf8_lossy(&out.stderr).into_owned();
    for table in ["events", "samples", "trials"] {
        let export = memwarden()
            .args(["export", "--table", table, "--format", "csv"])
            .arg(&dir)
            .output()
            .expect("export runs");
        written += &String::from_utf8_lossy(&export.stdout);
    }
    let report = memwarden()
        .arg("report")
        .arg(&dir)
        .output()
        .expect("report runs");
    written += &String::from_utf8_lossy(&report.stdout);
    for file in files(&dir) {
        written += &String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default());
    }
    assert!(
        written.contains("postgresql://optuna:***@db:5432/optuna"),
        "the masked URL is shown"
    );
    assert!(written.contains("process_seen"), "the events were exported");
    for secret in secrets {
        assert!(!written.contains(secret), "{secret} was written");
    }
}

/// A worker's child that calls `setsid` and holds memory while its parent lives on.
const SETSID_CHILD: &str = r#"
import os, sys, time
if os.fork() == 0:
    os.setsid()
    held = bytearray(40 << 20)
    for i in range(0, len(held), 4096):
        held[i] = 1
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(120)
    os._exit(0)
time.sleep(120)
"#;

#[test]
fn a_setsid_child_does_not_outlive_a_killed_harness() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    let pid_file = temp.path().join("escapee.pid");
    let mut harness = memwarden()
        .args(["run", "-q", "--no-report", "--out"])
        .arg(&dir)
        .args(["--", "python3", "-c", SETSID_CHILD])
        .arg(&pid_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memwarden starts");
    wait_until("the child has left its group", || pid_file.exists());
    let escapee: i32 = std::fs::read_to_string(&pid_file)
        .expect("the pid")
        .trim()
        .parse()
        .expect("a pid");
    let events = dir.join("events.log");
    wait_until("memwarden noticed the new group", || {
        String::from_utf8_lossy(&std::fs::read(&events).unwrap_or_default())
            .contains("left its process group")
    });
    harness.kill().expect("SIGKILL");
    let _ = harness.wait();
    wait_until("the escapee is gone", || !alive(escapee));
}

/// A double-fork daemon with an empty environment: nothing names its worker.
const DAEMON: &str = r#"
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        os.execve("/bin/sleep", ["sleep", "120"], {})
    os._exit(0)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
time.sleep(0.5)
"#;

#[test]
fn a_double_fork_daemon_without_its_environment_is_stopped_at_the_end() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    let pid_file = temp.path().join("daemon.pid");
    run_to_end(
        &dir,
        &[],
        &[
            "python3".as_ref(),
            "-c".as_ref(),
            DAEMON.as_ref(),
            pid_file.as_os_str(),
        ],
    );
    let daemon: i32 = std::fs::read_to_string(&pid_file)
        .expect("the pid")
        .trim()
        .parse()
        .expect("a pid");
    let gone = !alive(daemon);
    if !gone {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(gone, "the daemon {daemon} outlived the run");
}

/// A worker that closes every descriptor it did not open (as daemonising libraries do), then
/// opens a results file (which gets the lowest free number, the tracer's old one) and runs
/// traced trials, writing one line per trial.
const CLOSES_FDS: &str = r#"
import os, sys
import memwarden
kept = []
with memwarden.trial("warmup"):
    kept.append(bytearray(1 << 20))
os.closerange(3, 4096)
results = open(sys.argv[1], "w")
for t in range(6):
    with memwarden.trial(str(t)):
        kept.append(bytearray(1 << 20))
    results.write("trial %d\n" % t)
    results.flush()
results.close()
"#;

#[test]
fn the_tracer_never_writes_into_a_file_the_worker_opened_on_its_old_descriptor() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    let results = temp.path().join("results.txt");
    run_to_end(
        &dir,
        &["--trace-python"],
        &[
            "python3".as_ref(),
            "-c".as_ref(),
            CLOSES_FDS.as_ref(),
            results.as_os_str(),
        ],
    );
    let written = std::fs::read_to_string(&results).expect("the results");
    let expected: String = (0..6).map(|t| format!("trial {t}\n")).collect();
    assert_eq!(
        written, expected,
        "the worker's file holds only its own lines"
    );
    let events = events_text(&dir);
    assert!(
        events.contains("closed the tracer's report file"),
        "the reopening is said"
    );
    let sites = events.matches("\"python_sites\"").count();
    // The tracer reports the trials its budget lets it trace: the warm-up, and some after.
    assert!(
        sites >= 2,
        "the tracer's reports after the closerange arrived: {sites}"
    );
}

#[test]
fn a_forged_tracer_file_of_a_process_outside_the_workers_is_ignored() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    let go = temp.path().join("go");
    // The worker waits until the forged file is in place, so the harness reads it while the
    // run lasts.
    let worker = format!(
        "import os, time\nwhile not os.path.exists({:?}): time.sleep(0.02)\ntime.sleep(1)\n",
        go.display().to_string()
    );
    let child = memwarden()
        .args(["run", "-q", "--no-report", "--trace-python", "--out"])
        .arg(&dir)
        .args(["--", "python3", "-c", &worker])
        .env("PYTHONPATH", "python")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("memwarden starts");
    let trace_dir = dir.join("python-trace");
    wait_until("the tracer's directory exists", || trace_dir.is_dir());
    let forger = std::process::id();
    let sites = (0..5)
        .map(|t| {
            format!(
                r#"{{"kind":"sites","trial":"{t}","epoch":0,"traced_bytes":{b},"traced_blocks":1,"peak_bytes":{b},"cost_ms":1,"slowdown":null,"gap":1,"stretch":1,"sites":[{{"file":"/forged.py","line":666,"bytes":{b},"blocks":1,"largest_block":{b},"via":null,"study":false,"traceback":["/forged.py:666"]}}],"pid":{forger},"worker":0,"t_mono_ns":1}}"#,
                b = (t + 1) << 24
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(trace_dir.join(format!("{forger}.jsonl")), sites + "\n").expect("forged");
    std::fs::write(&go, "").expect("go");
    let out = child.wait_with_output().expect("memwarden ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "ignored the Python tracer's reports of pid(s) [{forger}]"
        )),
        "{stderr}"
    );
    let events = events_text(&dir);
    assert!(
        !events.contains("forged.py"),
        "the forged line was recorded"
    );
}

/// 20 trials with 2,000 parameters each (each trial its own names) and one of 5,000 bytes.
const MANY_PARAMS: &str = r#"
import sys
for t in range(20):
    words = ["p%d_%d=%d" % (t, i, i) for i in range(2000)] + ["big=" + "x" * 5000]
    print("MEMWARDEN trial_start %d %s" % (t, " ".join(words)), flush=True)
    print("MEMWARDEN trial_end %d status=complete" % t, flush=True)
"#;

#[test]
fn parameters_beyond_the_bounds_are_cut_counted_and_kept_out_of_the_columns() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    run_to_end(
        &dir,
        &[],
        &["python3".as_ref(), "-c".as_ref(), MANY_PARAMS.as_ref()],
    );
    let recording = memwarden::recording::Recording::open(&dir).expect("the recording");
    let frame = recording.trials_frame().expect("the trials table");
    let param_columns = frame
        .get_column_names()
        .iter()
        .filter(|c| c.starts_with("param_"))
        .count();
    assert_eq!(param_columns, 256, "one column per parameter, at most 256");
    let trials = recording.trials();
    assert_eq!(trials.len(), 20);
    let params = &trials[0].params;
    assert_eq!(
        params.len(),
        1024 + 1,
        "1,024 parameters and the count of the rest"
    );
    assert_eq!(params["memwarden_params_dropped"], 2001 - 1024);
    let big = params["big"].as_str().expect("a string");
    assert!(
        big.ends_with('…') && big.len() <= 1024 + 3,
        "{} bytes",
        big.len()
    );
}

#[test]
fn a_worker_that_prints_without_end_keeps_its_log_under_the_cap_with_its_start_and_end() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    let printer = "import sys\nfor i in range(200000): print('line %06d' % i)\n";
    run_to_end(
        &dir,
        &["--log-cap", "256KiB"],
        &["python3".as_ref(), "-c".as_ref(), printer.as_ref()],
    );
    let logs = dir.join("logs");
    let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
    let (head, tail, old) = (
        read("worker-0.log"),
        read("worker-0.tail.log"),
        read("worker-0.tail.old.log"),
    );
    assert!(head.contains("out line 000000"), "the start is kept");
    assert!(tail.contains("out line 199999"), "the end is kept");
    let kept = head.len() + tail.len() + old.len();
    assert!(kept <= 256 * 1024 + 512, "{kept} bytes kept of ~3.6 MB");
    let events = events_text(&dir);
    assert!(
        events.contains("reached half of its log cap"),
        "the cut is said"
    );
}

#[test]
fn nan_or_infinite_policy_values_are_refused_with_their_line() {
    let temp = tempdir();
    for (value, line) in [("nan", 3), ("inf", 3), ("-nan", 3)] {
        let policy = temp.path().join("policy.toml");
        std::fs::write(&policy, format!("[brake]\n\nmax_psi_full = {value}\n")).expect("write");
        let out = memwarden()
            .args(["simulate", "--policy"])
            .arg(&policy)
            .arg("fixtures/runs/leak")
            .output()
            .expect("simulate runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {stderr}");
        assert!(
            stderr.contains(&format!("policy.toml:{line}")) && stderr.contains("pressure"),
            "{value}: {stderr}"
        );
    }
}

/// A finished run of the fixture worker, copied so a test may damage it.
fn finished_run(temp: &tempfile::TempDir) -> std::path::PathBuf {
    let dir = temp.path().join("run");
    run_fixture(
        &dir,
        "-q --no-report",
        "--trials 6 --trial-ms 60 --leak-mib 2",
    );
    dir
}

#[test]
fn an_impossible_worker_count_in_a_manifest_is_one_line_not_an_abort() {
    let temp = tempdir();
    let dir = finished_run(&temp);
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("JSON");
    for workers in [4_294_967_295u64, 100_000_000] {
        manifest["workers"] = workers.into();
        std::fs::write(&path, manifest.to_string()).expect("write");
        for command in ["simulate", "analyze", "report"] {
            let out = memwarden().arg(command).arg(&dir).output().expect("runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
            assert!(
                stderr.contains("impossible manifest"),
                "{command}: {stderr}"
            );
            assert_eq!(stderr.trim().lines().count(), 1, "{command}: {stderr}");
        }
    }
}

#[test]
fn a_torn_sealed_segment_is_skipped_with_a_note_and_a_cut_events_log_is_reported() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    run_fixture(
        &dir,
        "-q --no-report --segment 1s",
        "--trials 25 --trial-ms 100 --leak-mib 2",
    );
    let segment = dir.join("samples-000001.parquet");
    assert!(
        dir.join("samples-000002.parquet").exists(),
        "several segments"
    );
    let bytes = std::fs::read(&segment).expect("a sealed segment");
    std::fs::write(&segment, &bytes[..bytes.len() / 2]).expect("torn");
    let out = memwarden()
        .arg("analyze")
        .arg(&dir)
        .output()
        .expect("analyze runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 unreadable sealed segment(s)"), "{text}");

    let events = dir.join("events.log");
    let bytes = std::fs::read(&events).expect("events");
    std::fs::write(&events, &bytes[..bytes.len() / 3]).expect("cut");
    let out = memwarden()
        .arg("analyze")
        .arg(&dir)
        .output()
        .expect("analyze runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("events.log ends before the run's stop"),
        "{text}"
    );
}

#[test]
fn worker_text_in_the_fleet_report_is_escaped() {
    let temp = tempdir();
    let dir = temp.path().join("run");
    let dest = temp.path().join("fleet");
    run_fixture(
        &dir,
        "-q --no-report",
        "--trials 16 --trial-ms 60 --gap-ms 40 --param v=<script>,[l](http://e.com) --leak-mib 8 --leak-when v=<script>",
    );
    crate::fleet::set_host(&dir, "h|ost<img>");
    let out = crate::fleet::publish(&dir, &dest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = temp.path().join("report");
    let out = memwarden()
        .arg("fleet")
        .arg(&dest)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("fleet runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let markdown = std::fs::read_to_string(report.join("fleet.md")).expect("fleet.md");
    assert!(markdown.contains(r"\<script\>"), "{markdown}");
    for raw in ["<script>", "<img>", "](http", "h|ost"] {
        assert!(!markdown.contains(raw), "{raw} raw in:\n{markdown}");
    }
}
