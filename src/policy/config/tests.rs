use super::*;

fn error(text: &str) -> String {
    Policy::parse(text, "p.toml")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn an_empty_file_is_the_default_policy() {
    let policy = Policy::parse("", "p.toml").expect("empty is fine");
    assert_eq!(policy.brake.min_headroom, Threshold::Percent(10.0));
    assert_eq!(policy.escalation.after_brakes, 10);
    assert_eq!(policy.restart.max_crashes, 5);
    assert!(policy.budget.is_none());
}

#[test]
fn the_example_file_parses_with_its_values() {
    let text = include_str!("../../../fixtures/policy/example.toml");
    let policy = Policy::parse(text, "example.toml").expect("the example parses");
    assert_eq!(policy.budget, Some(24 << 30));
    assert_eq!(policy.restart.max_worker_pss, Some(12 << 30));
    assert_eq!(policy.containment.ionice, Some(IoPriority::BestEffort(7)));
}

#[test]
fn values_set_after_parsing_are_checked_the_same_way() {
    let mut policy = Policy {
        budget: Some(8 << 30),
        ..Policy::default()
    };
    policy.restart.max_worker_pss = Some(9 << 30);
    let conflict = policy.check().expect_err("above the budget");
    assert_eq!(conflict.keys, ["restart.max_worker_pss", "budget"]);
    policy.restart.max_worker_pss = Some(4 << 30);
    assert_eq!(policy.check(), Ok(()));
}

#[test]
fn errors_name_the_line_and_the_problem() {
    let unknown = error("[brake]\nmin_headroom = \"10%\"\nmax_pss = \"1GiB\"\n");
    assert!(
        unknown.starts_with("p.toml:3: unknown field `max_pss`"),
        "{unknown}"
    );
    let unit = error("[restart]\n\nmax_worker_pss = \"12 GB/s\"\n");
    assert!(unit.starts_with("p.toml:3: unknown size unit"), "{unit}");
    let bare = error("budget = \"24\"\n");
    assert!(bare.contains("p.toml:1: \"24\" has no unit"), "{bare}");
    let percent = error("[brake]\nmin_headroom = \"150%\"\n");
    assert!(
        percent.starts_with("p.toml:2:") && percent.contains("below 100"),
        "{percent}"
    );
    let psi = error("[brake]\nmax_psi_full = 140.0\n");
    assert!(
        psi.starts_with("p.toml:2: 140 is not a possible pressure"),
        "{psi}"
    );
    let order = error("[brake]\nmin_headroom = \"5%\"\n[restart]\nemergency_floor = \"8%\"\n");
    assert!(
        order.starts_with("p.toml:4: restart.emergency_floor (8%)"),
        "{order}"
    );
    let never = error("budget = \"8GiB\"\n[brake]\nmin_headroom = \"9GiB\"\n");
    assert!(
        never.starts_with("p.toml:3: brake.min_headroom is not below"),
        "{never}"
    );
    let zero = error("[restart]\nevery = \"0s\"\n");
    assert!(
        zero.starts_with("p.toml:2:") && zero.contains("above zero"),
        "{zero}"
    );
    let nice = error("[containment]\nnice = 40\n");
    assert!(
        nice.starts_with("p.toml:2: 40 is not a possible nice level"),
        "{nice}"
    );
    // A default in conflict with a value written: the line of the value written.
    let default = error("# the brake\n\n[brake]\nmin_headroom = \"3%\"\n");
    assert!(
        default.starts_with("p.toml:4: restart.emergency_floor (5%)"),
        "{default}"
    );
    let dotted = error("restart.backoff = \"10m\"\nrestart.backoff_max = \"1m\"\n");
    assert!(
        dotted.starts_with("p.toml:1: restart.backoff is longer"),
        "{dotted}"
    );
    let syntax = error("[restart\n");
    assert!(syntax.starts_with("p.toml:1:"), "{syntax}");
    assert!(!syntax.contains('\n'), "one line: {syntax}");
}

#[test]
fn each_worker_gets_its_share_of_the_budget_with_a_soft_line_below_it() {
    let shared = Policy::parse("budget = \"1200MiB\"\n", "p.toml").expect("valid");
    let limits = shared.worker_limits(4);
    assert_eq!(limits.max, Some(300 << 20));
    assert_eq!(limits.high, Some((300 << 20) / 10 * 9));
    let set = Policy::parse(
        "budget = \"1200MiB\"\n[containment]\nmemory_max = \"500MiB\"\nmemory_high = \"400MiB\"\n",
        "p.toml",
    )
    .expect("valid");
    let limits = set.worker_limits(4);
    assert_eq!(
        (limits.max, limits.high),
        (Some(500 << 20), Some(400 << 20))
    );
    assert_eq!(Policy::default().worker_limits(4), WorkerLimits::default());
    let mut above = set.clone();
    above.containment.memory_high = Some(600 << 20);
    let conflict = above.check().expect_err("high above max");
    assert_eq!(
        conflict.keys,
        ["containment.memory_high", "containment.memory_max"]
    );
}
