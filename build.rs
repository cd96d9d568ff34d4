//! Builds the native allocation sampler that `--trace-python` preloads into Python workers
//! (src/pytrace/native_sampler.c) as a shared object, which the binary carries
//! (`include_bytes!` in src/pytrace/install.rs) and writes into each run directory: nothing to
//! install. It interposes glibc's allocator (`__libc_malloc` and friends), so it is built for
//! glibc on Linux only; elsewhere, or where the C compiler fails, the binary carries an empty
//! file and a run says the sampler is not available.

use std::path::PathBuf;

fn main() {
    let source = "src/pytrace/native_sampler.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let library = out.join("libmemwarden_native.so");
    let glibc = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let built = glibc && {
        let compiler = cc::Build::new().get_compiler();
        let status = compiler
            .to_command()
            .args(["-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-o"])
            .arg(&library)
            .arg(source)
            .args(["-ldl", "-lpthread"])
            .status();
        match status {
            Ok(status) if status.success() => true,
            other => {
                println!(
                    "cargo:warning=the native allocation sampler was not built ({other:?}): \
                     --trace-python will name Python-heap lines only"
                );
                false
            }
        }
    };
    if !built {
        std::fs::write(&library, b"").expect("OUT_DIR is writable");
    }
}
