//! Memory that no worker's tree accounts for: what `/dev/shm` holds (segments a dead worker
//! left, PyTorch's `torch_shm` leftovers) and, inside a memory cgroup, the working set less the
//! trees' memory. Pure: recorded readings and the last `/dev/shm` listing in, a finding out.

use crate::recording::SharedMemoryFile;
use serde::{Deserialize, Serialize};

/// Growth smaller than this is not told: allocator noise, a log file in /dev/shm.
pub const TELL_BYTES: f64 = 16.0 * 1024.0 * 1024.0;
/// Outside the trees, more moves on its own (memwarden, page tables, kernel memory).
pub const TELL_OUTSIDE_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutsideTrees {
    /// `/dev/shm` at the start and end of the run (the median of the first and last tenth of
    /// its readings) and at its highest.
    pub shm_first_bytes: f64,
    pub shm_last_bytes: f64,
    pub shm_peak_bytes: f64,
    /// At the last listing: the files no process of a worker's tree mapped, largest first.
    pub unmapped_files: Vec<SharedMemoryFile>,
    /// Files of that listing left out of it (only the largest are listed).
    #[serde(default)]
    pub unlisted_files: u64,
    /// Bytes of that listing's files that a worker's process maps: memory its tree already
    /// counts as shared memory.
    #[serde(default)]
    pub mapped_bytes: f64,
    /// The memory cgroup's working set less the trees' memory, start and end, where a
    /// cgroup limit applied (on a host every other process is in it too).
    pub outside_first_bytes: Option<f64>,
    pub outside_last_bytes: Option<f64>,
}

impl OutsideTrees {
    pub fn shm_grew(&self) -> bool {
        self.shm_last_bytes - self.shm_first_bytes >= TELL_BYTES
    }

    pub fn outside_grew(&self) -> bool {
        match (self.outside_first_bytes, self.outside_last_bytes) {
            (Some(first), Some(last)) => last - first >= TELL_OUTSIDE_BYTES,
            _ => false,
        }
    }
}

/// The start and end levels of a series: medians of its first and last tenth (at least one
/// reading each), so one odd reading at either end does not decide.
fn ends(readings: &[(u64, u64)]) -> Option<(f64, f64)> {
    if readings.is_empty() {
        return None;
    }
    let tenth = (readings.len() / 10).max(1);
    let median = |part: &[(u64, u64)]| {
        let mut values: Vec<u64> = part.iter().map(|(_, v)| *v).collect();
        values.sort_unstable();
        values[values.len() / 2] as f64
    };
    Some((
        median(&readings[..tenth]),
        median(&readings[readings.len() - tenth..]),
    ))
}

/// `shm`: `/dev/shm`'s bytes where they changed; `outside`: the cgroup-relative readings (empty
/// where no cgroup limit applied); the last `SharedMemory` event's files and how many it left out.
pub fn outside_trees(
    shm: &[(u64, u64)],
    outside: &[(u64, u64)],
    (last_listing, unlisted_files): (&[SharedMemoryFile], u64),
) -> Option<OutsideTrees> {
    let (shm_first, shm_last) = ends(shm)?;
    let outside = ends(outside);
    Some(OutsideTrees {
        shm_first_bytes: shm_first,
        shm_last_bytes: shm_last,
        shm_peak_bytes: shm.iter().map(|(_, v)| *v).max().unwrap_or(0) as f64,
        unmapped_files: last_listing
            .iter()
            .filter(|f| !f.mapped && f.bytes > 0)
            .cloned()
            .collect(),
        unlisted_files,
        mapped_bytes: last_listing
            .iter()
            .filter(|f| f.mapped)
            .map(|f| f.bytes as f64)
            .sum(),
        outside_first_bytes: outside.map(|(first, _)| first),
        outside_last_bytes: outside.map(|(_, last)| last),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn growth_is_told_from_the_ends_of_the_run_with_the_files_nobody_maps() {
        let shm: Vec<(u64, u64)> = (0..20).map(|i| (i, i * 4 * MIB)).collect();
        let files = [
            SharedMemoryFile {
                name: "left".into(),
                bytes: 8 * MIB,
                mapped: false,
            },
            SharedMemoryFile {
                name: "in-use".into(),
                bytes: 8 * MIB,
                mapped: true,
            },
        ];
        let found = outside_trees(&shm, &[], (&files, 0)).expect("measured");
        assert_eq!(
            found.shm_first_bytes,
            4.0 * MIB as f64,
            "median of 0 and 4 MiB"
        );
        assert_eq!(found.shm_last_bytes, 76.0 * MIB as f64);
        assert!(found.shm_grew() && !found.outside_grew());
        let names: Vec<&str> = found
            .unmapped_files
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["left"]);

        let steady: Vec<(u64, u64)> = (0..20).map(|i| (i, 64 * MIB + i % 2)).collect();
        let outside: Vec<(u64, u64)> = (0..20).map(|i| (i, 100 * MIB + i * 8 * MIB)).collect();
        let found = outside_trees(&steady, &outside, (&[], 0)).expect("measured");
        assert!(!found.shm_grew() && found.outside_grew());
        assert!(
            outside_trees(&[], &outside, (&[], 0)).is_none(),
            "no listing"
        );
    }
}
