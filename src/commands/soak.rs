//! `memwarden soak`: its flags turned into a soak's plan (`soak::session` runs it), and the
//! verdict printed with its exit code.

use super::{EXIT_FINDING, EXIT_OK};
use crate::cli::SoakArgs;
use crate::harness::Workload;
use crate::live::{LiveStatus, SharedStatus};
use crate::policy::Policy;
use crate::soak::publish::Publisher;
use crate::soak::session::{self, Plan};
use crate::soak::verdict_text;
use crate::supervisor::stop_on_signals;
use std::sync::{Arc, Mutex};

pub fn soak(args: SoakArgs) -> anyhow::Result<u8> {
    let Some(total) = args.record.duration else {
        anyhow::bail!("soak needs --duration (e.g. 2m in CI, 12h before a rollout)");
    };
    let (mut policy, text) = args
        .policy
        .load()?
        .unwrap_or_else(|| (Policy::default(), String::new()));
    policy.restart.when_finished = true;
    if let Some(grace) = args.grace {
        policy.restart.grace = grace;
    }
    let mut config = args.record.harness_config(policy.restart.grace);
    let mut publishers = Vec::new();
    if let Some(dir) = &args.publish {
        // Checkpoints copy the run directory into DIR/<run name>/, beside the fleet layout's
        // tables (DIR/samples/...): a run named like a table would land inside one.
        let name = config
            .run_dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        if crate::recording::layout::TABLES.contains(&name.as_ref()) {
            anyhow::bail!(
                "--publish: a run directory named {name} would collide with the fleet layout's {name} table; choose another --out"
            );
        }
        publishers.push(Publisher::Dir(dir.clone()));
    }
    if let Some(command) = &args.publish_cmd {
        publishers.push(Publisher::Command(command.0.clone()));
    }
    config.trace_python = args.trace_python;
    config.policy = Some(policy);
    config.policy_text = Some(text);
    config.mode = "soak".into();
    let live: SharedStatus = Arc::new(Mutex::new(LiveStatus::default()));
    config.live = Some(live.clone());
    let exporter = crate::attended::start_metrics(&args.metrics.options(), &live)?;
    let run_dir = config.run_dir.clone();
    eprintln!(
        "memwarden: soak: {} worker(s) for {} into {} (checkpoint every {})",
        args.workers,
        humantime::format_duration(total),
        run_dir.display(),
        humantime::format_duration(args.checkpoint)
    );
    let plan = Plan {
        workload: Workload::Spawn {
            argv: args.command.clone(),
            workers: args.workers,
        },
        total,
        checkpoint_every: args.checkpoint,
        budget: args.max_growth,
        publishers,
        fleet: args.publish.clone(),
    };
    let verdict = session::run(config, plan, live, stop_on_signals()?, || {
        if let Some(exporter) = exporter {
            exporter.finish();
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", verdict_text(&verdict));
        println!("The report: {}", run_dir.join("report/report.md").display());
    }
    Ok(if verdict.passed() {
        EXIT_OK
    } else {
        EXIT_FINDING
    })
}
