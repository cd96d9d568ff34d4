//! The verdict on the fixture recordings, with synthetic exits and policy counters.

use super::*;
use crate::analysis::gates::GrowthBudget;
use crate::analysis::{analyze, Findings, Options};
use crate::policy::Counters;
use crate::recording::Recording;
use crate::supervisor::Exit;

fn findings(name: &str) -> Findings {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/runs")
        .join(name);
    analyze(
        &Recording::open(&dir).expect("fixture opens"),
        &Options::default(),
    )
    .expect("analyzes")
}

#[test]
fn a_leak_fails_and_names_the_worker() {
    let verdict = judge(
        &findings("leak"),
        None,
        &[],
        &[],
        &Counters::default(),
        60.0,
    );
    assert!(!verdict.passed());
    assert_eq!(verdict.leaking_workers, [0]);
    assert!(
        verdict.reasons[0].starts_with("worker 0 leaks anonymous memory, +"),
        "{:?}",
        verdict.reasons
    );
}

#[test]
fn a_plateau_passes_unless_something_else_went_wrong() {
    let plateau = findings("plateau");
    assert!(judge(&plateau, None, &[], &[], &Counters::default(), 60.0).passed());
    let counters = Counters {
        brake_engagements: 2,
        brakes: 7,
        ..Counters::default()
    };
    let killed = Exit {
        code: None,
        signal: Some(9),
    };
    let crashed = Exit {
        code: Some(3),
        signal: None,
    };
    let oom = ["the kernel's OOM killer killed pid 7 (python) of worker 0".to_string()];
    let failed = [(1, killed), (0, crashed)];
    let verdict = judge(&plateau, None, &failed, &oom, &counters, 60.0);
    assert_eq!(
        verdict.reasons,
        [
            "the kernel's OOM killer killed pid 7 (python) of worker 0",
            "worker 1 was killed by SIGKILL, not by memwarden (the kernel's OOM killer?)",
            "worker 0 exited with code 3",
            "the brake engaged 2 time(s) and held back 7 trial(s): memory ran short",
        ]
    );
}

#[test]
fn a_budget_tolerates_growth_under_it() {
    let leak = findings("leak");
    let generous: GrowthBudget = "1GiB/trial".parse().expect("budget");
    assert!(judge(&leak, Some(generous), &[], &[], &Counters::default(), 60.0).passed());
    let strict: GrowthBudget = "1MiB/trial".parse().expect("budget");
    let verdict = judge(&leak, Some(strict), &[], &[], &Counters::default(), 60.0);
    assert!(
        verdict.reasons[0].contains("(over the budget 1.0 MiB/trial)"),
        "{:?}",
        verdict.reasons
    );
}

#[test]
fn only_kernel_kills_of_the_runs_processes_after_its_start_count() {
    use crate::report::{KernelTime, OomKill};
    let kill = |pid: i32, wall_s: u64| OomKill {
        time: KernelTime::Wall(wall_s * 1_000_000_000),
        pid,
        name: "python".into(),
        anon_rss_bytes: None,
        cgroup: false,
    };
    let pids = [(41, 0u32), (42, 1)].into();
    let kills = [kill(41, 90), kill(42, 110), kill(43, 120)];
    let mut unplaced = kill(42, 0);
    unplaced.time = KernelTime::SinceBoot(5.0);
    let found = oom_kills_of_run(
        &[kills.as_slice(), &[unplaced]].concat(),
        &pids,
        100_000_000_000,
    );
    assert_eq!(
        found,
        ["the kernel's OOM killer killed pid 42 (python) of worker 1"]
    );
}

#[test]
fn a_sigkill_the_cgroup_counted_is_the_kernels_oom_kill_with_the_limit_and_memory() {
    let mut plateau = findings("plateau");
    let killed = Exit {
        code: None,
        signal: Some(9),
    };
    let reasons = |findings: &Findings| {
        judge(
            findings,
            None,
            &[(0, killed)],
            &[],
            &Counters::default(),
            60.0,
        )
        .reasons
    };
    let asked = reasons(&plateau);
    assert_eq!(
        asked,
        ["worker 0 was killed by SIGKILL, not by memwarden (the kernel's OOM killer?)"]
    );
    plateau.oom_kills = Some(crate::analysis::oom::OomKills {
        cgroup: "cgroup v2 /kubepods/pod1".into(),
        limit_bytes: Some(1536.0 * 1024.0 * 1024.0),
        counted: 1,
        kills: vec![crate::analysis::oom::OomKill {
            t_ns: 5_000_000_000,
            worker: Some(0),
            pid: Some(4242),
            main: true,
            memory_bytes: Some(700.0 * 1024.0 * 1024.0),
            memory_kind: Some(crate::analysis::Kind::Pss),
            own_limit_bytes: None,
        }],
    });
    let known = reasons(&plateau);
    assert_eq!(
        known,
        ["worker 0 was killed by the kernel's OOM killer (cgroup v2 /kubepods/pod1, limit 1.50 GiB); it held 700.0 MiB (PSS) at its last sample"]
    );
}
