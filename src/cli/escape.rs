//! Untrusted text made safe for a terminal (spec/cli.md "Output"): what a bundle, an archive
//! or a registry wrote (lock annotations, references, tags, messages quoting a registry's body,
//! file names from layers) must not retitle, clear or reorder a reviewer's terminal. Control
//! characters and bidirectional overrides are printed escaped, as `\x1b` or `\u{202e}`; JSON
//! output never comes here and keeps every value exact.

use std::borrow::Cow;

use ferry::model::text::is_terminal_unsafe as is_unsafe;

/// `text` with every unsafe character but `keep` escaped; borrowed when nothing needed it.
fn escape_except<'a>(text: &'a str, keep: &[char]) -> Cow<'a, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep.contains(&c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_unsafe(c) || keep.contains(&c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// One untrusted value shown inside a line (an annotation, a name, a reference): newlines and
/// tabs are escaped too, so the value cannot forge a line of its own.
pub fn shown(value: &str) -> Cow<'_, str> {
    escape_except(value, &[])
}

/// A whole human message or block of lines: its own newlines and tabs are kept, every other
/// unsafe character escaped. Everything `output` prints for people passes through here.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    escape_except(text, &['\n', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_and_bidi_overrides_are_escaped() {
        let hostile = "a\x1b]0;pwned\x07b\x1b[2Jc\u{9b}31md\u{202e}e\u{2066}f\x7fg\r";
        assert_eq!(shown(hostile), "a\\x1b]0;pwned\\x07b\\x1b[2Jc\\u{9b}31md\\u{202e}e\\u{2066}f\\x7fg\\x0d");
        assert_eq!(shown("line\nforged\tcell"), "line\\x0aforged\\x09cell");
        assert_eq!(terminal_safe("line\n\tnext\x1b[2J"), "line\n\tnext\\x1b[2J");
        assert!(matches!(shown("registry.io/team/app:1.0 é ü 日本"), Cow::Borrowed(_)));
    }
}
