//! Everything ferry prints: data on stdout (human text or `--json`), messages on stderr.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{self, Write};

use serde::Serialize;

/// Prints a value as pretty JSON on stdout, followed by a newline.
pub fn json<T: Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("reports always serialise");
    data(&text);
}

/// Prints data on stdout; a closed pipe (`ferry inspect x | head`) is not an error.
pub fn data(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// A message for the person at the terminal.
pub fn note(text: &str) {
    eprintln!("{text}");
}

pub fn warn(text: &str) {
    eprintln!("warning: {text}");
}

/// Prints an error with the causes its own message does not already include.
pub fn error(err: &anyhow::Error) {
    let message = err.to_string();
    eprintln!("error: {message}");
    for cause in err.chain().skip(1).map(|cause| cause.to_string()) {
        if !message.contains(&cause) {
            eprintln!("  caused by: {cause}");
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
