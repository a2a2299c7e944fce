//! The command line: flags (clap), progress display, printing and exit codes. The only place
//! that talks to a terminal; everything it runs lives in `ferry::ops`.

mod args;
mod copy;
mod describe;
mod escape;
mod exit;
mod export;
mod import;
mod inventory;
mod keys;
mod output;
mod progress;
mod pull;
mod push;
mod registry;
mod serve;
mod tag;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// Standard input as an archive stream (`-`), refused when it is a terminal.
fn stdin_archive() -> Result<std::io::BufReader<std::io::Stdin>, exit::Failure> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(exit::Failure {
            error: anyhow::anyhow!(
                "the archive is to come from standard input (-), which is a terminal: pipe it in, e.g. cat bundle.tar | ferry ... -"
            ),
            exit: exit::Exit::Usage,
        });
    }
    let mut input = std::io::BufReader::with_capacity(1 << 20, stdin);
    // Name a stream that is no ferry archive (compressed, empty, an imgpkg tarball) from its
    // first bytes, as a file is named, instead of calling it damaged (exit 2, not 3).
    let head = std::io::BufRead::fill_buf(&mut input)
        .map_err(|e| exit::Failure::new(anyhow::Error::new(e).context("reading standard input"), false))?;
    ferry::store::probe::probe_stream_head(head, "standard input").map_err(exit::fail)?;
    Ok(input)
}

/// Parses the arguments, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are "errors" to clap; their text goes to stdout and is checked
        // like any other data there (spec/cli.md "Exit codes").
        Err(err) => {
            use std::io::Write;
            let printed = err.print().and_then(|()| std::io::stdout().flush());
            if !err.use_stderr() {
                if let Err(failure) = output::stdout_outcome(printed) {
                    output::error(&failure.error);
                    return failure.exit.code();
                }
            }
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
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
        Command::Serve(args) => args.run(&cli.global),
        Command::Inventory(args) => args.run(&cli.global),
    };
    match outcome {
        Ok(exit) => exit.code(),
        Err(failure) => {
            output::error(&failure.error);
            failure.exit.code()
        }
    }
}
