//! `memwarden completions SHELL` and `memwarden man-page`: generated from the clap definitions
//! (clap_complete, clap_mangen), so they never disagree with `--help`. Hidden commands (the
//! guardian, the fixture worker) are left out of both.

use super::analyze::print;
use super::{own_work, EXIT_OK};
use crate::cli::{Cli, CompletionsArgs, ManPageArgs};
use anyhow::Context;
use clap::CommandFactory;

pub fn completions(args: CompletionsArgs) -> anyhow::Result<u8> {
    let mut command = visible();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "memwarden", &mut script);
    print(&String::from_utf8_lossy(&script))?;
    Ok(EXIT_OK)
}

pub fn man_page(args: ManPageArgs) -> anyhow::Result<u8> {
    let command = visible();
    match args.out {
        Some(dir) => {
            own_work(
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display())),
            )?;
            own_work(
                clap_mangen::generate_to(command, &dir)
                    .with_context(|| format!("cannot write the man pages into {}", dir.display())),
            )?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            print(&String::from_utf8_lossy(&page))?;
        }
    }
    Ok(EXIT_OK)
}

/// The command line without its hidden commands: clap_complete would offer them (bash, zsh and
/// fish all did), and clap has no way to remove a subcommand, so the top level is built again
/// around the visible ones (it has no arguments of its own besides help and version).
fn visible() -> clap::Command {
    let full = Cli::command();
    let mut command = clap::Command::new("memwarden")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true);
    if let Some(about) = full.get_about() {
        command = command.about(about.clone());
    }
    command.subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}
