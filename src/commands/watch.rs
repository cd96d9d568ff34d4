//! `memwarden watch RUN_DIR`: the live view of a run recorded by another memwarden, until it
//! ends; then how it ended and its verdict. Only reads the recording.

use super::EXIT_OK;
use crate::cli::WatchArgs;
use crate::console::{say, View};
use crate::live::{follow, Followed, LiveStatus, WorkerState};
use crate::recording::{read_manifest, Recording, RunStatus};
use crate::supervisor::Exit;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub fn watch(args: WatchArgs) -> anyhow::Result<u8> {
    let dir = &args.run_dir;
    // The manifest alone first: a live run is followed from its files (its events are read
    // once, by the tail), a finished one read whole.
    let manifest = read_manifest(dir)?;
    manifest.check_version(dir)?;
    let (followed, status) = if manifest.still_recording() {
        say(format!(
            "watching {} (Ctrl-C stops watching; the run goes on)",
            dir.display()
        ));
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            signal_hook::flag::register(signal, stop.clone())?;
        }
        let view = View::start();
        let followed = follow(dir, view.as_ref(), args.every, &stop);
        drop(view);
        followed
    } else {
        let recording = Recording::open(dir)?;
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
    crate::attended::conclude(dir, args.no_report || kept, &crashes(&status));
    if kept {
        say(format!("report: {} (written before)", report.display()));
    }
    Ok(EXIT_OK)
}

/// Workers whose last exit memwarden did not cause, in the words `run` uses.
fn crashes(status: &LiveStatus) -> Vec<(u32, String)> {
    status
        .workers
        .iter()
        .filter_map(|(worker, w)| {
            let exit = match w.state {
                WorkerState::Exited(code) => Exit {
                    code: Some(code),
                    signal: None,
                },
                WorkerState::Killed(signal) => Exit {
                    code: None,
                    signal: Some(signal),
                },
                _ => return None,
            };
            Some((*worker, crate::attended::exit_words(&exit)))
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
