//! The kinds of memory analysis tells apart, and a fixed-size record of one value per kind.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Proportional set size: private memory plus a share of shared pages.
    Pss,
    /// Unique set size: private clean + private dirty.
    Uss,
    /// Anonymous resident memory (heap, large allocations, arenas).
    Anon,
    /// File-backed resident memory (mapped files, libraries): mostly reclaimable page cache.
    File,
    /// Resident shared memory (/dev/shm, memfd, SysV).
    Shmem,
    Swap,
    /// GPU memory (NVML), where recorded.
    Gpu,
    Rss,
}

pub const KINDS: [Kind; 8] = [
    Kind::Pss,
    Kind::Uss,
    Kind::Anon,
    Kind::File,
    Kind::Shmem,
    Kind::Swap,
    Kind::Gpu,
    Kind::Rss,
];

/// One optional value per kind, indexed by `Kind as usize`.
pub type Values = [Option<f64>; KINDS.len()];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pss => "pss",
            Kind::Uss => "uss",
            Kind::Anon => "anon",
            Kind::File => "file",
            Kind::Shmem => "shmem",
            Kind::Swap => "swap",
            Kind::Gpu => "gpu",
            Kind::Rss => "rss",
        }
    }

    /// How a person says it.
    pub fn words(self) -> &'static str {
        match self {
            Kind::Pss => "PSS",
            Kind::Uss => "USS (private memory)",
            Kind::Anon => "anonymous memory",
            Kind::File => "file-backed memory",
            Kind::Shmem => "shared memory",
            Kind::Swap => "swap",
            Kind::Gpu => "GPU memory",
            Kind::Rss => "RSS",
        }
    }

    /// The samples-table column holding this kind.
    pub fn column(self) -> &'static str {
        self.name()
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        KINDS
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                let names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
                format!("unknown memory kind {text:?} (one of {})", names.join(", "))
            })
    }
}
