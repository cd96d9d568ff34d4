//! `--trace-python` on real Python workers (this machine's `python3`): the line that leaks is
//! named with its code, its rate and its parameter; memory the tracer cannot see is called
//! native; the worker's own `sitecustomize` still runs; a tracer that fails leaves the worker
//! running; a worker that is not Python gets a note. And one real Optuna study, from PyPI.

use crate::util::{analyze, memwarden, report, run_dir, tempdir, MIB};
use memwarden::analysis::{Diagnosis, WorkerFinding};
use std::path::Path;
use std::process::Output;

const LEAKS: &str = "fixtures/python/leaks.py";

fn traced_run(dir: &Path, command: &[&str], env: &[(&str, &str)]) -> Output {
    let mut run = memwarden();
    run.args(["run", "--trace-python", "--out"])
        .arg(dir)
        .arg("--")
        .args(command)
        .envs(env.iter().copied());
    let out = run.output().expect("memwarden runs");
    assert!(
        out.status.success(),
        "{:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The 1-based line of the fixture that holds `code`.
fn line_of(code: &str) -> u32 {
    let text = std::fs::read_to_string(LEAKS).expect("the fixture is readable");
    let index = text
        .lines()
        .position(|l| l.contains(code))
        .expect("the fixture has the line");
    index as u32 + 1
}

fn leaks(dir: &Path, mode: &str) -> WorkerFinding {
    traced_run(dir, &["python3", LEAKS, mode, "--mib", "2"], &[]);
    analyze(dir).workers.remove(0)
}

/// The worker's top site is `code`'s line, at `mib` per trial ± 15%, with its source text.
fn assert_names_line(w: &WorkerFinding, code: &str, mib: f64) {
    let site = w.sites.first().unwrap_or_else(|| panic!("no site: {w:#?}"));
    assert!(site.file.ends_with(LEAKS), "{site:#?}");
    assert_eq!(site.line, line_of(code), "{site:#?}");
    assert!(
        site.code.as_deref().is_some_and(|c| c.contains(code)),
        "{site:#?}"
    );
    let rate = site.per_trial.bytes / MIB;
    assert!((rate - mib).abs() <= 0.15 * mib, "{rate:.2} MiB/trial");
}

#[test]
fn a_module_level_list_is_named_by_its_line_at_its_rate() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let w = leaks(&dir, "list");
    assert_names_line(&w, "KEPT.append(bytearray(size))", 2.0);
    let tracing = w.tracing.expect("tracing summary");
    let explained = tracing.explained.expect("a measured rate");
    assert!((0.85..1.15).contains(&explained), "{explained}");
    // The text and the report both name the line.
    let text = memwarden()
        .arg("analyze")
        .arg(&dir)
        .output()
        .expect("analyze runs");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("leaks.py:{}", line_of("KEPT.append"))),
        "{text}"
    );
    let markdown = report(&dir, &temp.path().join("report"), &[]);
    assert!(
        markdown.contains("The line that keeps it:")
            && markdown.contains("`KEPT.append(bytearray(size))`"),
        "{markdown}"
    );
    // The sites are a tidy table too.
    let sites = memwarden()
        .args(["export", "--table", "sites"])
        .arg(&dir)
        .output()
        .expect("export runs");
    let csv = String::from_utf8_lossy(&sites.stdout);
    assert!(
        csv.starts_with("t,t_ns,worker,pid,trial,epoch,memory,file,line,bytes"),
        "{csv}"
    );
    assert!(csv.lines().count() > 10, "{csv}");
}

#[test]
fn a_cache_keyed_by_a_parameter_names_the_line_and_the_value() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    // Enough trials that the growth of the cache=true ones stands out from the others.
    let out = traced_run(
        &dir,
        &["python3", LEAKS, "cache", "--mib", "2", "--trials", "16"],
        &[],
    );
    let w = analyze(&dir).workers.remove(0);
    // 2 MiB in every other trial.
    assert_names_line(&w, "CACHE[number] = bytearray(size)", 1.0);
    assert_eq!(w.sites[0].parameter.as_deref(), Some("cache=true"));
    // The run's own verdict names the line and the value.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = format!(
        "leaks.py:{} `CACHE[number] = bytearray(size)`, with cache=true\n",
        line_of("CACHE[number] = bytearray(size)")
    );
    assert!(
        stderr.contains("memwarden:   worker 0: LEAK in ") && stderr.contains(&said),
        "{stderr}"
    );
}

#[test]
fn closures_and_class_attributes_are_named_by_the_line_that_allocates() {
    let temp = tempdir();
    let closure = leaks(&run_dir(&temp), "closure");
    assert_names_line(&closure, "kept.append(bytearray(size))", 2.0);
    let other = tempdir();
    let attribute = leaks(&run_dir(&other), "attribute");
    assert_names_line(&attribute, "Model.history.append(bytearray(size))", 2.0);
}

#[test]
fn what_a_library_builds_is_named_by_the_workers_call() {
    let temp = tempdir();
    let w = leaks(&run_dir(&temp), "library");
    assert_names_line(&w, "KEPT.append(json.loads(payload))", 2.0);
    let via = w.sites[0].via.as_deref().unwrap_or_default();
    assert!(via.contains("json"), "{:#?}", w.sites[0]);
}

#[test]
fn replay_traces_by_default_and_names_the_line() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let mut run = memwarden();
    run.args(["run", "--out"]).arg(&dir).args([
        "--",
        "python3",
        LEAKS,
        "list",
        "--trials",
        "4",
        "--trial-s",
        "0.1",
    ]);
    assert!(run.status().expect("memwarden runs").success());
    let out = memwarden()
        .arg("replay")
        .arg(&dir)
        .args([
            "--trial",
            "2",
            "--repeat",
            "8",
            "--env",
            "MARK=seen",
            "--out",
        ])
        .arg(temp.path().join("replay"))
        // Through a shell that execs, as people start workers; --env reaches the worker.
        .args([
            "--",
            "sh",
            "-c",
            &format!("echo mark=$MARK; exec python3 {LEAKS} list --trial-s 0.2"),
        ])
        .output()
        .expect("replay runs");
    let log = std::fs::read_to_string(temp.path().join("replay/logs/worker-0.log")).expect("log");
    assert!(log.contains("mark=seen"), "{log}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = format!(
        "leaks.py:{} `KEPT.append(bytearray(size))`",
        line_of("KEPT.append")
    );
    assert!(
        stdout.contains("LEAKS") && stdout.contains(&line),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn copy_on_read_after_fork_is_named_with_the_growth_split_over_the_children() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    traced_run(&dir, &["python3", "fixtures/python/fork_readers.py"], &[]);
    let w = analyze(&dir).workers.remove(0);
    let found = w.diagnoses.iter().find_map(|d| match d {
        Diagnosis::CopyOnRead {
            processes,
            per_process_bytes_per_trial,
            children_share,
            ..
        } => Some((*processes, *per_process_bytes_per_trial, *children_share)),
        _ => None,
    });
    let (processes, each, share) = found.unwrap_or_else(|| panic!("no diagnosis: {w:#?}"));
    assert_eq!(processes, 3, "three forked readers");
    assert!(each > 1.0 * MIB, "{each}");
    assert!(share > 0.8, "{share}");
    assert!(
        w.process.is_none(),
        "no one process is blamed: {:?}",
        w.process
    );
}

#[test]
fn forked_children_report_at_their_parents_boundaries_and_name_their_line() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let script = "fixtures/python/fork_readers.py";
    traced_run(
        &dir,
        &[
            "python3",
            script,
            "--objects",
            "1000",
            "--child-keep-kib",
            "1024",
        ],
        &[],
    );
    let w = analyze(&dir).workers.remove(0);
    let site = w.sites.first().unwrap_or_else(|| panic!("no site: {w:#?}"));
    assert!(site.file.ends_with(script), "{site:#?}");
    assert!(
        site.code
            .as_deref()
            .is_some_and(|c| c.starts_with("kept.append(")),
        "{site:#?}"
    );
    assert_eq!(site.processes, 3, "one per forked reader: {site:#?}");
    let rate = site.per_trial.bytes / MIB;
    assert!(
        (rate - 3.0).abs() <= 0.45,
        "{rate:.2} MiB/trial over 3 readers"
    );
}

#[test]
fn memory_freed_but_not_given_back_is_allocator_retention() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    traced_run(
        &dir,
        &["python3", LEAKS, "fragment", "--mib", "1", "--trials", "10"],
        &[],
    );
    let w = analyze(&dir).workers.remove(0);
    assert!(
        w.diagnoses
            .iter()
            .any(|d| matches!(d, Diagnosis::AllocatorRetention { .. })),
        "{w:#?}"
    );
    assert!(
        !w.hints
            .iter()
            .any(|h| h.contains("native memory") || h.contains("look for a cache")),
        "{:#?}",
        w.hints
    );
}

#[test]
fn a_gpu_tensor_leak_is_told_from_allocator_caching() {
    let stub = std::fs::canonicalize("fixtures/python/stub_torch").expect("the stub");
    let stub = stub.display().to_string();
    let mut found = Vec::new();
    for mode in ["tensors", "cache"] {
        let temp = tempdir();
        let dir = run_dir(&temp);
        traced_run(
            &dir,
            &["python3", "fixtures/python/torch_worker.py", mode],
            &[("PYTHONPATH", stub.as_str())],
        );
        let w = analyze(&dir).workers.remove(0);
        found.push((mode, w.diagnoses));
    }
    assert!(
        matches!(&found[0].1[..], [Diagnosis::GpuTensors { allocated_bytes_per_trial, .. }] if (allocated_bytes_per_trial / MIB - 8.0).abs() < 0.5),
        "{found:#?}"
    );
    assert!(
        matches!(&found[1].1[..], [Diagnosis::GpuAllocatorCache { .. }]),
        "{found:#?}"
    );
}

#[test]
fn memory_the_tracer_cannot_see_is_called_native_not_a_wrong_line() {
    let temp = tempdir();
    let w = leaks(&run_dir(&temp), "native");
    let measured = w
        .kind_finding(w.kind)
        .and_then(|k| k.per_trial)
        .expect("a rate");
    assert!(measured.bytes > 1.5 * MIB, "{measured:?}");
    let named: f64 = w.sites.iter().map(|s| s.per_trial.bytes).sum();
    assert!(named < 0.1 * measured.bytes, "{:#?}", w.sites);
    assert!(
        w.hints.iter().any(|h| h.contains("native memory")),
        "{:#?}",
        w.hints
    );
}

#[test]
fn the_environments_own_sitecustomize_still_runs() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let site = temp.path().join("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    let mark = temp.path().join("ran");
    std::fs::write(
        site.join("sitecustomize.py"),
        format!("open({:?}, 'w').write('yes')\n", mark.display().to_string()),
    )
    .expect("write");
    let pythonpath = site.display().to_string();
    traced_run(
        &dir,
        &["python3", LEAKS, "list", "--trials", "6"],
        &[("PYTHONPATH", pythonpath.as_str())],
    );
    assert_eq!(std::fs::read_to_string(&mark).ok().as_deref(), Some("yes"));
    let w = analyze(&dir).workers.remove(0);
    assert!(!w.sites.is_empty(), "traced too: {w:#?}");
}

#[test]
fn a_tracer_that_fails_leaves_the_worker_running_and_says_so() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    // Not a number: the tracer's start raises inside the worker.
    traced_run(
        &dir,
        &["python3", LEAKS, "list", "--trials", "6"],
        &[("MEMWARDEN_TRACE_FRAMES", "many")],
    );
    let findings = analyze(&dir);
    assert_eq!(findings.run.trials, 6, "every trial ran");
    let events = memwarden()
        .args(["export", "--table", "events"])
        .arg(&dir)
        .output()
        .expect("export runs");
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("the Python tracer in pid") && events.contains("ValueError"),
        "{events}"
    );
}

#[test]
fn a_worker_that_is_not_python_gets_a_note() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let exe = crate::util::exe();
    let out = traced_run(
        &dir,
        &[
            &exe,
            "fixture-worker",
            "--trials",
            "2",
            "--trial-ms",
            "50",
            "--gap-ms",
            "20",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("worker 0: no Python process started the allocation tracer"),
        "{stderr}"
    );
    // And the report says it too: a run asked to name lines that names none must say why.
    let notes = analyze(&dir).notes;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("worker 0: no Python process started the allocation tracer")),
        "{notes:#?}"
    );
}

#[test]
fn a_real_optuna_study_without_markers_gets_its_line_rate_and_parameter() {
    let python = crate::util::venv_python();
    let temp = tempdir();
    let dir = run_dir(&temp);
    let python = python.display().to_string();
    traced_run(
        &dir,
        &[&python, "fixtures/python/optuna_study.py", "24"],
        &[],
    );
    let findings = analyze(&dir);
    assert_eq!(
        findings.run.trials, 24,
        "trials from Optuna's own log lines"
    );
    // Each trial's retained level is the tracer's own reading, said just before Optuna's line
    // (issue 36).
    let reads = &findings.boundary_reads[0];
    assert_eq!((reads.by_worker, reads.unknown), (24, 0), "{reads:?}");
    let w = &findings.workers[0];
    let site = w.sites.first().unwrap_or_else(|| panic!("no site: {w:#?}"));
    assert!(
        site.file.ends_with("fixtures/python/optuna_study.py"),
        "{site:#?}"
    );
    assert!(
        site.code
            .as_deref()
            .is_some_and(|c| c.contains("np.ones(1 << 20)")),
        "{site:#?}"
    );
    assert!(
        site.via.as_deref().is_some_and(|v| v.contains("numpy")),
        "{site:#?}"
    );
    assert_eq!(site.parameter.as_deref(), Some("cache_features=true"));
    let measured = w
        .kind_finding(w.kind)
        .and_then(|k| k.per_trial)
        .expect("a rate");
    let ratio = site.per_trial.bytes / measured.bytes;
    assert!(
        (0.85..=1.15).contains(&ratio),
        "site {:?} vs measured {measured:?}",
        site.per_trial
    );
    assert!(
        w.hints
            .iter()
            .any(|h| h.starts_with("the heap holds large blocks"))
            || w.hints.iter().all(|h| !h.contains("heap")),
        "{:#?}",
        w.hints
    );
}

#[test]
fn the_helper_packages_own_tests_pass_with_this_machines_python() {
    let out = std::process::Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "python/tests"])
        .env("PYTHONPATH", "python")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Ran 13 tests"));
}

#[test]
fn a_real_tpe_studys_own_growth_is_named_though_nothing_leaks() {
    // 1,000 trials of an objective that keeps nothing, under the default tracing budget: only
    // the study grows (its in-memory storage keeps every trial; TPE caches what it computed).
    // A traced TPE trial takes 15-23x as long here, so the tracer traces 2 of about every 170;
    // 500 trials gave 6 reports in 3 epochs one run in six, too few for the study's fit.
    let python = crate::util::venv_python().display().to_string();
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = traced_run(
        &dir,
        &[&python, "fixtures/python/trivial_study.py", "1000"],
        &[],
    );
    // The lines that end the run say it too.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("    study-side growth: the search framework's own lines keep"),
        "{stderr}"
    );
    let findings = analyze(&dir);
    assert_eq!(findings.run.trials, 1000);
    let w = &findings.workers[0];
    assert_ne!(w.verdict, memwarden::analysis::Verdict::Leak, "{w:#?}");
    let study = w
        .tracing
        .as_ref()
        .and_then(|t| t.study.as_ref())
        .unwrap_or_else(|| panic!("no study-side growth told: {:#?}", w.tracing));
    assert!(study.confidence >= 0.95, "{study:?}");
    assert!(
        study.lines.iter().any(|l| l.contains("optuna")),
        "{study:?}"
    );
    // The whole worker's growth bounds it: a few KiB per trial, as Optuna keeps its trials.
    let whole = study.measured_bytes.expect("the worker's own rate");
    assert!((1024.0..64.0 * 1024.0).contains(&whole), "{study:?}");
    let out = memwarden()
        .arg("analyze")
        .arg(&dir)
        .output()
        .expect("analyze runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("study-side growth: the search framework's own lines keep"),
        "{text}"
    );
}
