//! The `ferry` binary: parse, run, map the outcome to an exit code (spec/cli.md "exit codes").

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
