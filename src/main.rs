use clap::Parser;
use memwarden::cli::{Cli, Command};
use memwarden::commands::{self, describe, exit_code_of};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => commands::run(args),
        Command::Attach(args) => commands::attach(args),
        Command::Export(args) => commands::export(args),
        Command::Analyze(args) => commands::analyze(args),
        Command::Check(args) => commands::check(args),
        Command::Diff(args) => commands::diff(args),
        Command::Report(args) => commands::report(args),
        Command::Simulate(args) => commands::simulate(args),
        Command::Soak(args) => commands::soak(args),
        Command::Replay(args) => commands::replay(args),
        Command::SystemdUnit(args) => commands::systemd_unit(args),
        Command::Demo(args) => commands::demo(args),
        Command::Watch(args) => commands::watch(args),
        Command::Publish(args) => commands::publish(args),
        Command::Fleet(args) => commands::fleet(args),
        Command::Completions(args) => commands::completions(args),
        Command::ManPage(args) => commands::man_page(args),
        Command::Guardian => Ok(memwarden::supervisor::guard(std::io::stdin().lock()) as u8),
        Command::FixtureWorker(args) => Ok(memwarden::fixture_worker::run(&args) as u8),
        Command::CompactSegment { log } => memwarden::recording::compact_segment(&log)
            .map(|()| 0)
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("memwarden: error: {}", describe(&error));
            ExitCode::from(exit_code_of(&error))
        }
    }
}
