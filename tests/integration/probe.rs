//! The /proc reader on a fake tree of captured kernel text (fixtures/proc).

use memwarden::probe::{condense, host_facts, ProcRoot, ProcessHandle, SystemProbe};

/// The number after `name` in /proc text such as `Pss:   14144 kB`.
fn field_kib(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .expect("field present");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("number")
}

fn root() -> ProcRoot {
    ProcRoot::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/proc"))
}

#[test]
fn cheap_counters_come_from_status() {
    let mut process = ProcessHandle::try_open(&root(), 4243).expect("fixture process 4243");
    assert_eq!(process.ppid, 4242);
    assert_eq!(process.start_ticks, 502725);
    assert!(
        process.command.contains("fixture-worker"),
        "{}",
        process.command
    );
    let cheap = process.try_cheap(true).expect("status parses");
    assert_eq!(cheap.rss, 10500 * 1024);
    assert_eq!(cheap.anon, 7756 * 1024);
    assert_eq!(cheap.file, 2744 * 1024);
    assert_eq!((cheap.shmem, cheap.swap), (0, 0));
    // Reading again through the kept-open handle gives the same values.
    assert_eq!(process.try_cheap(false), Some(cheap));
    assert_eq!(process.try_cheap(true), Some(cheap));
}

/// A copy of fixture process 4242 whose files a test may rewrite.
fn writable_fixture() -> (tempfile::TempDir, ProcRoot) {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = root().path().join("4242");
    let to = dir.path().join("4242");
    std::fs::create_dir_all(&to).expect("fixture dir");
    for name in ["stat", "cmdline", "status", "statm"] {
        std::fs::copy(from.join(name), to.join(name)).expect("fixture file");
    }
    let root = ProcRoot::new(dir.path());
    (dir, root)
}

#[test]
fn status_is_read_again_only_when_statm_moved_or_a_full_read_is_asked_for() {
    let (dir, root) = writable_fixture();
    let mut process = ProcessHandle::try_open(&root, 4242).expect("fixture process 4242");
    let first = process.try_cheap(true).expect("status parses");
    assert_eq!((first.rss, first.anon), (18124 * 1024, 3656 * 1024));
    // status changes (shmem took what file held) while statm's resident and shared stay.
    let status = dir.path().join("4242/status");
    let text = std::fs::read_to_string(&status).expect("status");
    let text = text
        .replace("RssFile:\t   14468 kB", "RssFile:\t   14000 kB")
        .replace("RssShmem:\t       0 kB", "RssShmem:\t     468 kB");
    std::fs::write(&status, &text).expect("rewrite status");
    assert_eq!(
        process.try_cheap(false),
        Some(first),
        "statm unchanged: no status read"
    );
    let full = process.try_cheap(true).expect("status parses");
    assert_eq!((full.file, full.shmem), (14000 * 1024, 468 * 1024));
    // statm moves: status is read without being asked.
    std::fs::write(
        &status,
        text.replace("VmRSS:\t   18124", "VmRSS:\t   18128"),
    )
    .expect("status");
    std::fs::write(
        dir.path().join("4242/statm"),
        "20014 4532 3617 13992 0 118 0\n",
    )
    .expect("statm");
    assert_eq!(process.try_cheap(false).map(|c| c.rss), Some(18128 * 1024));
    // A zombie's statm reads zeros: status (without memory lines) decides it is gone.
    std::fs::write(dir.path().join("4242/statm"), "0 0 0 0 0 0 0\n").expect("statm");
    let zombie: String = text
        .lines()
        .filter(|l| !l.starts_with("Vm") && !l.starts_with("Rss"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&status, zombie).expect("status");
    assert_eq!(process.try_cheap(false), None);
}

#[test]
fn rollup_gives_pss_and_uss() {
    let mut process = ProcessHandle::try_open(&root(), 4242).expect("fixture process 4242");
    let rollup = process.try_rollup().expect("smaps_rollup parses");
    assert_eq!(rollup.pss, 14144 * 1024);
    let text = std::fs::read_to_string(root().path().join("4242/smaps_rollup")).expect("fixture");
    let field = |name: &str| field_kib(&text, name);
    assert_eq!(
        rollup.uss,
        (field("Private_Clean:") + field("Private_Dirty:")) * 1024
    );
}

#[test]
fn children_and_smaps() {
    let mut parent = ProcessHandle::try_open(&root(), 4242).expect("fixture process 4242");
    assert_eq!(parent.try_children(), vec![4243]);
    let maps = parent.try_smaps().expect("smaps parses");
    let rows = condense(&maps);
    let rss: u64 = rows.iter().map(|r| r.rss).sum();
    let total_rss: u64 = maps
        .0
        .iter()
        .map(|m| m.extension.map.get("Rss").copied().unwrap_or(0))
        .sum();
    assert_eq!(rss, total_rss, "condensing keeps every resident byte");
    assert!(
        rows.iter()
            .any(|r| r.name == "[heap]" || r.name == "[anon]"),
        "{rows:?}"
    );
    let libc = rows.iter().filter(|r| r.name.contains("libc.so")).count();
    assert_eq!(libc, 1, "a library's regions are summed into one row");
}

#[test]
fn a_missing_process_is_none_not_an_error() {
    assert!(ProcessHandle::try_open(&root(), 99999).is_none());
}

#[test]
fn system_memory_pressure_and_own_rss() {
    let mut probe = SystemProbe::open(&root()).expect("fixture meminfo");
    assert!(probe.has_pressure());
    let sample = probe.sample().expect("meminfo parses");
    let meminfo = std::fs::read_to_string(root().path().join("meminfo")).expect("fixture");
    let kib = |name: &str| field_kib(&meminfo, name);
    assert_eq!(sample.mem_total_bytes, kib("MemTotal:") * 1024);
    assert_eq!(sample.mem_available_bytes, kib("MemAvailable:") * 1024);
    assert_eq!(sample.psi_some_avg10, Some(1.5));
    assert_eq!(sample.psi_full_avg10, Some(0.75));
    assert_eq!(sample.psi_full_total_us, Some(65432));
    assert!(sample.harness_rss_bytes > 0);
    let facts = host_facts(&root());
    assert_eq!(facts.host, "fixture-host");
    assert_eq!(facts.kernel, "6.1.0-fixture");
}

#[test]
fn no_pressure_file_means_no_pressure_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(root().path().join("meminfo"), dir.path().join("meminfo")).expect("copy");
    let mut probe = SystemProbe::open(&ProcRoot::new(dir.path())).expect("meminfo only");
    assert!(!probe.has_pressure());
    let sample = probe.sample().expect("sample");
    assert_eq!(
        (sample.psi_some_avg10, sample.psi_full_total_us),
        (None, None)
    );
}

#[test]
fn the_tick_status_scan_agrees_with_procfs() {
    use procfs::FromBufRead;
    for pid in ["4242", "4243", "self"] {
        let path = if pid == "self" {
            "/proc/self/status".into()
        } else {
            root().path().join(pid).join("status")
        };
        let text = std::fs::read(path).expect("status");
        let full = procfs::process::Status::from_buf_read(&text[..]).expect("procfs parses");
        let cheap = memwarden::probe::scan_status(&text).expect("scan finds the fields");
        assert_eq!(cheap.rss, full.vmrss.expect("VmRSS") * 1024);
        assert_eq!(cheap.anon, full.rssanon.expect("RssAnon") * 1024);
        assert_eq!(cheap.file, full.rssfile.expect("RssFile") * 1024);
        assert_eq!(cheap.shmem, full.rssshmem.expect("RssShmem") * 1024);
        assert_eq!(cheap.swap, full.vmswap.unwrap_or(0) * 1024);
    }
    // A zombie's status has no memory lines: no sample rather than zeros.
    let zombie = b"Name:\tx\nState:\tZ (zombie)\nPid:\t7\n";
    assert!(memwarden::probe::scan_status(zombie).is_none());
}

#[test]
fn a_multi_record_file_is_read_to_its_end() {
    // smaps of this test process spans many 4 KiB reads; the kernel stops each read early
    // before a record that does not fit, so a short read must not be taken as the end.
    let pid = std::process::id() as i32;
    let mut handle = ProcessHandle::try_open(&ProcRoot::default(), pid).expect("self");
    let ours = handle.try_smaps().expect("smaps reads").0.len();
    let theirs = procfs::process::Process::myself()
        .expect("self")
        .smaps()
        .expect("procfs reads")
        .0
        .len();
    assert!(ours > 20, "{ours} mappings");
    // Mappings may come and go between the two reads (test threads); allow a little slack.
    assert!(ours.abs_diff(theirs) <= 4, "ours {ours}, procfs {theirs}");
}
