//! One file per subcommand: glue between the command line and the library, nothing more.

mod analyze;
mod completions;
mod demo;
mod export;
mod fleet;
mod record;
mod replay;
mod report;
mod simulate;
mod soak;
mod watch;

pub use analyze::{analyze, check, diff};
pub use completions::{completions, man_page};
pub use demo::demo;
pub use export::export;
pub use fleet::{fleet, publish};
pub use record::{attach, run};
pub use replay::replay;
pub use report::report;
pub use simulate::{simulate, systemd_unit};
pub use soak::soak;
pub use watch::watch;

pub use crate::recording::default_run_dir;

pub use crate::exit::{
    describe, exit_code_of, own_work, OwnWork, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_FINDING, EXIT_OK,
};
