//! The command line: flags (clap), progress display, printing and exit codes. The only place
//! that talks to a terminal; everything it runs lives in `ferry::ops`.

mod args;
mod copy;
mod describe;
mod exit;
mod export;
mod import;
mod output;
mod progress;
mod pull;
mod push;
mod registry;
mod tag;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// Parses the arguments, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Copy(args) => args.run(&cli.global),
        Command::Export(args) => args.run(&cli.global),
        Command::Import(args) => args.run(&cli.global),
        Command::Verify(args) => args.run(&cli.global),
        Command::Inspect(args) => args.run(&cli.global),
        Command::Tag(args) => args.run(&cli.global),
        Command::Push(args) => args.run(&cli.global),
        Command::Pull(args) => args.run(&cli.global),
        Command::Describe(args) => args.run(&cli.global),
    };
    match outcome {
        Ok(exit) => exit.code(),
        Err(failure) => {
            output::error(&failure.error);
            failure.exit.code()
        }
    }
}
