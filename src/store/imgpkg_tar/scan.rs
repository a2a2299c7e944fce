//! One pass over the headers of any tar file (no data read but extension headers), with every
//! length bounded: what the imgpkg tarball reader indexes and what the archive probe looks at.
//! The walk and the header format are the shared ones of `store::tar`, not duplicated.

use crate::store::tar::header::{HeaderKind, Trailer};
use crate::store::tar::walk::{PositionalInput, TarWalk, WalkProblem};
use crate::store::volumes::Volumes;

/// One entry of a tar file, extension headers already applied.
#[derive(Debug, Clone)]
pub struct ScannedEntry {
    pub name: String,
    pub kind: HeaderKind,
    pub data_offset: u64,
    pub size: u64,
}

/// Every entry of the file and what follows its end-of-archive block.
#[derive(Debug)]
pub struct Scanned {
    pub entries: Vec<ScannedEntry>,
    pub trailer: Trailer,
}

/// Why the headers could not be read, with the byte where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanProblem {
    /// A header whose checksum or numbers are corrupt (or no tar at all).
    BadHeader { offset: u64, reason: String },
    /// An entry whose data runs past the end of the file.
    Truncated { name: String, size: u64, available: u64 },
    /// The file ends without the end-of-archive block.
    MissingEnd { offset: u64 },
    /// An extension header over its bound.
    Oversize { name: String, size: u64, limit: u64 },
    /// The file could not be read.
    Io(String),
}

impl std::fmt::Display for ScanProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanProblem::BadHeader { offset, reason } => write!(f, "the header at byte {offset} is corrupt: {reason}"),
            ScanProblem::Truncated { name, size, available } => write!(
                f,
                "entry {name:?} is truncated: its header says {size} bytes but the file ends {available} bytes into it \
                 (copy the tarball again)"
            ),
            ScanProblem::MissingEnd { offset } => {
                write!(f, "the file ends at byte {offset} without the end-of-archive marker (it is truncated)")
            }
            ScanProblem::Oversize { name, size, limit } => {
                write!(f, "extension header {name:?} is {size} bytes, over the {limit}-byte limit")
            }
            ScanProblem::Io(reason) => f.write_str(reason),
        }
    }
}

/// Reads every header of `file` through the shared walk. At most `max_entries` entries are
/// taken (a bound on memory for a hostile file made of empty entries).
pub fn scan(file: &Volumes, max_entries: usize) -> Result<Scanned, ScanProblem> {
    let walked = |problem: WalkProblem| match problem {
        WalkProblem::BadHeader { offset, reason } => ScanProblem::BadHeader { offset, reason },
        WalkProblem::Truncated { name, size, available } => ScanProblem::Truncated { name, size, available },
        WalkProblem::MissingEnd { offset } => ScanProblem::MissingEnd { offset },
        WalkProblem::Oversize { name, size, limit } => ScanProblem::Oversize { name, size, limit },
        WalkProblem::Io(err) => ScanProblem::Io(err.to_string()),
    };
    let mut walk = TarWalk::new(PositionalInput::new(file), "the tarball");
    let mut entries = Vec::new();
    while let Some(entry) = walk.next_entry().map_err(walked)? {
        if entries.len() >= max_entries {
            return Err(ScanProblem::BadHeader {
                offset: entry.header_offset,
                reason: format!("more than {max_entries} entries"),
            });
        }
        entries.push(ScannedEntry {
            name: entry.raw_name,
            kind: entry.kind,
            data_offset: entry.data_offset,
            size: entry.size,
        });
    }
    let trailer = walk.trailer().map_err(walked)?;
    Ok(Scanned { entries, trailer })
}
