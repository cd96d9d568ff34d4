//! How the fixture holds memory: touched buffers, a heap or shared-memory leak sink, a forked
//! child that leaks, and mappings made, touched and dropped in a loop.

use super::*;

/// One map, touch and unmap of `bytes` of anonymous memory; how long it took.
pub(super) fn map_touch_unmap(bytes: usize) -> Duration {
    use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
    let started = Instant::now();
    let Some(length) = std::num::NonZeroUsize::new(bytes) else {
        return Duration::ZERO;
    };
    let protection = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a fresh anonymous mapping at an address the kernel picks aliases nothing.
    let mapped = unsafe { mmap_anonymous(None, length, protection, MapFlags::MAP_PRIVATE) };
    let Ok(mapped) = mapped else {
        return started.elapsed();
    };
    let page = 4096;
    for offset in (0..bytes).step_by(page) {
        // SAFETY: offset < bytes, inside the mapping just made readable and writable.
        unsafe { mapped.cast::<u8>().add(offset).write_volatile(1) };
    }
    // SAFETY: the mapping is ours, `bytes` long, and nothing refers to it any more.
    let _ = unsafe { munmap(mapped, bytes) };
    started.elapsed()
}

pub(super) fn touched(mib: f64) -> Vec<u8> {
    vec![1u8; (mib * MIB) as usize]
}

/// SplitMix64 (Steele, Lea & Flood 2014): well-mixed consecutive outputs, no dependency. Noise
/// must not correlate with the trial number, or with a parameter cycling with it.
pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where leaked memory goes.
pub(super) enum LeakSink {
    Heap(Vec<Vec<u8>>),
    Shared(Vec<(std::os::fd::OwnedFd, std::ptr::NonNull<std::ffi::c_void>)>),
    /// A forked child that allocates on request: `(request pipe, acknowledgement pipe)`.
    Child(std::fs::File, std::fs::File),
}

impl LeakSink {
    pub(super) fn leak(&mut self, mib: f64) {
        match self {
            LeakSink::Heap(kept) => kept.push(touched(mib)),
            LeakSink::Shared(maps) => maps.push(shared_touched(mib)),
            LeakSink::Child(request, ack) => {
                let _ = request.write_all(&mib.to_le_bytes());
                let mut done = [0u8; 1];
                let _ = ack.read_exact(&mut done);
            }
        }
    }
}

pub(super) fn shared_touched(
    mib: f64,
) -> (std::os::fd::OwnedFd, std::ptr::NonNull<std::ffi::c_void>) {
    use nix::sys::mman::{mmap, MapFlags, ProtFlags};
    let bytes = ((mib * MIB) as usize).max(4096);
    // The raw system call: glibc wraps memfd_create only from 2.27, and the shipped binary
    // links against glibc 2.17 (manylinux2014) to install on older distributions.
    let name = c"memwarden-fixture-shm";
    // SAFETY: a NUL-terminated name and valid flags; the kernel returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(
        raw >= 0,
        "fixture: memfd_create: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a descriptor just created, owned by nothing else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
    nix::unistd::ftruncate(&fd, bytes as i64).expect("fixture: ftruncate");
    let length = std::num::NonZeroUsize::new(bytes).expect("fixture: non-zero size");
    // SAFETY: a fresh shared mapping of a memfd we own, written only within its length.
    let ptr = unsafe {
        mmap(
            None,
            length,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            &fd,
            0,
        )
        .expect("fixture: mmap")
    };
    // SAFETY: `ptr` is valid for `bytes` bytes (the mapping just made).
    unsafe { std::ptr::write_bytes(ptr.as_ptr().cast::<u8>(), 1, bytes) };
    (fd, ptr)
}

/// Forks the helper child that holds the leak in `--child-leak` mode.
pub(super) fn fork_leaking_child() -> LeakSink {
    let (request_read, request_write) = nix::unistd::pipe().expect("fixture: pipe");
    let (ack_read, ack_write) = nix::unistd::pipe().expect("fixture: pipe");
    // SAFETY: the fixture is single-threaded here, so the child may allocate after fork.
    match unsafe { nix::unistd::fork() }.expect("fixture: fork") {
        nix::unistd::ForkResult::Child => {
            // Like a dataloader worker: die with the parent.
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            drop(request_write);
            drop(ack_read);
            let mut requests = std::fs::File::from(request_read);
            let mut ack = std::fs::File::from(ack_write);
            let mut kept = Vec::new();
            let mut mib = [0u8; 8];
            while requests.read_exact(&mut mib).is_ok() {
                kept.push(touched(f64::from_le_bytes(mib)));
                let _ = ack.write_all(b"k");
            }
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Parent { .. } => LeakSink::Child(
            std::fs::File::from(request_write),
            std::fs::File::from(ack_read),
        ),
    }
}
