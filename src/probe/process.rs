//! One observed process. The handle keeps the /proc/PID directory open: that descriptor names
//! this process and no other, so once it exits every read fails instead of reading a newcomer
//! that got the same pid. The status file stays open too, sparing an open() per tick.
//!
//! An exec keeps the pid but replaces the address space, and the descriptors differ in what
//! they are bound to (checked on Linux 6.18 by holding each across an exec): `/proc/PID`,
//! `status` and `task/PID/children` look the process up at each read and follow it, while
//! `smaps_rollup` and `maps` are bound at open() to the address space of that moment and read
//! ESRCH or nothing once an exec drops it. A kept `smaps_rollup` therefore lost PSS and USS for
//! the rest of the run of every worker started through `sh -c '... exec python ...'` or a pyenv
//! shim (issue 12). The handle keeps a `maps` descriptor as a witness of the address space it
//! knows, and when the witness reads empty while a fresh one does not, the process has exec'd:
//! everything bound to the old program is opened again and its identity read again.

use super::{read_fresh, Layout, ProcRoot};
use procfs::process::{MemoryMaps, Process, SmapsRollup};
use procfs::FromBufRead;
use std::fs::File;
use std::time::Instant;

/// The counters that cost microseconds whatever the process size (from /proc/PID/status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cheap {
    pub rss: u64,
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    pub swap: u64,
}

/// From /proc/PID/smaps_rollup, which walks page tables: cost grows with resident size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    pub pss: u64,
    /// Private clean + private dirty.
    pub uss: u64,
    /// What the read cost, measured around it.
    pub cost_ns: u64,
    /// The kernel's page-table walk alone: this thread's CPU time in the read, so neither the
    /// parsing (slow in a debug build) nor time this thread spent descheduled counts. What the
    /// read holds the target's memory map for, at the least.
    pub hold_ns: u64,
}

pub struct ProcessHandle {
    process: Process,
    status: File,
    rollup: Option<File>,
    /// `maps`, bound to the address space this handle knows; never read in the tick, only to
    /// confirm an exec (reading it takes the target's mmap lock for a moment).
    witness: Option<File>,
    /// The program as status shows it (a hash of its name and text size); a change hints at an
    /// exec, which the witness then confirms or denies (a thread renaming itself is no exec).
    image: Option<u64>,
    image_changed: bool,
    /// The main thread's `children` file, re-read every tick; other threads' on a full scan.
    main_children: Option<File>,
    /// `statm`, read on every tick before status: its resident and shared (file + shmem)
    /// pages tell whether status, six times its cost here (7.8 against 1.3 µs), needs reading.
    statm: Option<File>,
    /// The last status reading, with the statm pages (resident, shared) read just before it.
    last: Option<(Cheap, (u64, u64))>,
    buf: Vec<u8>,
    pub pid: i32,
    pub ppid: i32,
    /// Start time in clock ticks since boot: with the pid, a unique identity.
    pub start_ticks: u64,
    pub command: String,
    /// The pid in each pid namespace from this /proc's outward in (`NSpid`): NVML reports the
    /// outermost one, which differs from `pid` only when the process is in a nested namespace.
    pub ns_pids: Vec<i32>,
}

impl ProcessHandle {
    /// Opens a process, or `None` when it is gone (or is not a process).
    pub fn try_open(root: &ProcRoot, pid: i32) -> Option<Self> {
        let process = Process::new_with_root(root.path().join(pid.to_string())).ok()?;
        // The witness first: whatever the identity below describes is at least this new.
        let witness = process.open_relative("maps").ok();
        let (stat, command) = identity(&process)?;
        let status = process.open_relative("status").ok()?;
        let statm = process.open_relative("statm").ok();
        let ns_pids = process
            .status()
            .ok()
            .and_then(|s| s.nspid)
            .unwrap_or_else(|| vec![pid]);
        Some(Self {
            process,
            status,
            rollup: None,
            witness,
            image: None,
            image_changed: false,
            main_children: None,
            statm,
            last: None,
            buf: Vec::new(),
            pid,
            ppid: stat.ppid,
            start_ticks: stat.starttime,
            command,
            ns_pids,
        })
    }

    /// RSS and its split. `None` once the process has exited (a zombie has no memory lines).
    ///
    /// statm's resident and shared pages come first: while both are what they were at the last
    /// status read, so are RSS, anonymous (resident less shared) and file + shmem, and that
    /// reading stands. Otherwise, and always when `full`, status is read. What statm cannot
    /// see, file and shmem trading equal amounts or swapped pages being freed, waits for the
    /// next status read: the sampler asks for `full` once a second.
    pub fn try_cheap(&mut self, full: bool) -> Option<Cheap> {
        let pages = self
            .statm
            .as_ref()
            .and_then(|file| read_fresh(file, &mut self.buf, Layout::OneRecord).ok())
            .and_then(|len| statm_pages(&self.buf[..len]));
        if let (false, Some(pages), Some((cheap, known))) = (full, pages, self.last) {
            // A zombie's statm reads all zeros: status says it has no memory any more.
            if pages == known && pages.0 > 0 {
                return Some(cheap);
            }
        }
        let len = read_fresh(&self.status, &mut self.buf, Layout::OneRecord).ok()?;
        let (cheap, image) = scan(&self.buf[..len])?;
        if self.image.is_some_and(|known| known != image) {
            self.image_changed = true;
        }
        self.image = Some(image);
        self.last = pages.map(|pages| (cheap, pages));
        Some(cheap)
    }

    /// Whether the process replaced its program (execve) since the handle last looked; if so,
    /// what was bound to the old program is opened again and `command`, `ppid` and
    /// `start_ticks` are read again. Looks when status showed another program since the last
    /// call, or always when `thorough` (an exec of the same binary keeps name and text size).
    /// An exiting process is no exec: it has no address space for a fresh witness to read.
    pub fn try_detect_exec(&mut self, thorough: bool) -> bool {
        let hinted = std::mem::take(&mut self.image_changed);
        if !(thorough || hinted) {
            return false;
        }
        if self.witness.as_ref().is_some_and(reads_something) {
            return false;
        }
        let Some(witness) = self.process.open_relative("maps").ok() else {
            return false;
        };
        if !reads_something(&witness) {
            return false;
        }
        let known = self.witness.replace(witness).is_some();
        if !known {
            // No witness before (it could not be opened): nothing proves an exec.
            return false;
        }
        self.rollup = None;
        self.main_children = None;
        if let Some((stat, command)) = identity(&self.process) {
            self.ppid = stat.ppid;
            self.start_ticks = stat.starttime;
            self.command = command;
        }
        true
    }

    pub fn try_rollup(&mut self) -> Option<Rollup> {
        let started = Instant::now();
        if self.rollup.is_none() {
            self.rollup = Some(self.process.open_relative("smaps_rollup").ok()?);
        }
        let file = self.rollup.as_ref()?;
        let walk_started = thread_cpu_ns();
        let len = read_fresh(file, &mut self.buf, Layout::OneRecord).ok()?;
        let hold_ns = thread_cpu_ns().saturating_sub(walk_started);
        let rollup = SmapsRollup::from_buf_read(&self.buf[..len]).ok()?;
        let cost_ns = started.elapsed().as_nanos() as u64;
        let map = &rollup.memory_map_rollup.0.first()?.extension.map;
        let get = |key: &str| map.get(key).copied().unwrap_or(0);
        Some(Rollup {
            pss: *map.get("Pss")?,
            uss: get("Private_Clean") + get("Private_Dirty"),
            cost_ns,
            hold_ns,
        })
    }

    /// The full memory map; costly (holds the target's mmap lock), taken at trial boundaries.
    pub fn try_smaps(&mut self) -> Option<MemoryMaps> {
        let file = self.process.open_relative("smaps").ok()?;
        let len = read_fresh(&file, &mut self.buf, Layout::Records).ok()?;
        MemoryMaps::from_buf_read(&self.buf[..len]).ok()
    }

    /// Direct children forked by the main thread: one read of a kept-open file.
    pub fn try_main_children(&mut self) -> Vec<i32> {
        if self.main_children.is_none() {
            self.main_children = self
                .process
                .open_relative(format!("task/{}/children", self.pid))
                .ok();
        }
        let Some(file) = &self.main_children else {
            return Vec::new();
        };
        // "%d " per child: at most 11 digits and sign, and the space.
        let Ok(len) = read_fresh(file, &mut self.buf, Layout::SmallRecords(13)) else {
            return Vec::new();
        };
        std::str::from_utf8(&self.buf[..len])
            .unwrap_or_default()
            .split_ascii_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect()
    }

    /// Direct children, from every thread (a child belongs to the thread that forked it).
    pub fn try_children(&self) -> Vec<i32> {
        let Ok(tasks) = self.process.tasks() else {
            return Vec::new();
        };
        tasks
            .filter_map(|task| task.ok())
            .filter_map(|task| task.children().ok())
            .flatten()
            .map(|pid| pid as i32)
            .collect()
    }
}

/// The stat line and the command line (redacted here, where it enters memwarden): who a
/// process is. A kernel thread or a zombie has an
/// empty command line and is named by `[comm]`.
fn identity(process: &Process) -> Option<(procfs::process::Stat, String)> {
    let stat = process.stat().ok()?;
    let command = process
        .cmdline()
        .ok()
        .filter(|argv| !argv.is_empty())
        .map(|argv| crate::redact::argv(&argv).join(" "))
        .unwrap_or_else(|| format!("[{}]", stat.comm));
    Some((stat, command))
}

/// Whether a `maps` descriptor still reads its address space: its first bytes are enough.
fn reads_something(file: &File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut first = [0u8; 64];
    loop {
        match file.read_at(&mut first, 0) {
            Ok(n) => return n > 0,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// The five /proc/PID/status fields a tick needs, in bytes. procfs's `Status` parser builds a
/// map of all ~55 fields, which measured three times the cost of reading the file (benches/
/// sampling.rs); the tick reads these five alone. Tests check it against procfs on the same text.
/// `None` when a field is missing: a zombie has exited and has no memory lines.
/// This thread's CPU time (ns).
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    if !ok {
        return 0;
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Resident and shared pages, the second and third numbers of `statm`.
fn statm_pages(text: &[u8]) -> Option<(u64, u64)> {
    let mut numbers = text
        .split(|b| b.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
        .skip(1)
        .map(|word| std::str::from_utf8(word).ok()?.parse::<u64>().ok());
    Some((numbers.next()??, numbers.next()??))
}

pub fn scan_status(text: &[u8]) -> Option<Cheap> {
    scan(text).map(|(cheap, _)| cheap)
}

/// [`scan_status`], and a hash of the program's name and text size (`Name`, `VmExe`), which
/// come before `VmSwap` and cost nothing more to pick up.
fn scan(text: &[u8]) -> Option<(Cheap, u64)> {
    let mut fields: [Option<u64>; 5] = [None; 5];
    let mut image = std::hash::DefaultHasher::new();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if matches!(&line[..colon], b"Name" | b"VmExe") {
            std::hash::Hash::hash(line, &mut image);
            continue;
        }
        let slot = match &line[..colon] {
            b"VmRSS" => 0,
            b"RssAnon" => 1,
            b"RssFile" => 2,
            b"RssShmem" => 3,
            b"VmSwap" => 4,
            _ => continue,
        };
        let kib = line[colon + 1..]
            .split(|b| b.is_ascii_whitespace())
            .find(|word| !word.is_empty())
            .and_then(|word| std::str::from_utf8(word).ok()?.parse::<u64>().ok());
        fields[slot] = kib.map(|k| k * 1024);
        if fields.iter().all(Option::is_some) {
            // VmSwap comes before the signal masks and CPU lists: skip the second half.
            break;
        }
    }
    let cheap = Cheap {
        rss: fields[0]?,
        anon: fields[1]?,
        file: fields[2]?,
        shmem: fields[3]?,
        swap: fields[4].unwrap_or(0),
    };
    Some((cheap, std::hash::Hasher::finish(&image)))
}

/// The cheap counters of a process tree read now, summed over `pid` and its descendants (at
/// most `MAX_TREE` processes): for a trial's end line, where the worker may already be taking
/// its next trial's memory, so nothing is kept open and nothing else is read. `None` when
/// `pid` itself cannot be read (it exited).
pub fn tree_cheap_now(root: &ProcRoot, pid: i32) -> Option<Cheap> {
    const MAX_TREE: usize = 64;
    let mut total = Cheap::default();
    let mut queue = std::collections::VecDeque::from([pid]);
    let mut seen = 0;
    while let Some(next) = queue.pop_front() {
        let dir = root.path().join(next.to_string());
        let Some(cheap) = std::fs::read(dir.join("status"))
            .ok()
            .and_then(|t| scan_status(&t))
        else {
            if next == pid {
                return None;
            }
            continue;
        };
        total.rss += cheap.rss;
        total.anon += cheap.anon;
        total.file += cheap.file;
        total.shmem += cheap.shmem;
        total.swap += cheap.swap;
        seen += 1;
        if seen == MAX_TREE {
            break;
        }
        let Ok(tasks) = std::fs::read_dir(dir.join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                queue.extend(
                    text.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    Some(total)
}
