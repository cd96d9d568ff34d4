//! What is said of the machine rather than of one worker's growth: OOM kills and memory that no
//! worker's tree holds.

use super::*;

/// The kernel's OOM kills the memory cgroup counted, per worker.
pub struct OomStatement<'a> {
    pub cgroup: &'a str,
    pub limit_bytes: Option<f64>,
    pub counted: u64,
    pub workers: Vec<OomWorker>,
    /// Kills that match no process of any worker's tree.
    pub elsewhere: usize,
}

pub struct OomWorker {
    pub worker: u32,
    /// Kills of its main process (its SIGKILL exit matched the counter).
    pub main: usize,
    /// Kills matched to another process of its tree that vanished then (probable).
    pub others: usize,
    /// The tree's memory at the last sample before its last kill.
    pub last_memory: Option<(Kind, f64)>,
    /// Killed at its own cgroup limit (bytes), where its cgroup says so.
    pub own_limit: Option<f64>,
}

/// Only when the counter rose.
pub fn oom(f: &Findings) -> Option<OomStatement<'_>> {
    let o = f.oom_kills.as_ref().filter(|o| o.counted > 0)?;
    let mut workers: Vec<OomWorker> = Vec::new();
    for kill in &o.kills {
        let Some(worker) = kill.worker else { continue };
        let index = match workers.iter().position(|w| w.worker == worker) {
            Some(i) => i,
            None => {
                workers.push(OomWorker {
                    worker,
                    main: 0,
                    others: 0,
                    last_memory: None,
                    own_limit: None,
                });
                workers.len() - 1
            }
        };
        let w = &mut workers[index];
        if kill.main {
            w.main += 1;
        } else {
            w.others += 1;
        }
        w.last_memory = kill.memory_kind.zip(kill.memory_bytes).or(w.last_memory);
        w.own_limit = kill.own_limit_bytes.or(w.own_limit);
    }
    workers.sort_by_key(|w| w.worker);
    Some(OomStatement {
        cgroup: &o.cgroup,
        limit_bytes: o.limit_bytes,
        counted: o.counted,
        workers,
        elsewhere: o.kills.iter().filter(|k| k.worker.is_none()).count(),
    })
}

/// The statement in words, for both renderers (one sentence per worker, then the rest).
pub fn oom_words(o: &OomStatement) -> Vec<String> {
    use crate::units::size;
    let OomStatement {
        cgroup,
        limit_bytes,
        counted,
        workers,
        elsewhere,
    } = o;
    let limit = limit_bytes.map_or(String::new(), |l| format!(" (its limit {})", size(l)));
    let below = if workers.iter().any(|w| w.own_limit.is_some()) {
        " and the workers' own cgroups below it, as their oom_kill counters show"
    } else {
        ", as its oom_kill counter shows"
    };
    let mut words = vec![format!(
        "The kernel's OOM killer killed {counted} process(es) in {cgroup}{limit}{below}."
    )];
    for OomWorker {
        worker,
        main,
        others,
        last_memory,
        own_limit,
    } in workers
    {
        let mut what = Vec::new();
        if *main > 0 {
            what.push(format!("its main process {}", times(*main)));
        }
        if *others > 0 {
            what.push(format!(
                "probably {} other process(es) of its tree (they vanished as the counter rose)",
                others
            ));
        }
        let memory = last_memory.map_or(String::new(), |(kind, bytes)| {
            format!(
                "; at the last sample before it was killed it held {} ({})",
                size(bytes),
                kind.words()
            )
        });
        let own = own_limit.map_or(String::new(), |limit| {
            format!(
                ", killed at its own limit of {} (its cgroup of its own; the other workers were not touched)",
                size(limit)
            )
        });
        words.push(format!(
            "Worker {worker}: {}{own}{memory}.",
            what.join(" and ")
        ));
    }
    if *elsewhere > 0 {
        words.push(format!(
            "{elsewhere} kill(s) match no process of a worker's tree: another process in the same cgroup."
        ));
    }
    words
}

fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        n => format!("{n} times"),
    }
}

/// Memory outside every worker's tree, when there is something to tell: `/dev/shm` grew, files
/// nobody maps hold memory, or the cgroup holds more than the trees account for.
pub fn outside_words(f: &Findings) -> Vec<String> {
    use crate::units::size;
    let Some(o) = f.outside_trees.as_ref() else {
        return Vec::new();
    };
    let mut words = Vec::new();
    let unmapped: f64 = o.unmapped_files.iter().map(|f| f.bytes as f64).sum();
    let files = || {
        let mut names: Vec<String> = o
            .unmapped_files
            .iter()
            .take(5)
            .map(|f| format!("`{}` ({})", f.name, size(f.bytes as f64)))
            .collect();
        if o.unmapped_files.len() > 5 {
            names.push(format!("and {} more", o.unmapped_files.len() - 5));
        }
        names.join(", ")
    };
    if o.shm_grew() {
        let mapped = if o.mapped_bytes > 0.0 {
            let which = match o.unlisted_files {
                0 => "at the last listing the files".to_string(),
                n => format!(
                    "of its {} largest files at the last listing ({n} more were not looked at), the ones",
                    crate::recording::SHARED_MEMORY_FILES
                ),
            };
            format!(
                "; {which} that the workers' processes map held {}, which their trees count as shared memory",
                size(o.mapped_bytes)
            )
        } else {
            "; no worker's process maps its files, so no tree counts it".to_string()
        };
        words.push(format!(
            "`/dev/shm` grew from {} to {} (at most {}){mapped}.",
            size(o.shm_first_bytes),
            size(o.shm_last_bytes),
            size(o.shm_peak_bytes)
        ));
    }
    if unmapped >= crate::analysis::judge::outside::TELL_BYTES {
        let torch = o
            .unmapped_files
            .iter()
            .any(|f| f.name.starts_with("torch_"));
        words.push(format!(
            "At the end, {} of `/dev/shm` was in {} file(s) that no worker's process mapped{}: {}. They hold memory until they are unlinked: {}.",
            size(unmapped),
            o.unmapped_files.len(),
            match o.unlisted_files {
                0 => String::new(),
                n => format!(" (of the {} largest listed; {n} more were not)", crate::recording::SHARED_MEMORY_FILES),
            },
            files(),
            if torch {
                "PyTorch passes tensors between DataLoader workers through such segments, and a worker killed before it unlinked them leaves them behind"
            } else {
                "segments a worker created and never unlinked (`shm_unlink`, `SharedMemory.unlink()`); `rm` them once nothing uses them"
            }
        ));
    }
    if o.outside_grew() {
        words.push(format!(
            "Inside the memory cgroup, the memory no worker's tree accounts for went from {} to {} (its working set less the trees' memory: /dev/shm, kernel memory, processes outside the trees).",
            size(o.outside_first_bytes.unwrap_or(0.0)),
            size(o.outside_last_bytes.unwrap_or(0.0))
        ));
    }
    words
}
