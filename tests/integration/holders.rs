//! `--trace-python` on a real Optuna + PyTorch study (fixtures/python/torch_holders_study.py):
//! each way of keeping tensors named by its holder (the tensor census) and by the line that
//! allocated it (the native allocation sampler: PyTorch's CPU tensors never reach tracemalloc)
//! with its bytes per trial, the graph and the view as mechanisms, the parameter with its
//! bytes; all from the trials of the diagnoses the growth began (a process that imported torch
//! is traced only in those); and the fixed code, traced in every trial, names nothing.

use crate::util::{analyze, memwarden, tempdir, venv_python, MIB};
use memwarden::analysis::holders::{HolderFinding, Mechanism};
use memwarden::analysis::WorkerFinding;
use std::path::Path;

/// The study's findings for its one worker, and the run's notes. `every`: traced and censused
/// in every trial (`MEMWARDEN_DIAGNOSE=always`, and a budget that a census of 50-200 ms after a
/// trial of 0.3 s fits), not, as by default, only in the trials of the diagnoses that growth
/// begins.
fn study(dir: &Path, clean: bool, every: bool, trials: u32) -> (WorkerFinding, Vec<String>) {
    let mut command = memwarden();
    if every {
        command
            .env("MEMWARDEN_DIAGNOSE", "always")
            .env("MEMWARDEN_TRACE_BUDGET", "100");
    }
    let out = command
        .env("HOLDERS_CLEAN", if clean { "1" } else { "0" })
        .args(["run", "--quiet", "--trace-python", "--out"])
        .arg(dir)
        .arg("--")
        .arg(venv_python())
        .arg("fixtures/python/torch_holders_study.py")
        .arg(trials.to_string())
        .output()
        .expect("run runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut findings = analyze(dir);
    (findings.workers.remove(0), findings.notes)
}

/// The site whose source line holds `code`, and its bytes per trial in MiB.
fn line(worker: &WorkerFinding, code: &str) -> f64 {
    let site = worker
        .sites
        .iter()
        .find(|s| s.code.as_deref().is_some_and(|c| c.contains(code)))
        .unwrap_or_else(|| panic!("no line `{code}` in {:#?}", worker.sites));
    site.per_trial.bytes / MIB
}

fn within(what: &str, rate: f64, mib: f64) {
    assert!(
        (rate / mib - 1.0).abs() <= 0.15,
        "{what}: {rate:.2} MiB/trial, not {mib:.2}"
    );
}

fn holder<'a>(holders: &'a [HolderFinding], name: &str) -> &'a HolderFinding {
    holders
        .iter()
        .find(|h| h.holder == format!("torch_holders_study.{name}"))
        .unwrap_or_else(|| panic!("no holder {name} in {holders:#?}"))
}

fn near(h: &HolderFinding, mib: f64) {
    let rate = h.per_trial.bytes / MIB;
    assert!(
        (rate / mib - 1.0).abs() <= 0.15,
        "{} {rate:.2} MiB/trial, not {mib}",
        h.holder
    );
}

#[test]
fn in_its_diagnoses_each_way_of_keeping_tensors_is_named_by_its_line_and_holder() {
    let temp = tempdir();
    let (worker, notes) = study(temp.path(), false, false, 30);
    // Traced only in diagnoses, and the report says which trials those were.
    let diagnosed = notes
        .iter()
        .find_map(|n| n.strip_prefix("worker 0 (PyTorch) was traced in full (heap and native lines, tensor census) only in its diagnosed trials "))
        .unwrap_or_else(|| panic!("no diagnosis in {notes:#?}"));
    let traced = worker
        .tracing
        .as_ref()
        .expect("the tracer reported")
        .reports;
    assert!(
        (4..30).contains(&traced) && diagnosed.contains("anonymous memory grew"),
        "{traced} traced reports of 30 trials: {diagnosed}"
    );
    let holders = worker.holders.clone();
    let views = holder(&holders, "VIEWS");
    near(views, 4.0);
    assert_eq!(views.mechanism(), Some(Mechanism::View), "{views:?}");
    let losses = holder(&holders, "LOSSES");
    near(losses, 2.5);
    assert_eq!(losses.mechanism(), Some(Mechanism::Graph), "{losses:?}");
    let cache = holder(&holders, "CACHE");
    near(cache, 2.0);
    assert_eq!(
        (cache.container.as_str(), cache.mechanism()),
        ("dict", None)
    );
    // 8 MiB in the trials with keep_grads=True only (its parameter: the test below).
    let log = holder(&holders, "GRAD_LOG");
    let (words, _) = log.words();
    assert!(
        words.contains("GRAD_LOG (list, module-level): +"),
        "{words}"
    );
    // The lines, from the native sampler (its lines explain more of the growth than the
    // Python heap's, which never sees these tensors): the view's 4 MiB base, the graph's
    // 2 MiB activation, the cache's 2 MiB, and the log's 8 MiB in the trials that keep it,
    // as the census measured it.
    let tracing = worker.tracing.as_ref().expect("the tracer reported");
    assert!(tracing.native, "{tracing:?}");
    within("the view's base", line(&worker, "big = torch.ones"), 4.0);
    within(
        "the graph's activation",
        line(&worker, "MODEL(x).relu().sum()"),
        2.0,
    );
    within("the cache", line(&worker, "CACHE[trial.number]"), 2.0);
    // The log's line grows 8 MiB in the trials with keep_grads=True only, so its rate is 8 MiB
    // times the share of such trials among the diagnosed ones: named, and never more than the
    // 8 MiB a trial keeps.
    let logged = line(&worker, "GRAD_LOG.append");
    assert!(
        logged > 0.5 && logged <= 8.0 * 1.15,
        "the log's line: {logged:.2} MiB/trial"
    );
}

/// A holder's parameter takes three or more censused trials of each value (p < 0.01 over the
/// study's parameters): with every trial censused, 20 trials give it; a diagnosis of four
/// gives it only after several.
#[test]
fn censused_in_every_trial_the_holder_names_its_parameter_and_the_fix_names_none() {
    let temp = tempdir();
    let (worker, _) = study(&temp.path().join("leaks"), false, true, 20);
    // 8 MiB in the trials with keep_grads=True only: the parameter is named with its bytes.
    let log = holder(&worker.holders, "GRAD_LOG");
    assert_eq!(
        (log.container.as_str(), log.place.as_str()),
        ("list", "module-level")
    );
    let with = log.parameter.as_deref().unwrap_or("");
    let effect: f64 = with
        .strip_prefix("keep_grads=true (+")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{log:?}"));
    assert!((effect / 8.0 - 1.0).abs() <= 0.15, "{log:?}");
    // The fixed code: `.item()`, `.clone()`, no cache, no log (a default run would trace none
    // of it: its memory does not grow).
    let (clean, _) = study(&temp.path().join("clean"), true, true, 20);
    assert!(clean.holders.is_empty(), "{:#?}", clean.holders);
    let kept: Vec<_> = clean
        .sites
        .iter()
        .filter(|s| s.per_trial.bytes > 0.25 * MIB)
        .collect();
    assert!(kept.is_empty(), "{kept:#?}");
}
