//! Everything ferry prints: data on stdout (human text or `--json`), messages on stderr.
//! Human text passes through [`terminal_safe`] on its way out, so no control sequence from
//! untrusted text reaches a terminal; JSON is written exact (spec/cli.md "Output").

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{self, Write};

use serde::Serialize;

pub use super::escape::shown;
use super::escape::terminal_safe;

/// Prints a value as pretty JSON on stdout, followed by a newline.
pub fn json<T: Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("reports always serialise");
    // Exact: a program reads the values as stored (serde escapes C0 controls itself).
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Prints human data on stdout; a closed pipe (`ferry inspect x | head`) is not an error.
pub fn data(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}", terminal_safe(text));
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
