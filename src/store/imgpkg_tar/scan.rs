//! One pass over the headers of any tar file (no data read but extension headers), with every
//! length bounded: what the imgpkg tarball reader indexes and what the archive probe looks at.
//! The header format itself is `layout_tar::header`'s, shared, not duplicated.

use crate::store::layout_tar::header::{
    BLOCK, HeaderKind, MAX_EXTENSION_BYTES, PaxOverrides, Trailer, is_zero_block, padded, parse_header, parse_pax,
};
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

/// Reads every header of `file`. At most `max_entries` entries are taken (a bound on memory for
/// a hostile file made of empty entries).
pub fn scan(file: &Volumes, max_entries: usize) -> Result<Scanned, ScanProblem> {
    let file_size = file.len();
    let read =
        |buf: &mut [u8], offset: u64| file.read_exact_at(buf, offset).map_err(|e| ScanProblem::Io(e.to_string()));
    let mut entries = Vec::new();
    let mut pax = PaxOverrides::default();
    let mut long_name: Option<String> = None;
    let mut offset = 0u64;
    loop {
        if offset + BLOCK > file_size {
            return Err(ScanProblem::MissingEnd { offset });
        }
        let mut block = [0u8; BLOCK as usize];
        read(&mut block, offset)?;
        if is_zero_block(&block) {
            let start = offset + BLOCK;
            let trailer = if file_size - start < BLOCK {
                Trailer { second_block_zero: false, extra_bytes: 0 }
            } else {
                let mut second = [0u8; BLOCK as usize];
                read(&mut second, start)?;
                Trailer { second_block_zero: is_zero_block(&second), extra_bytes: file_size - start - BLOCK }
            };
            return Ok(Scanned { entries, trailer });
        }
        let header = parse_header(&block).map_err(|reason| ScanProblem::BadHeader { offset, reason })?;
        let size = pax.size.take().unwrap_or(header.size);
        let name = long_name.take().or(pax.path.take()).unwrap_or(header.name);
        let data_offset = offset + BLOCK;
        let available = file_size - data_offset;
        if size > available {
            return Err(ScanProblem::Truncated { name, size, available });
        }
        let extension = |limit: u64| -> Result<Vec<u8>, ScanProblem> {
            if size > limit {
                return Err(ScanProblem::Oversize { name: name.clone(), size, limit });
            }
            let mut data = vec![0u8; size as usize];
            read(&mut data, data_offset)?;
            Ok(data)
        };
        match header.kind {
            HeaderKind::PaxLocal => {
                pax = parse_pax(&extension(MAX_EXTENSION_BYTES)?)
                    .map_err(|reason| ScanProblem::BadHeader { offset, reason })?;
            }
            HeaderKind::PaxGlobal => {
                extension(MAX_EXTENSION_BYTES)?;
            }
            HeaderKind::GnuLongName => {
                let data = extension(4096)?;
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                long_name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
            }
            kind => {
                if entries.len() >= max_entries {
                    return Err(ScanProblem::BadHeader { offset, reason: format!("more than {max_entries} entries") });
                }
                entries.push(ScannedEntry { name, kind, data_offset, size });
            }
        }
        offset = data_offset + padded(size);
    }
}
