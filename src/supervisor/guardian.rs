//! The guardian: a tiny helper process (`memwarden guardian`, hidden) that kills the workers'
//! process groups if the harness dies without stopping them.
//!
//! The parent-death signal reaches only the harness's direct children; a worker started through
//! a shell, or one whose own children ignore their parent's death, would leave orphans holding
//! memory. The harness tells the guardian each group to watch over a pipe. When that pipe reaches
//! end-of-file without a clean `done` (the kernel closes it when the harness dies, even by
//! SIGKILL), the guardian sends SIGKILL to every group still watched. It runs in its own process
//! group and ignores the usual stop signals, so whatever kills the harness does not kill it too.

use nix::sys::signal::{killpg, signal, SigHandler, Signal};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};

/// The harness's end.
pub struct Guardian {
    child: Child,
    pipe: ChildStdin,
}

impl Guardian {
    pub fn start() -> std::io::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("guardian")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let pipe = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("guardian has no stdin"))?;
        Ok(Self { child, pipe })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn watch(&mut self, pgid: i32) {
        let _ = writeln!(self.pipe, "watch {pgid}");
    }

    /// The group is empty: its id may be reused, so the guardian must forget it.
    pub fn release(&mut self, pgid: i32) {
        let _ = writeln!(self.pipe, "release {pgid}");
    }

    /// A clean end: the guardian exits without killing anything.
    pub fn finish(mut self) {
        let _ = writeln!(self.pipe, "done");
        drop(self.pipe);
        let _ = self.child.wait();
    }
}

/// The guardian process's main loop.
pub fn guard(input: impl BufRead) -> i32 {
    for stop in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(stop, SigHandler::SigIgn) };
    }
    let mut watched = BTreeSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        match line.split_once(' ') {
            Some(("watch", pgid)) => {
                watched.extend(pgid.trim().parse::<i32>().ok().filter(|&p| p > 1));
            }
            Some(("release", pgid)) => {
                if let Ok(pgid) = pgid.trim().parse::<i32>() {
                    watched.remove(&pgid);
                }
            }
            _ if line == "done" => return 0,
            _ => {}
        }
    }
    for pgid in watched {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    0
}
