//! Everything ferry prints: data on stdout (human text or `--json`), messages on stderr.
//! Human text passes through [`terminal_safe`] on its way out, so no control sequence from
//! untrusted text reaches a terminal; JSON is written exact (spec/cli.md "Output").
//!
//! Every write to stdout is checked, its flush included, and a failure is the command's failure
//! (exit 1, `error: writing to stdout: ...`): data a program was to read must not vanish into a
//! full disk while ferry says it succeeded. Only a closed pipe (`ferry inspect x | head`) is quiet
//! (spec/cli.md "Exit codes").

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{self, Write};

use serde::Serialize;

pub use super::escape::shown;
use super::escape::terminal_safe;
use super::exit::{Exit, Failure};

/// Prints a value as pretty JSON on stdout, followed by a newline.
pub fn json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).expect("reports always serialise");
    // Exact: a program reads the values as stored (serde escapes C0 controls itself).
    to_stdout(text.as_bytes())
}

/// Prints `value` as one line of JSON on stdout (a ready line a script reads with one read).
pub fn json_line<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string(value).expect("reports always serialise");
    to_stdout(text.as_bytes())
}

/// Prints human data on stdout, followed by a newline.
pub fn data(text: &str) -> Result<(), Failure> {
    to_stdout(terminal_safe(text).as_bytes())
}

/// Writes `bytes` and a newline to stdout and flushes them, so a full disk is seen here.
fn to_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    let written = out.write_all(bytes).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    stdout_outcome(written)
}

/// What a write to stdout means for the command: a closed pipe is quiet (the reader has all it
/// wanted), any other error fails the command naming the cause.
pub fn stdout_outcome(written: io::Result<()>) -> Result<(), Failure> {
    match written {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => {
            Err(Failure { error: anyhow::anyhow!("writing to stdout: {}", without_os_code(&err)), exit: Exit::Failure })
        }
    }
}

/// `No space left on device`, without Rust's ` (os error 28)`: the words are what people read.
fn without_os_code(err: &io::Error) -> String {
    let text = err.to_string();
    match (err.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => text[..at].to_string(),
        _ => text,
    }
}

/// A message for the person at the terminal.
pub fn note(text: &str) {
    eprintln!("{}", terminal_safe(text));
}

pub fn warn(text: &str) {
    eprintln!("warning: {}", terminal_safe(text));
}

/// Prints an error with the causes its own message does not already include.
pub fn error(err: &anyhow::Error) {
    let message = err.to_string();
    eprintln!("error: {}", terminal_safe(&message));
    for cause in err.chain().skip(1).map(|cause| cause.to_string()) {
        if !message.contains(&cause) {
            eprintln!("  caused by: {}", terminal_safe(&cause));
        }
    }
}

/// Bytes for people: `1.5 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_quiet_and_a_full_disk_is_a_failure() {
        assert!(stdout_outcome(Err(io::Error::from(io::ErrorKind::BrokenPipe))).is_ok());
        let full = stdout_outcome(Err(io::Error::from_raw_os_error(libc::ENOSPC))).unwrap_err();
        assert_eq!(full.exit, Exit::Failure);
        assert_eq!(full.error.to_string(), "writing to stdout: No space left on device");
    }
}
