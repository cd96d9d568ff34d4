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
    #[error("cannot start worker {worker} ({program}): {cause}")]
    Start {
        worker: u32,
        program: String,
        cause: std::io::Error,
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

/// How a worker is started beyond its command: environment and containment.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    pub env: Vec<(String, String)>,
    pub nice: Option<i32>,
    /// `(class, level)` for ioprio_set: class 2 is best-effort (level 0..7), 3 is idle.
    pub ionice: Option<(u32, u32)>,
    pub oom_score_adj: Option<i32>,
    /// A cgroup's `cgroup.procs`: the worker moves itself there before it runs the command.
    pub cgroup_procs: Option<std::path::PathBuf>,
}

/// Starts one worker with piped stdout/stderr in a new process group.
///
/// Must be called from a thread that lives as long as the run: the kernel's parent-death signal
/// fires when the *thread* that forked the child exits, not only the process.
///
/// Containment is best effort (a nice level below 0 needs privileges): what could not be set
/// is visible in /proc/PID of the worker, which the harness checks and notes.
pub fn spawn_worker(
    argv: &[String],
    worker: u32,
    run_dir: &Path,
    options: &SpawnOptions,
) -> Result<Child, SpawnError> {
    let (program, args) = argv.split_first().ok_or(SpawnError::EmptyCommand)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env("MEMWARDEN_WORKER", worker.to_string())
        .env("MEMWARDEN_RUN_DIR", run_dir)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let harness = nix::unistd::getpid();
    // Everything the child needs is prepared here: between fork and exec nothing may allocate.
    let oom = options.oom_score_adj.map(|v| format!("{v}\n").into_bytes());
    let cgroup = options
        .cgroup_procs
        .as_ref()
        .and_then(|path| std::fs::OpenOptions::new().write(true).open(path).ok());
    let cgroup_fd = cgroup.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let (nice, ionice) = (options.nice, options.ionice);
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe syscalls
    // (prctl, getppid, open, write, close, setpriority, ioprio_set); it allocates nothing, on
    // its error paths too: an `io::Error` made from an errno holds no box (`Error::other`
    // would allocate, and malloc after fork can deadlock on a lock another thread held).
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The harness may have died before prctl took effect: then nobody would kill us.
            if nix::unistd::getppid() != harness {
                // ESRCH: the harness exited during the start.
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            if let Some(fd) = cgroup_fd {
                // "0" moves the writing process itself; its children follow it.
                libc::write(fd, b"0".as_ptr().cast(), 1);
            }
            if let Some(bytes) = &oom {
                let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
                if fd >= 0 {
                    libc::write(fd, bytes.as_ptr().cast(), bytes.len());
                    libc::close(fd);
                }
            }
            if let Some(level) = nice {
                libc::setpriority(libc::PRIO_PROCESS, 0, level);
            }
            if let Some((class, level)) = ionice {
                const IOPRIO_WHO_PROCESS: libc::c_long = 1;
                let priority = ((class << 13) | level) as libc::c_long;
                libc::syscall(
                    libc::SYS_ioprio_set,
                    IOPRIO_WHO_PROCESS,
                    0 as libc::c_long,
                    priority,
                );
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| SpawnError::Start {
        worker,
        program: program.clone(),
        cause: source,
    });
    drop(cgroup);
    child
}

/// Sends `signal` to one process (SIGUSR1 to a worker's main process: its children may not
/// handle it).
pub fn signal_process(pid: i32, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
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
