//! Live metrics as their real readers see them: a real Prometheus scraping `/metrics` of a
//! leaking run, `promtool check metrics` on the endpoint and on the textfile, node_exporter's
//! textfile collector serving the textfile, and the mistakes a user makes with the flags.
//! Prometheus, promtool and node_exporter are Debian's (`scripts/test` installs them).

use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Worker 0 leaks 4 MiB a trial for about 14 s (Prometheus scrapes it every second), beside a
/// flat worker 1.
const LEAKING: &str = "--trials 45 --trial-ms 200 --gap-ms 100 --leak-mib 4 --only-worker 0";

/// A program from Debian's packages; its absence is a machine not set up by `scripts/test`,
/// which is a failure, not a reason to skip.
fn debian(program: &str, package: &str) -> String {
    let path = format!("/usr/bin/{program}");
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: `apt-get install -y {package}` (scripts/test does)"
    );
    path
}

/// A port free now (the system's choice for port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Stops (SIGTERM, then SIGKILL after 10 s) and reaps a server or a memwarden when the test
/// ends, passed or not; a memwarden stops its workers on SIGTERM.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if eventually(Duration::from_secs(10), || {
            matches!(self.0.try_wait(), Ok(Some(_)))
        }) {
            return;
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool check metrics` on `text`: its complaints, if any.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(debian("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("promtool reads");
    let out = child.wait_with_output().expect("promtool ends");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// The value of `name{...labels}` in text-format `text`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

#[test]
fn a_real_prometheus_scrapes_a_leaking_run_and_sees_its_memory_grow() {
    let prometheus = debian("prometheus", "prometheus");
    let temp = tempdir();
    let (port, prometheus_port) = (free_port(), free_port());
    let config = temp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: memwarden\n    static_configs:\n      \
             - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("config");
    let _prometheus = Server(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                temp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    wait_until("Prometheus is ready", || {
        http_get(prometheus_port, "/-/ready").is_some_and(|(status, _)| status == 200)
    });
    let dir = temp.path().join("run");
    let started = Instant::now();
    let run = fixture_run(
        &dir,
        &format!("--workers 2 --no-report --metrics-listen 127.0.0.1:{port}"),
        LEAKING,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("memwarden starts");
    // While it runs, the endpoint is what promtool accepts.
    let mut scraped = None;
    wait_until("the endpoint shows worker 0", || {
        scraped = http_get(port, "/metrics").filter(|(_, body)| body.contains("worker=\"0\""));
        scraped.is_some()
    });
    let (status, body) = scraped.expect("scraped");
    assert_eq!(status, 200);
    let (valid, said) = promtool_check(&body);
    assert!(valid && said.trim().is_empty(), "promtool: {said}\n{body}");
    assert_eq!(http_get(port, "/nothing").map(|(s, _)| s), Some(404));
    let out = run.wait_with_output().expect("memwarden ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Prometheus's own answer: worker 0's anonymous memory, scraped every second, rose by
    // about 4 MiB a trial; worker 1's did not.
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let series = |worker: &str| -> Vec<(f64, f64)> {
        let query = format!("memwarden_worker_memory_bytes{{kind=\"anon\",worker=\"{worker}\"}}");
        let path = format!(
            "/api/v1/query_range?query={}&start={:.3}&end={end:.3}&step=1",
            encode(&query),
            end - started.elapsed().as_secs_f64() - 5.0
        );
        let (status, body) = http_get(prometheus_port, &path).expect("Prometheus answers");
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        answer["data"]["result"][0]["values"]
            .as_array()
            .unwrap_or_else(|| panic!("no series for worker {worker}: {body}"))
            .iter()
            .map(|v| {
                let at = v[0].as_f64().expect("a time");
                let value = v[1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("a number");
                (at, value)
            })
            .collect()
    };
    let points = series("0");
    let last_scraped = points.last().expect("a scrape").0;
    let leaking: Vec<f64> = points.iter().map(|p| p.1).collect();
    assert!(leaking.len() >= 5, "too few scrapes: {leaking:?}");
    let peak = leaking.iter().cloned().fold(0.0, f64::max);
    let first = leaking
        .iter()
        .cloned()
        .find(|v| *v > 0.0)
        .expect("a reading");
    assert!(
        peak - first > 80.0 * MIB,
        "worker 0's anonymous memory did not grow in Prometheus: {leaking:?}"
    );
    // Every query of the dashboard is PromQL this Prometheus accepts, and the memory, growth and
    // trials panels show this run (at a moment it was running).
    dashboard_queries_show_the_run(prometheus_port, last_scraped - 1.0);
    let flat: Vec<f64> = series("1").iter().map(|p| p.1).collect();
    let (low, high) = flat
        .iter()
        .filter(|v| **v > 0.0)
        .fold((f64::MAX, 0.0f64), |(l, h), v| (l.min(*v), h.max(*v)));
    assert!(high - low < 16.0 * MIB, "worker 1 grew: {flat:?}");
}

/// Each query of the Grafana dashboard, asked of Prometheus at `middle` (a moment the run was
/// running): accepted, and the memory, growth and trials panels find the run.
fn dashboard_queries_show_the_run(prometheus_port: u16, middle: f64) {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/grafana/memwarden.json"),
        )
        .expect("dashboard"),
    )
    .expect("JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let query = ["$instance", "$worker", "$kind"]
                .iter()
                .fold(expr.to_string(), |q, v| q.replace(v, ".*"))
                .replace("$__rate_interval", "30s");
            let path = format!("/api/v1/query?query={}&time={middle:.3}", encode(&query));
            let (status, body) = http_get(prometheus_port, &path).expect("Prometheus answers");
            assert_eq!(status, 200, "{query}: {body}");
            let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let found = answer["data"]["result"].as_array().map_or(0, Vec::len);
            let title = panel["title"].as_str().unwrap_or("");
            if [
                "Memory by kind per worker",
                "Retained growth per trial",
                "Trials per minute",
            ]
            .contains(&title)
            {
                assert!(found > 0, "{title}: {query} found nothing");
            }
        }
    }
}

#[test]
fn node_exporter_serves_the_textfile_which_promtool_accepts() {
    let node_exporter = debian("prometheus-node-exporter", "prometheus-node-exporter");
    let temp = tempdir();
    let textfiles = temp.path().join("textfile");
    std::fs::create_dir(&textfiles).expect("dir");
    let dir = temp.path().join("run");
    let mut run = fixture_run(
        &dir,
        &format!("--no-report --metrics-textfile {}", textfiles.display()),
        "--trials 12 --trial-ms 200 --gap-ms 100 --leak-mib 4",
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("memwarden starts");
    let file = textfiles.join("memwarden.prom");
    let mut during = String::new();
    wait_until("the textfile shows worker 0 sampled", || {
        during = std::fs::read_to_string(&file).unwrap_or_default();
        sample(&during, "memwarden_worker_processes", &["worker=\"0\""]) == Some(1.0)
    });
    assert_eq!(sample(&during, "memwarden_run_active", &[]), Some(1.0));
    assert!(run.wait().expect("memwarden ends").success());
    let text = std::fs::read_to_string(&file).expect("the textfile stays");
    let (valid, said) = promtool_check(&text);
    assert!(valid && said.trim().is_empty(), "promtool: {said}\n{text}");
    assert_eq!(
        sample(&text, "memwarden_run_active", &[]),
        Some(0.0),
        "the last write marks the run over"
    );
    assert_eq!(
        sample(
            &text,
            "memwarden_worker_trials_total",
            &["state=\"complete\""]
        ),
        Some(12.0)
    );
    let leftovers: Vec<_> = std::fs::read_dir(&textfiles)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["memwarden.prom"], "no temporary file is left");
    let port = free_port();
    let _exporter = Server(
        Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                textfiles.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node_exporter starts"),
    );
    let mut served = String::new();
    wait_until("node_exporter serves memwarden's metrics", || {
        served = http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        served.contains("memwarden_worker_memory_bytes")
    });
    assert_eq!(
        sample(
            &served,
            "memwarden_worker_trials_total",
            &["state=\"complete\""]
        ),
        Some(12.0)
    );
    assert_eq!(
        sample(&served, "node_textfile_scrape_error", &[]),
        Some(0.0),
        "node_exporter read the textfile without error:\n{served}"
    );
}

#[test]
fn a_second_memwarden_on_the_same_port_an_address_not_here_or_a_missing_directory_is_one_line_and_exit_2(
) {
    let temp = tempdir();
    let port = free_port();
    let first = fixture_run(
        &temp.path().join("first"),
        &format!("-q --no-report --metrics-listen {port}"),
        "--trials 200 --trial-ms 100",
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("the first memwarden starts");
    let first = Server(first);
    wait_until("the first memwarden listens", || {
        http_get(port, "/metrics").is_some()
    });
    let cases = [
        (format!("--metrics-listen {port}"), "the address is in use"),
        (
            "--metrics-listen 203.0.113.7:9477".to_string(),
            "no interface of this host has that address",
        ),
        ("--metrics-listen nine".to_string(), "not an address"),
        (
            format!(
                "--metrics-textfile {}",
                temp.path().join("absent").display()
            ),
            "--metrics-textfile",
        ),
    ];
    for (flags, words) in cases {
        let dir = temp.path().join("run");
        let out = fixture_run(&dir, &format!("-q {flags}"), "--trials 1")
            .output()
            .expect("memwarden runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flags}: {stderr}");
        assert!(stderr.contains(words), "{flags}: {stderr}");
        assert!(!dir.exists(), "{flags}: nothing was started");
    }
    // The first one never noticed.
    assert!(http_get(port, "/metrics").is_some_and(|(status, _)| status == 200));
    drop(first);
}

#[test]
fn a_broken_scrape_or_a_textfile_that_cannot_be_written_never_stops_the_run() {
    let temp = tempdir();
    let port = free_port();
    let textfiles = temp.path().join("textfile");
    std::fs::create_dir(&textfiles).expect("dir");
    let dir = temp.path().join("run");
    let run = fixture_run(
        &dir,
        &format!(
            "-q --metrics-listen {port} --metrics-textfile {}",
            textfiles.display()
        ),
        "--trials 15 --trial-ms 200 --gap-ms 100 --leak-mib 4",
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("memwarden starts");
    wait_until("the endpoint answers", || {
        http_get(port, "/metrics").is_some()
    });
    // A client that sends garbage, one that leaves without reading, one that never finishes
    // its request; and the textfile's directory taken away.
    for request in [
        "\u{1}\u{2} garbage\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n\r\n",
        "GET /met",
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let _ = stream.write_all(request.as_bytes());
    }
    // memwarden's lines as they come, to wait on the textfile writer's note.
    let mut run = run;
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (said, mut pipe) = (said.clone(), run.stderr.take().expect("stderr piped"));
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                said.lock().expect("lock").push_str(&text);
            }
        })
    };
    std::fs::remove_dir_all(&textfiles).expect("remove");
    wait_until("the textfile writer says the run goes on", || {
        said.lock().expect("lock").contains("the run goes on")
    });
    let (status, body) = http_get(port, "/metrics").expect("still served");
    assert_eq!(status, 200);
    assert!(body.contains("memwarden_worker_memory_bytes"));
    let status = run.wait().expect("memwarden ends");
    reader.join().expect("reader");
    let stderr = said.lock().expect("lock").clone();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("the run goes on"), "{stderr}");
    assert!(stderr.contains("verdict: LEAK in worker 0"), "{stderr}");
}

#[test]
fn the_alert_rules_pass_promtool_and_fire_on_their_unit_tests() {
    let promtool = debian("promtool", "prometheus");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus");
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts_test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&rules)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every metric memwarden can export, from a status that has everything: a sampled worker with
/// a trial ended, a restart, the cgroup's OOM counter and pressure.
fn exported_names() -> std::collections::BTreeSet<String> {
    use memwarden::recording::{Event, EventKind, ProcessSample, SystemSample, Tick};
    let mut status = memwarden::live::LiveStatus::default();
    let event = |kind| Event {
        t_ns: 0,
        wall_ns: 0,
        worker: Some(0),
        kind,
    };
    status.event(&event(EventKind::WorkerStart {
        pid: 1,
        pgid: 1,
        attempt: 0,
    }));
    for t in 1..4 {
        status.tick(&Tick {
            t_ns: t,
            wall_ns: t,
            system: SystemSample {
                psi_some_avg10: Some(1.0),
                cgroup_oom_kill: Some(0),
                ..SystemSample::default()
            },
            processes: vec![ProcessSample {
                pss: Some(t),
                ..ProcessSample::default()
            }],
            gpus: Vec::new(),
            cgroups: Vec::new(),
        });
        status.event(&event(EventKind::TrialEnd {
            trial: t.to_string().into(),
            state: "complete".into(),
            value: None,
            memory: None,
        }));
    }
    memwarden::metrics::render(&status, "v", true)
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `memwarden_…` names in a query.
fn names_in(text: &str) -> Vec<String> {
    let name = regex::Regex::new(r"memwarden_[a-z_]+").expect("regex");
    name.find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect()
}

#[test]
fn the_dashboard_and_the_rules_ask_only_for_metrics_memwarden_exports() {
    let exported = exported_names();
    assert!(
        exported.contains("memwarden_worker_memory_bytes"),
        "{exported:?}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana/memwarden.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for needed in ["datasource", "instance", "worker"] {
        assert!(variables.contains(&needed), "{variables:?}");
    }
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(queries.len() >= 7, "{queries:?}");
    queries.extend(
        dashboard["templating"]["list"]
            .as_array()
            .expect("variables")
            .iter()
            .filter_map(|v| v["definition"].as_str().map(str::to_string)),
    );
    queries.push(std::fs::read_to_string(root.join("prometheus/alerts.yaml")).expect("rules"));
    let mut asked = 0;
    for query in &queries {
        for name in names_in(query) {
            asked += 1;
            assert!(
                exported.contains(&name),
                "{name} is not exported (in {query})"
            );
        }
    }
    assert!(asked > 15);
    for panel in dashboard["panels"].as_array().expect("panels") {
        let uid = &panel["datasource"]["uid"];
        assert_eq!(
            uid, "${datasource}",
            "panel {} has its own data source",
            panel["title"]
        );
    }
}
