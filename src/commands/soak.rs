//! `memwarden soak`: workers for hours under the policy (started again whenever they finish),
//! live progress, a report checkpoint (published off the box) every `--checkpoint`, and a
//! pass/fail verdict at the end.

use super::record::{harness_config, load_policy};
use super::{EXIT_FINDING, EXIT_OK};
use crate::analysis::{self, Options};
use crate::cli::SoakArgs;
use crate::console::say;
use crate::harness::{record, Workload};
use crate::live::{LiveStatus, SharedStatus};
use crate::policy::Policy;
use crate::recording::Recording;
use crate::soak::checkpoint::{checkpoint, report, say_published, write_verdict};
use crate::soak::progress::show_progress;
use crate::soak::publish::{publish, Publisher};
use crate::soak::{judge, kernel_kills, verdict_text};
use crate::supervisor::stop_on_signals;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn soak(args: SoakArgs) -> anyhow::Result<u8> {
    let Some(total) = args.record.duration else {
        anyhow::bail!("soak needs --duration (e.g. 2m in CI, 12h before a rollout)");
    };
    let (mut policy, text) =
        load_policy(&args.policy)?.unwrap_or_else(|| (Policy::default(), String::new()));
    policy.restart.when_finished = true;
    if let Some(grace) = args.grace {
        policy.restart.grace = grace;
    }
    let mut config = harness_config(&args.record, policy.restart.grace);
    let mut publishers = Vec::new();
    if let Some(dir) = &args.publish {
        // Checkpoints copy the run directory into DIR/<run name>/, beside the fleet layout's
        // tables (DIR/samples/...): a run named like a table would land inside one.
        let name = config
            .run_dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        if crate::fleet::layout::TABLES.contains(&name.as_ref()) {
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
    let exporter = super::record::start_metrics(&args.metrics, &live)?;
    let run_dir = config.run_dir.clone();
    eprintln!(
        "memwarden: soak: {} worker(s) for {} into {} (checkpoint every {})",
        args.workers,
        humantime::format_duration(total),
        run_dir.display(),
        humantime::format_duration(args.checkpoint)
    );
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let (live, done) = (live.clone(), done.clone());
        std::thread::spawn(move || show_progress(&live, &done, total))
    };
    let checkpoints = {
        let (dir, done, every) = (run_dir.clone(), done.clone(), args.checkpoint);
        let publishers = publishers.clone();
        let live = live.clone();
        let budget = args.max_growth;
        std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !done.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    checkpoint(&dir, &live, budget, &publishers);
                    next += every;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let workload = Workload::Spawn {
        argv: args.command.clone(),
        workers: args.workers,
    };
    let summary = record(config, workload, stop_on_signals()?);
    done.store(true, Ordering::Relaxed);
    let _ = progress.join();
    let _ = checkpoints.join();
    if let Some(exporter) = exporter {
        exporter.finish();
    }
    let summary = summary?;
    let recording = Recording::open(&run_dir)?;
    // The report's own analysis gives the verdict; only where the report cannot be written
    // (its plots, say) is the recording analysed on its own.
    let findings = match report(&run_dir, None) {
        Ok((_, findings)) => findings,
        Err(error) => {
            eprintln!(
                "memwarden: warning: the final report failed: {}",
                crate::exit::describe(&error)
            );
            analysis::analyze(&recording, &Options::default())?
        }
    };
    let counters = summary.policy.clone().unwrap_or_default();
    let elapsed = live.lock().map_or(0, |s| s.elapsed_ns) as f64 / 1e9;
    let kills = kernel_kills(&recording);
    let verdict = judge(
        &findings,
        args.max_growth,
        &summary.failed_workers,
        &kills,
        &counters,
        elapsed,
    );
    write_verdict(&run_dir.join("verdict.json"), &verdict)?;
    for publisher in &publishers {
        say_published(publish(&run_dir, publisher));
    }
    // The sealed run joins the fleet layout in the same directory (`memwarden fleet DIR`).
    if let Some(dest) = &args.publish {
        match crate::fleet::publish(&run_dir, dest) {
            Ok(published) => say(format!(
                "published to the fleet layout: {}",
                published.run_path.display()
            )),
            Err(error) => say(format!(
                "warning: not published to the fleet layout: {error}"
            )),
        }
    }
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
