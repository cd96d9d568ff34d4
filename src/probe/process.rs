//! One observed process. The handle keeps the /proc/PID directory open: that descriptor names
//! this process and no other, so once it exits every read fails instead of reading a newcomer
//! that got the same pid. The status file stays open too, sparing an open() per tick.

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
}

pub struct ProcessHandle {
    process: Process,
    status: File,
    rollup: Option<File>,
    /// The main thread's `children` file, re-read every tick; other threads' on a full scan.
    main_children: Option<File>,
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
        let stat = process.stat().ok()?;
        let status = process.open_relative("status").ok()?;
        let command = process
            .cmdline()
            .ok()
            .filter(|argv| !argv.is_empty())
            .map(|argv| argv.join(" "))
            .unwrap_or_else(|| format!("[{}]", stat.comm));
        let ns_pids = process
            .status()
            .ok()
            .and_then(|s| s.nspid)
            .unwrap_or_else(|| vec![pid]);
        Some(Self {
            process,
            status,
            rollup: None,
            main_children: None,
            buf: Vec::new(),
            pid,
            ppid: stat.ppid,
            start_ticks: stat.starttime,
            command,
            ns_pids,
        })
    }

    /// RSS and its split. `None` once the process has exited (a zombie has no memory lines).
    pub fn try_cheap(&mut self) -> Option<Cheap> {
        let len = read_fresh(&self.status, &mut self.buf, Layout::OneRecord).ok()?;
        scan_status(&self.buf[..len])
    }

    pub fn try_rollup(&mut self) -> Option<Rollup> {
        let started = Instant::now();
        if self.rollup.is_none() {
            self.rollup = Some(self.process.open_relative("smaps_rollup").ok()?);
        }
        let file = self.rollup.as_ref()?;
        let len = read_fresh(file, &mut self.buf, Layout::OneRecord).ok()?;
        let rollup = SmapsRollup::from_buf_read(&self.buf[..len]).ok()?;
        let cost_ns = started.elapsed().as_nanos() as u64;
        let map = &rollup.memory_map_rollup.0.first()?.extension.map;
        let get = |key: &str| map.get(key).copied().unwrap_or(0);
        Some(Rollup {
            pss: *map.get("Pss")?,
            uss: get("Private_Clean") + get("Private_Dirty"),
            cost_ns,
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
        let Ok(len) = read_fresh(file, &mut self.buf, Layout::Records) else {
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

/// The five /proc/PID/status fields a tick needs, in bytes. procfs's `Status` parser builds a
/// map of all ~55 fields, which measured three times the cost of reading the file (benches/
/// sampling.rs); the tick reads these five alone. Tests check it against procfs on the same text.
/// `None` when a field is missing: a zombie has exited and has no memory lines.
pub fn scan_status(text: &[u8]) -> Option<Cheap> {
    let mut fields: [Option<u64>; 5] = [None; 5];
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
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
    Some(Cheap {
        rss: fields[0]?,
        anon: fields[1]?,
        file: fields[2]?,
        shmem: fields[3]?,
        swap: fields[4].unwrap_or(0),
    })
}
