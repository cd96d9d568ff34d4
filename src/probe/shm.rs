//! What `/dev/shm` holds: POSIX shared memory and PyTorch's `torch_shm` segments are files on a
//! tmpfs there, charged to memory (and to the memory cgroup of whoever wrote them) until they are
//! unlinked, whether or not any process still maps them. A worker killed mid-trial leaves its
//! segments behind; no process tree accounts for them.

use super::ProcRoot;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShmFile {
    pub name: String,
    /// Allocated bytes (a tmpfs file can be sparse: its length says little).
    pub bytes: u64,
}

/// The regular files directly in `dir`, largest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<ShmFile>> {
    let mut files: Vec<ShmFile> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            meta.is_file().then(|| ShmFile {
                name: entry.file_name().to_string_lossy().into_owned(),
                bytes: meta.blocks() * 512,
            })
        })
        .collect();
    files.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    Ok(files)
}

/// The names of files in `dir` that process `pid` maps (from its `maps`: a list of mappings,
/// no page-table walk). Empty when the process is gone.
pub fn mapped_by(root: &ProcRoot, pid: i32, dir: &Path) -> Vec<String> {
    let Ok(maps) = std::fs::read_to_string(root.path().join(format!("{pid}/maps"))) else {
        return Vec::new();
    };
    let prefix = format!("{}/", dir.display());
    maps.lines()
        .filter_map(|line| {
            let path = line.split_whitespace().nth(5)?;
            path.strip_prefix(&prefix).map(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_listed_by_allocated_size_and_mappings_by_name() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("small"), vec![1u8; 4096]).expect("write");
        std::fs::write(dir.path().join("large"), vec![1u8; 64 * 1024]).expect("write");
        std::fs::create_dir(dir.path().join("a-directory")).expect("mkdir");
        let sparse = std::fs::File::create(dir.path().join("sparse")).expect("create");
        sparse.set_len(1 << 30).expect("sparse");
        let files = list(dir.path()).expect("listed");
        let names: Vec<(&str, bool)> = files
            .iter()
            .map(|f| (f.name.as_str(), f.bytes > 0))
            .collect();
        assert_eq!(names, [("large", true), ("small", true), ("sparse", false)]);
        assert!(files[0].bytes >= 64 * 1024);

        let root = tempfile::tempdir().expect("proc");
        std::fs::create_dir(root.path().join("7")).expect("mkdir");
        std::fs::write(
            root.path().join("7/maps"),
            "7f00-7f10 rw-s 00000000 00:1a 5 /dev/shm/torch_7_1 (deleted)\n7f10-7f20 rw-s 00000000 00:1a 6 /dev/shm/torch_7_2\n7f20-7f30 r-xp 00000000 08:01 9 /usr/lib/libc.so.6\n",
        )
        .expect("maps");
        let root = ProcRoot::new(root.path());
        assert_eq!(
            mapped_by(&root, 7, Path::new("/dev/shm")),
            ["torch_7_1", "torch_7_2"]
        );
        assert!(mapped_by(&root, 8, Path::new("/dev/shm")).is_empty());
    }
}
