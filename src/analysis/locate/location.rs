//! Which mappings of a process grew between its first and last trial-boundary snapshots, sorted
//! into the categories a person would look at, with a plain-words hint for known patterns.

use crate::analysis::load::loaded::MappingRow;
use crate::analysis::measures::{MappingCategory, MappingFinding};
use crate::stats::median;
use std::collections::BTreeMap;

use crate::units::MIB;
/// glibc reserves each secondary malloc arena as a 64 MiB-aligned, 64 MiB region
/// (HEAP_MAX_SIZE on 64-bit), so arenas show up as anonymous regions at such addresses.
const ARENA_BYTES: u64 = 64 << 20;
/// Growth below this is not worth a line.
const MIN_GROWTH_BYTES: f64 = MIB;

pub fn categorize(name: &str, start: u64, size: u64) -> MappingCategory {
    match name {
        "[heap]" => MappingCategory::Heap,
        "[anon]" if start % ARENA_BYTES == 0 && size <= ARENA_BYTES => MappingCategory::GlibcArenas,
        "[anon]" => MappingCategory::AnonymousRegions,
        "[anon<1MiB]" => MappingCategory::SmallAnonymous,
        n if n.starts_with("/dev/shm/") || n.starts_with("/memfd:") || n.starts_with("/SYSV") => {
            MappingCategory::SharedMemory
        }
        n if n.starts_with("/dev/nvidia") || n.starts_with("/dev/dri/") => {
            MappingCategory::GpuDriver
        }
        n if n.starts_with('/') => MappingCategory::File,
        _ => MappingCategory::Other,
    }
}

/// Not "many small allocations": large arrays land on the heap too, once glibc's mmap
/// threshold has risen (up to 32 MiB) after the first large free. `--trace-python` measures
/// which it is, and replaces this hint with what it found.
pub const HEAP_HINT: &str = "the heap grows: Python objects, or arrays and buffers (glibc serves blocks up to 32 MiB from the heap once its mmap threshold has risen after a large free); --trace-python names the line that keeps them";

pub const ANON_HINT: &str = "large allocations kept alive from trial to trial (arrays, CPU tensors, buffers): look for a cache, history or list appended per trial";

fn hint(category: MappingCategory) -> Option<&'static str> {
    Some(match category {
        MappingCategory::Heap => HEAP_HINT,
        MappingCategory::AnonymousRegions => ANON_HINT,
        MappingCategory::GlibcArenas => "glibc malloc arenas: each thread that allocates gets its own 64 MiB arena and fragmentation keeps them; try MALLOC_ARENA_MAX=2 or jemalloc (LD_PRELOAD)",
        MappingCategory::SmallAnonymous => "small anonymous mappings accumulate (thread stacks, small mmaps): count threads per trial",
        MappingCategory::SharedMemory => "shared memory that outlives its trial: DataLoader workers' shared tensors (torch_shm), multiprocessing queues, or /dev/shm files never unlinked",
        MappingCategory::GpuDriver => "GPU driver mappings grow: pinned host memory or extra CUDA contexts",
        MappingCategory::File => "page cache of mapped files: the kernel reclaims it under pressure, so it is not a leak",
        MappingCategory::Other => return None,
    })
}

/// Compares the first and the last snapshot. Named mappings are matched by name; large
/// anonymous regions by start address, and reported together per category.
pub fn mapping_growth(rows: &[MappingRow]) -> Vec<MappingFinding> {
    let (Some(first_t), Some(last_t)) = (
        rows.iter().map(|r| r.t_ns).min(),
        rows.iter().map(|r| r.t_ns).max(),
    ) else {
        return Vec::new();
    };
    if first_t == last_t {
        return Vec::new();
    }
    // (category, name) -> (bytes first, bytes last, regions first, regions last, added sizes)
    type Tally = (f64, f64, i64, i64, Vec<f64>);
    let mut tallies: BTreeMap<(MappingCategory, String), Tally> = BTreeMap::new();
    let in_first: std::collections::HashSet<(&str, u64)> = rows
        .iter()
        .filter(|r| r.t_ns == first_t)
        .map(|r| (r.name.as_str(), r.start))
        .collect();
    for row in rows
        .iter()
        .filter(|r| r.t_ns == first_t || r.t_ns == last_t)
    {
        let category = categorize(&row.name, row.start, row.size);
        let name = match category {
            MappingCategory::AnonymousRegions | MappingCategory::GlibcArenas => String::new(),
            _ => row.name.clone(),
        };
        let tally = tallies.entry((category, name)).or_default();
        let bytes = (row.rss + row.swap) as f64;
        if row.t_ns == first_t {
            tally.0 += bytes;
            tally.2 += 1;
        } else {
            tally.1 += bytes;
            tally.3 += 1;
            if !in_first.contains(&(row.name.as_str(), row.start)) {
                tally.4.push(row.size as f64);
            }
        }
    }
    let mut findings: Vec<MappingFinding> = tallies
        .into_iter()
        .filter(|(_, t)| t.1 - t.0 >= MIN_GROWTH_BYTES)
        .map(|((category, name), t)| {
            let name = match category {
                MappingCategory::AnonymousRegions => "anonymous regions".to_string(),
                MappingCategory::GlibcArenas => "malloc arenas (64 MiB-aligned)".to_string(),
                _ => name,
            };
            MappingFinding {
                category,
                name,
                growth_bytes: t.1 - t.0,
                regions_added: t.3 - t.2,
                region_bytes: (!t.4.is_empty()).then(|| median(&t.4)),
                hint: hint(category).map(str::to_string),
            }
        })
        .collect();
    findings.sort_by(|a, b| b.growth_bytes.total_cmp(&a.growth_bytes));
    findings.truncate(6);
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: u64, name: &str, start: u64, mib: u64) -> MappingRow {
        MappingRow {
            t_ns: t,
            name: name.into(),
            start,
            size: mib << 20,
            rss: mib << 20,
            swap: 0,
        }
    }

    #[test]
    fn new_large_regions_shared_memory_and_arenas() {
        let mut rows = vec![
            row(1, "[heap]", 0x1000, 10),
            row(1, "/usr/lib/libc.so.6", 0x2000, 2),
            row(2, "[heap]", 0x1000, 10),
            row(2, "/usr/lib/libc.so.6", 0x2000, 2),
            row(2, "/memfd:torch-shm (deleted)", 0x9000_0000, 24),
        ];
        for i in 0..5u64 {
            rows.push(row(2, "[anon]", 0x7f00_0000_1000 + i * (9 << 20), 8));
        }
        for i in 0..4u64 {
            rows.push(row(2, "[anon]", 0x7e00_0000_0000 + i * ARENA_BYTES, 30));
        }
        let found = mapping_growth(&rows);
        let names: Vec<(MappingCategory, i64)> = found
            .iter()
            .map(|f| (f.category, f.regions_added))
            .collect();
        assert_eq!(
            names,
            [
                (MappingCategory::GlibcArenas, 4),
                (MappingCategory::AnonymousRegions, 5),
                (MappingCategory::SharedMemory, 1)
            ]
        );
        assert_eq!(found[1].region_bytes, Some(8.0 * MIB));
        assert!(found[0]
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("MALLOC_ARENA_MAX")));
        assert_eq!(found[2].name, "/memfd:torch-shm (deleted)");
    }

    #[test]
    fn one_snapshot_tells_nothing() {
        assert!(mapping_growth(&[row(1, "[heap]", 0, 5)]).is_empty());
    }
}
