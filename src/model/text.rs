//! Which characters untrusted text must not carry to a terminal as they are: C0 controls, DEL,
//! C1 controls (U+009B is a one-character CSI) and the bidirectional embeddings, overrides and
//! isolates (U+202A..U+202E, U+2066..U+2069), which reorder what a line seems to say. The
//! command line escapes them where it prints (spec/cli.md "Output"); files ferry writes to be
//! printed as they are (an inventory) leave them out.

/// Whether `c` must not reach a terminal as it is.
pub fn is_terminal_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}
