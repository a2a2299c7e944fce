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

/// Reads every header of `file` through the shared walk. At most `max_entries` entries are
/// taken (a bound on memory for a hostile file made of empty entries).
pub fn scan(file: &Volumes, max_entries: usize) -> Result<Scanned, WalkProblem> {
    let mut walk = TarWalk::new(PositionalInput::new(file), "the tarball");
    let mut entries = Vec::new();
    while let Some(entry) = walk.next_entry()? {
        if entries.len() >= max_entries {
            return Err(WalkProblem::BadHeader {
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
    let trailer = walk.trailer()?;
    Ok(Scanned { entries, trailer })
}
