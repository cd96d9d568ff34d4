//! `memwarden watch RUN_DIR`: the live view of a run recorded by another memwarden, until it
//! ends; then how it ended and its verdict. Only reads the recording.

use super::EXIT_OK;
use crate::cli::WatchArgs;
use crate::console::{say, View};
use crate::live::{follow, Followed, LiveStatus, WorkerState};
use crate::recording::{Recording, RunStatus};
use crate::supervisor::StopRequest;
use std::sync::Arc;

pub fn watch(args: WatchArgs) -> anyhow::Result<u8> {
    let dir = &args.run_dir;
    let recording = Recording::open(dir)?;
    recording.manifest.check_version(dir)?;
    let (followed, status) = if recording.manifest.still_recording() {
        drop(recording);
        say(format!(
            "watching {} (Ctrl-C stops watching; the run goes on)",
            dir.display()
        ));
        let stop = Arc::new(StopRequest::default());
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            let stop = stop.clone();
            // SAFETY: the handler only bumps an atomic counter, which is async-signal-safe.
            unsafe { signal_hook::low_level::register(signal, move || stop.request()) }?;
        }
        let view = View::start();
        let followed = follow(dir, view.as_ref(), args.every, &stop);
        drop(view);
        followed
    } else {
        let mut status = LiveStatus::default();
        for event in &recording.events {
            status.event(event);
        }
        let followed = match recording.manifest.status {
            RunStatus::Finished => {
                Followed::Finished(recording.manifest.end_reason.clone().unwrap_or_default())
            }
            RunStatus::Running => Followed::EndedAbruptly,
        };
        (followed, status)
    };
    match &followed {
        Followed::Left => {
            say("stopped watching; the run goes on");
            return Ok(EXIT_OK);
        }
        Followed::Finished(reason) => say(format!("the run has finished: {reason}")),
        Followed::EndedAbruptly => say(
            "the recording ended abruptly: its manifest still says running, but the memwarden that wrote it is gone (a crash, a SIGKILL, a power loss); what it recorded until then follows",
        ),
    }
    wait_for_its_end(dir);
    let report = dir.join("report").join("report.md");
    let kept = report.exists();
    super::record::conclude(dir, args.no_report || kept, &crashes(&status));
    if kept {
        say(format!("report: {} (written before)", report.display()));
    }
    Ok(EXIT_OK)
}

/// Workers whose last exit memwarden did not cause, in words.
fn crashes(status: &LiveStatus) -> Vec<(u32, String)> {
    status
        .workers
        .iter()
        .filter_map(|(worker, w)| match w.state {
            WorkerState::Exited(code) => Some((*worker, format!("exited with code {code}"))),
            WorkerState::Killed(signal) => {
                Some((*worker, format!("was killed by signal {signal}")))
            }
            _ => None,
        })
        .collect()
}

/// A run that finished while watched: its memwarden writes the verdict and the report next;
/// waits for it (at most a minute) rather than writing a second report beside it.
fn wait_for_its_end(dir: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline
        && crate::recording::read_manifest(dir).is_ok_and(|m| m.harness_alive())
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
