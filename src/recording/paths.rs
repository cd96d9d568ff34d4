//! The names of a run directory's files: which stream, which segment, which extension.

use std::path::{Path, PathBuf};

/// The streams of a run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Ticks; compacted into `samples-N.parquet` (processes) and `system-N.parquet`.
    Samples,
    /// Trial-boundary memory maps; compacted into `smaps-N.parquet`.
    Smaps,
    /// Events; a single small file, never compacted.
    Events,
}

/// `samples-000001.log`, `system-000001.parquet`, `events.log`, ...
pub(crate) fn stream_path(dir: &Path, stream: Stream, index: u32, extension: &str) -> PathBuf {
    match stream {
        Stream::Events => dir.join(format!("events.{extension}")),
        Stream::Samples => dir.join(format!("samples-{index:06}.{extension}")),
        Stream::Smaps => dir.join(format!("smaps-{index:06}.{extension}")),
    }
}

pub(crate) fn system_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("system-{index:06}.parquet"))
}

/// `gpu-000001.parquet`: written only for segments that hold GPU device samples.
pub(crate) fn gpu_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("gpu-{index:06}.parquet"))
}

/// `cgroups-000001.parquet`: written only for segments that hold per-worker cgroup samples.
pub(crate) fn cgroups_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("cgroups-{index:06}.parquet"))
}

/// `./memwarden-runs/20261122T183000Z`, with a suffix if that exists already.
pub fn default_run_dir() -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "");
    let base = PathBuf::from("memwarden-runs").join(&stamp);
    let mut dir = base.clone();
    let mut n = 2;
    while dir.exists() {
        dir = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    dir
}
