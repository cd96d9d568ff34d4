//! Condensing a full /proc/PID/smaps into the rows a leak hunt needs. File mappings are summed
//! per path (a library maps 4-5 regions), anonymous regions of 1 MiB or more are kept one by
//! one (malloc arenas, tensors and leaked buffers are large regions), smaller anonymous regions
//! are summed into one row, and regions with nothing resident or swapped are left out.

use crate::recording::Mapping;
use procfs::process::{MMapPath, MemoryMaps};
use std::collections::BTreeMap;

const LARGE_ANONYMOUS_BYTES: u64 = 1 << 20;

pub fn condense(maps: &MemoryMaps) -> Vec<Mapping> {
    let mut summed: BTreeMap<String, Mapping> = BTreeMap::new();
    let mut large = Vec::new();
    for map in &maps.0 {
        let ext = &map.extension.map;
        let get = |key: &str| ext.get(key).copied().unwrap_or(0);
        let size = map.address.1.saturating_sub(map.address.0);
        let row = Mapping {
            name: String::new(),
            start: map.address.0,
            regions: 1,
            size,
            rss: get("Rss"),
            pss: get("Pss"),
            private: get("Private_Clean") + get("Private_Dirty"),
            anonymous: get("Anonymous"),
            swap: get("Swap"),
        };
        if row.rss == 0 && row.swap == 0 {
            continue;
        }
        let name = match &map.pathname {
            MMapPath::Anonymous if size >= LARGE_ANONYMOUS_BYTES => {
                large.push(Mapping {
                    name: "[anon]".into(),
                    ..row
                });
                continue;
            }
            MMapPath::Anonymous => "[anon<1MiB]".to_string(),
            MMapPath::Heap => "[heap]".into(),
            MMapPath::Stack => "[stack]".into(),
            MMapPath::TStack(_) => "[thread stacks]".into(),
            MMapPath::Vdso => "[vdso]".into(),
            MMapPath::Vvar => "[vvar]".into(),
            MMapPath::Vsyscall => "[vsyscall]".into(),
            MMapPath::Rollup => "[rollup]".into(),
            MMapPath::Vsys(key) => format!("/SYSV{key:08x}"),
            MMapPath::Path(path) => path.to_string_lossy().into_owned(),
            MMapPath::Other(other) => other.clone(),
        };
        let entry = summed.entry(name.clone()).or_insert_with(|| Mapping {
            name,
            start: row.start,
            regions: 0,
            ..Mapping::default()
        });
        entry.regions += 1;
        entry.size += row.size;
        entry.rss += row.rss;
        entry.pss += row.pss;
        entry.private += row.private;
        entry.anonymous += row.anonymous;
        entry.swap += row.swap;
    }
    let mut rows: Vec<Mapping> = summed.into_values().collect();
    rows.extend(large);
    rows
}
