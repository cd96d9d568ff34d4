//! One soak, start to end, beside the harness that records it: the workers under the policy
//! (started again whenever they finish), live progress on stderr, a report checkpoint every
//! interval (published off the box), then the final report, the verdict and its publication.
//! The command only turns flags into this plan and prints the verdict.

use super::checkpoint::{checkpoint, report, say_published, write_verdict};
use super::progress::show_progress;
use super::publish::{publish, Publisher};
use super::{judge, kernel_kills, SoakVerdict};
use crate::analysis::gates::GrowthBudget;
use crate::analysis::{self, Options};
use crate::console::say;
use crate::harness::{record, HarnessConfig, Workload};
use crate::live::SharedStatus;
use crate::recording::Recording;
use crate::stop_token::StopToken;
use crate::supervisor::StopRequest;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a soak asks beyond the harness's config.
pub struct Plan {
    pub workload: Workload,
    pub total: Duration,
    pub checkpoint_every: Duration,
    /// The growth the verdict allows (a leak fails without one).
    pub budget: Option<GrowthBudget>,
    pub publishers: Vec<Publisher>,
    /// Where the sealed run joins the fleet layout (`--publish DIR`).
    pub fleet: Option<PathBuf>,
}

/// Runs the soak and gives its verdict; `recorded` runs once the recording has closed (the
/// metrics server's last write), before the final report.
pub fn run(
    config: HarnessConfig,
    plan: Plan,
    live: SharedStatus,
    stop: Arc<StopRequest>,
    recorded: impl FnOnce(),
) -> anyhow::Result<SoakVerdict> {
    let run_dir = config.run_dir.clone();
    let done = StopToken::new();
    let progress = {
        let (live, done, total) = (live.clone(), done.clone(), plan.total);
        std::thread::spawn(move || show_progress(&live, &done, total))
    };
    let checkpoints = {
        let (dir, done, every) = (run_dir.clone(), done.clone(), plan.checkpoint_every);
        let (publishers, live, budget) = (plan.publishers.clone(), live.clone(), plan.budget);
        std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !done.sleep_until_or_stop(next) {
                checkpoint(&dir, &live, budget, &publishers);
                next += every;
            }
        })
    };
    let summary = record(config, plan.workload, stop);
    done.stop();
    let _ = progress.join();
    let _ = checkpoints.join();
    recorded();
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
    let verdict = judge(
        &findings,
        plan.budget,
        &summary.failed_workers,
        &kernel_kills(&recording),
        &counters,
        elapsed,
    );
    write_verdict(&run_dir.join("verdict.json"), &verdict)?;
    for publisher in &plan.publishers {
        say_published(publish(&run_dir, publisher));
    }
    // The sealed run joins the fleet layout in the same directory (`memwarden fleet DIR`).
    if let Some(dest) = &plan.fleet {
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
    Ok(verdict)
}
