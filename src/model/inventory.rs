//! The inventory file (spec/archive.md "Deltas", DL-1): what a repository or archives hold, by
//! digest, as sorted text lines a person can read and a reviewer can diff. Writing and parsing
//! only; building one is `ops::inventory`'s.

use std::collections::BTreeMap;

use super::{Digest, sha256_digest};

/// The first line of every inventory: the format and its version.
pub const HEADER: &str = "# ferry inventory v1";

/// What a digest is, as an inventory line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Index,
    Manifest,
    Config,
    Layer,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Index => "index",
            Kind::Manifest => "manifest",
            Kind::Config => "config",
            Kind::Layer => "layer",
        }
    }

    fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            "index" => Kind::Index,
            "manifest" => Kind::Manifest,
            "config" => Kind::Config,
            "layer" => Kind::Layer,
            _ => return None,
        })
    }
}

/// Every digest a source holds, with its size and kind, and what the source was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The sources it was made of (a repository, or archives with their identities), one per
    /// line of the header.
    pub sources: Vec<String>,
    pub entries: BTreeMap<Digest, (u64, Kind)>,
}

/// Why an inventory file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("it does not start with {HEADER:?}: not a ferry inventory (or a later version)")]
    NotAnInventory,
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

impl Inventory {
    /// The file's text: the header, one `# source: ..` line per source, then one
    /// `sha256:<hex> <size> <kind>` line per digest, sorted by digest; LF line ends.
    pub fn to_text(&self) -> String {
        let mut text = format!("{HEADER}\n");
        for source in &self.sources {
            // One line each, without a CR either (a reader refuses one anywhere), and nothing a
            // terminal would be told to reorder (the file is also printed with `-o -`).
            let source: String =
                source.chars().map(|c| if super::text::is_terminal_unsafe(c) { ' ' } else { c }).collect();
            text.push_str(&format!("# source: {source}\n"));
        }
        for (digest, (size, kind)) in &self.entries {
            text.push_str(&format!("{digest} {size} {}\n", kind.as_str()));
        }
        text
    }

    /// The sha256 of [`Inventory::to_text`]: the inventory's identity.
    pub fn identity(&self) -> Digest {
        sha256_digest(self.to_text().as_bytes())
    }

    /// Parses an inventory's text (strictly: every line is a comment or an entry).
    pub fn parse(text: &str) -> Result<Inventory, InventoryError> {
        let mut lines = text.split('\n').enumerate();
        match lines.next() {
            Some((_, first)) if first == HEADER => {}
            Some((_, first)) if first.strip_suffix('\r') == Some(HEADER) => {
                return Err(InventoryError::Line {
                    line: 1,
                    reason: "ends with CR LF; an inventory's lines end with LF alone (was it converted?)".into(),
                });
            }
            _ => return Err(InventoryError::NotAnInventory),
        }
        let mut inventory = Inventory::default();
        let mut last: Option<Digest> = None;
        for (number, line) in lines {
            let bad = |reason: String| InventoryError::Line { line: number + 1, reason };
            // DL-1: LF line ends, as ferry writes them (a CR would also hide in messages).
            if line.contains('\r') {
                return Err(bad("has a carriage return; an inventory's lines end with LF alone".into()));
            }
            if let Some(source) = line.strip_prefix("# source: ") {
                inventory.sources.push(source.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let mut fields = line.split(' ');
            let (Some(digest), Some(size), Some(kind), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad(format!("{line:?} is not `sha256:<hex> <size> <kind>`")));
            };
            let digest: Digest = digest.parse().map_err(|e| bad(format!("{e}")))?;
            // Canonical decimal only (no sign, no leading zero): each size has one spelling.
            let canonical =
                !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()) && (size == "0" || !size.starts_with('0'));
            let size: u64 =
                size.parse().ok().filter(|_| canonical).ok_or_else(|| bad(format!("{size:?} is not a size")))?;
            let kind =
                Kind::parse(kind).ok_or_else(|| bad(format!("{kind:?} is not index, manifest, config or layer")))?;
            // DL-1: each digest once, in order: a second line for a digest would make the
            // last one win, silently.
            if last.is_some_and(|last| last >= digest) {
                return Err(bad(format!("{digest} is listed twice or out of order (DL-1: each digest once, sorted)")));
            }
            last = Some(digest);
            inventory.entries.insert(digest, (size, kind));
        }
        Ok(inventory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_is_sorted() {
        let mut inventory = Inventory { sources: vec!["repository r/x".into()], ..Inventory::default() };
        let b = sha256_digest(b"b");
        let a = sha256_digest(b"a");
        inventory.entries.insert(b, (1, Kind::Layer));
        inventory.entries.insert(a, (2, Kind::Manifest));
        let text = inventory.to_text();
        let (first, second) = if a < b { (a, b) } else { (b, a) };
        assert!(text.find(&first.to_string()).unwrap() < text.find(&second.to_string()).unwrap());
        assert_eq!(Inventory::parse(&text).unwrap(), inventory);
        assert!(matches!(Inventory::parse("hello\n"), Err(InventoryError::NotAnInventory)));
        assert!(Inventory::parse(&format!("{HEADER}\nsha256:zz 1 layer\n")).is_err());
    }

    /// What ferry writes it reads back, whatever a source's name holds.
    #[test]
    fn a_source_with_control_characters_is_written_readably() {
        let inventory = Inventory { sources: vec!["archive a\rb\nc.tar".into()], ..Inventory::default() };
        let parsed = Inventory::parse(&inventory.to_text()).unwrap();
        assert_eq!(parsed.sources, ["archive a b c.tar"]);
        let crlf = inventory.to_text().replace('\n', "\r\n");
        assert!(Inventory::parse(&crlf).unwrap_err().to_string().contains("CR LF"));
    }

    /// DL-1 (review s7 L2): one spelling for each inventory: a digest twice (the last line
    /// won), lines out of order, CR line ends and sizes with a sign or leading zeros are refused.
    #[test]
    fn only_canonical_inventories_are_read() {
        let (a, b) = {
            let (x, y) = (sha256_digest(b"a"), sha256_digest(b"b"));
            if x < y { (x, y) } else { (y, x) }
        };
        let parse = |lines: &str| Inventory::parse(&format!("{HEADER}\n{lines}"));
        assert!(parse(&format!("{a} 1 layer\n{b} 0 layer\n")).is_ok());
        for (case, lines) in [
            ("twice", format!("{a} 5 layer\n{a} 99 layer\n")),
            ("order", format!("{b} 1 layer\n{a} 1 layer\n")),
            ("crlf", format!("{a} 1 layer\r\n")),
            ("cr in a source", format!("# source: a\rb\n{a} 1 layer\n")),
            ("sign", format!("{a} +99 layer\n")),
            ("zeros", format!("{a} 099 layer\n")),
        ] {
            assert!(parse(&lines).is_err(), "{case}");
        }
    }
}
