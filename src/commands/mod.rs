//! One file per subcommand: glue between the command line and the library, nothing more.

mod analyze;
mod demo;
mod export;
mod record;
mod replay;
mod report;
mod simulate;
mod soak;

pub use analyze::{analyze, check, diff};
pub use demo::demo;
pub use export::export;
pub use record::{attach, run};
pub use replay::replay;
pub use report::report;
pub use simulate::{simulate, systemd_unit};
pub use soak::soak;

use std::path::PathBuf;

pub use crate::exit::{
    describe, exit_code_of, own_work, OwnWork, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_FINDING, EXIT_OK,
};

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
