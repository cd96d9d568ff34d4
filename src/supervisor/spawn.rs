//! Starting, signalling and reaping workers. Each worker leads its own process group and is
//! always signalled as a group, so the dataloaders it forked go with it.

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("empty worker command")]
    EmptyCommand,
    #[error("cannot start worker {worker} ({program}): {source}")]
    Start {
        worker: u32,
        program: String,
        source: std::io::Error,
    },
}

/// How a worker's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Starts one worker with piped stdout/stderr in a new process group.
///
/// Must be called from a thread that lives as long as the run: the kernel's parent-death signal
/// fires when the *thread* that forked the child exits, not only the process.
pub fn spawn_worker(
    argv: &[String],
    worker: u32,
    run_dir: &Path,
    env: &[(String, String)],
) -> Result<Child, SpawnError> {
    let (program, args) = argv.split_first().ok_or(SpawnError::EmptyCommand)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env("MEMWARDEN_WORKER", worker.to_string())
        .env("MEMWARDEN_RUN_DIR", run_dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let harness = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe syscalls
    // (prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The harness may have died before prctl took effect: then nobody would kill us.
            if nix::unistd::getppid() != harness {
                return Err(std::io::Error::other("the harness exited during the start"));
            }
            Ok(())
        });
    }
    command.spawn().map_err(|source| SpawnError::Start {
        worker,
        program: program.clone(),
        source,
    })
}

/// Sends `signal` to every process of the group. A group that is already empty is not an error.
pub fn signal_group(pgid: i32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid), signal);
}

/// Whether any process of the group still exists (zombies included).
pub fn group_alive(pgid: i32) -> bool {
    killpg(Pid::from_raw(pgid), None).is_ok()
}

/// Reaps the worker's main process if it has exited.
pub fn try_reap(pid: i32) -> Option<Exit> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(Exit {
            code: Some(code),
            signal: None,
        }),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(Exit {
            code: None,
            signal: Some(signal as i32),
        }),
        Ok(_) => None,
        // ECHILD: already reaped or not our child; either way it is gone.
        Err(_) => Some(Exit {
            code: None,
            signal: None,
        }),
    }
}
