//! The one pass over a tar's headers (spec/archive.md AR-R1, AR-R6, AR-R7, AR-R12), for a file
//! read by positional reads and for a stream that cannot seek alike: each header is parsed and
//! checked, PAX and GNU long-name extension headers are read (bounded) and applied to the entry
//! they precede, an entry whose data runs past the end is named, and the end-of-archive marker
//! and what follows it are reported. The walk hands each logical entry to its caller, which
//! applies its own naming rules and reads the data it wants; what it leaves is passed over
//! (a file only moves its cursor), and the padding after a regular file is checked.

use std::io;

use super::header::{
    BLOCK, Deviation, HeaderKind, MAX_EXTENSION_BYTES, PaxOverrides, Trailer, is_ferrys_header, is_zero_block,
    is_zeros, padded, parse_header, parse_pax,
};
use crate::store::volumes::Volumes;

/// Longest GNU long name read.
const MAX_LONG_NAME_BYTES: u64 = 4096;

/// Where the bytes of a tar come from.
pub trait TarInput {
    /// Reads into `buf` until it is full or the input ends; returns the bytes read.
    fn read_up_to(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Passes over up to `count` bytes; returns how many there were.
    fn skip(&mut self, count: u64) -> io::Result<u64>;
    /// Bytes left, when the input knows (a file), so truncation is found before any read.
    fn remaining(&self) -> Option<u64>;
}

/// A file (or volumes) read by positional reads: skipping only moves the cursor.
pub struct PositionalInput<'a> {
    file: &'a Volumes,
    position: u64,
    len: u64,
}

impl<'a> PositionalInput<'a> {
    pub fn new(file: &'a Volumes) -> Self {
        PositionalInput { file, position: 0, len: file.len() }
    }
}

impl TarInput for PositionalInput<'_> {
    fn read_up_to(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(usize::try_from(self.len - self.position).unwrap_or(usize::MAX));
        self.file.read_exact_at(&mut buf[..n], self.position)?;
        self.position += n as u64;
        Ok(n)
    }

    fn skip(&mut self, count: u64) -> io::Result<u64> {
        let n = count.min(self.len - self.position);
        self.position += n;
        Ok(n)
    }

    fn remaining(&self) -> Option<u64> {
        Some(self.len - self.position)
    }
}

/// A stream that cannot seek (a pipe, a tape): skipping reads and discards.
pub struct StreamInput<R> {
    inner: R,
}

impl<R: io::Read> StreamInput<R> {
    pub fn new(inner: R) -> Self {
        StreamInput { inner }
    }
}

impl<R: io::Read> TarInput for StreamInput<R> {
    fn read_up_to(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    fn skip(&mut self, count: u64) -> io::Result<u64> {
        let mut sink = [0u8; 8192];
        let mut skipped = 0;
        while skipped < count {
            let want = (count - skipped).min(sink.len() as u64) as usize;
            let n = self.read_up_to(&mut sink[..want])?;
            skipped += n as u64;
            if n < want {
                break;
            }
        }
        Ok(skipped)
    }

    fn remaining(&self) -> Option<u64> {
        None
    }
}

/// Why the walk stopped, with the byte where it happened.
#[derive(Debug)]
pub enum WalkProblem {
    /// A header whose checksum or numbers are corrupt (or no tar at all).
    BadHeader { offset: u64, reason: String },
    /// An entry whose data runs past the end of the file.
    Truncated { name: String, size: u64, available: u64 },
    /// The input ends without the end-of-archive block.
    MissingEnd { offset: u64 },
    /// An extension header over its bound.
    Oversize { name: String, size: u64, limit: u64 },
    /// The input could not be read.
    Io(io::Error),
}

impl std::fmt::Display for WalkProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkProblem::BadHeader { offset, reason } => write!(f, "the header at byte {offset} is corrupt: {reason}"),
            WalkProblem::Truncated { name, size, available } => write!(
                f,
                "entry {name:?} is truncated: its header says {size} bytes but the file ends {available} bytes into it \
                 (copy the tarball again)"
            ),
            WalkProblem::MissingEnd { offset } => {
                write!(f, "the file ends at byte {offset} without the end-of-archive marker (it is truncated)")
            }
            WalkProblem::Oversize { name, size, limit } => {
                write!(f, "extension header {name:?} is {size} bytes, over the {limit}-byte limit")
            }
            WalkProblem::Io(err) => write!(f, "{err}"),
        }
    }
}

/// One logical entry: its header with the extension headers before it applied.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// The name as the archive spells it (a PAX path or GNU long name when there was one).
    pub raw_name: String,
    pub kind: HeaderKind,
    pub size: u64,
    /// Where its header block starts.
    pub header_offset: u64,
    /// Where its data starts.
    pub data_offset: u64,
}

/// The entry whose data the caller may still read.
struct Current {
    name: String,
    remaining: u64,
    padding: u64,
    regular: bool,
}

/// The walk over one tar; see the module documentation.
pub struct TarWalk<I> {
    input: I,
    /// Names the archive in the message of a cut stream.
    archive: String,
    offset: u64,
    current: Option<Current>,
    deviations: Vec<Deviation>,
}

impl<I: TarInput> TarWalk<I> {
    pub fn new(input: I, archive: impl Into<String>) -> Self {
        TarWalk { input, archive: archive.into(), offset: 0, current: None, deviations: Vec::new() }
    }

    /// Bytes of the tar passed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Headers and padding that are not what ferry writes (AR-R12), in order.
    pub fn deviations(&self) -> &[Deviation] {
        &self.deviations
    }

    /// Takes the deviations found so far.
    pub fn take_deviations(&mut self) -> Vec<Deviation> {
        std::mem::take(&mut self.deviations)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, WalkProblem> {
        let n = self.input.read_up_to(buf).map_err(WalkProblem::Io)?;
        self.offset += n as u64;
        Ok(n)
    }

    /// Reads exactly `buf.len()` bytes, or says where the tar ends.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), WalkProblem> {
        if self.read(buf)? < buf.len() {
            return Err(WalkProblem::MissingEnd { offset: self.offset });
        }
        Ok(())
    }

    fn skip(&mut self, count: u64) -> Result<(), WalkProblem> {
        let skipped = self.input.skip(count).map_err(WalkProblem::Io)?;
        self.offset += skipped;
        if skipped < count {
            return Err(WalkProblem::MissingEnd { offset: self.offset });
        }
        Ok(())
    }

    /// Passes over what is left of the current entry and its padding, checking the padding of
    /// a regular file (AR-R12).
    fn finish_current(&mut self) -> Result<(), WalkProblem> {
        let Some(current) = self.current.take() else { return Ok(()) };
        self.skip(current.remaining)?;
        if !current.regular {
            return self.skip(current.padding);
        }
        let mut padding = [0u8; BLOCK as usize];
        let padding = &mut padding[..current.padding as usize];
        self.fill(padding)?;
        if !is_zeros(padding) {
            self.deviations.push(Deviation::Padding(current.name));
        }
        Ok(())
    }

    /// The next logical entry, or `None` at the end-of-archive marker (the first zero block).
    pub fn next_entry(&mut self) -> Result<Option<WalkEntry>, WalkProblem> {
        self.finish_current()?;
        let mut pax = PaxOverrides::default();
        let mut long_name: Option<String> = None;
        loop {
            let header_offset = self.offset;
            let mut block = [0u8; BLOCK as usize];
            if self.read(&mut block)? < block.len() {
                return Err(WalkProblem::MissingEnd { offset: header_offset });
            }
            if is_zero_block(&block) {
                return Ok(None);
            }
            let bad = |reason: String| WalkProblem::BadHeader { offset: header_offset, reason };
            let header = parse_header(&block).map_err(bad)?;
            let size = pax.size.take().unwrap_or(header.size);
            let raw_name = long_name.take().or(pax.path.take()).unwrap_or(header.name);
            if !is_ferrys_header(&block, &raw_name, size, header.kind) {
                self.deviations.push(Deviation::Header(raw_name.clone()));
            }
            if let Some(available) = self.input.remaining() {
                if size > available {
                    return Err(WalkProblem::Truncated { name: raw_name, size, available });
                }
            }
            let limit = match header.kind {
                HeaderKind::PaxLocal | HeaderKind::PaxGlobal => MAX_EXTENSION_BYTES,
                HeaderKind::GnuLongName => MAX_LONG_NAME_BYTES,
                kind => {
                    let data_offset = self.offset;
                    let padding = padded(size) - size;
                    let regular = kind == HeaderKind::Regular;
                    self.current = Some(Current { name: raw_name.clone(), remaining: size, padding, regular });
                    return Ok(Some(WalkEntry { raw_name, kind, size, header_offset, data_offset }));
                }
            };
            if size > limit {
                return Err(WalkProblem::Oversize { name: raw_name, size, limit });
            }
            let mut data = vec![0u8; size as usize];
            self.fill(&mut data)?;
            self.skip(padded(size) - size)?;
            match header.kind {
                HeaderKind::PaxLocal => pax = parse_pax(&data).map_err(bad)?,
                HeaderKind::GnuLongName => {
                    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                    long_name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
                }
                _ => {} // a global PAX header carries nothing ferry uses
            }
        }
    }

    /// Reads the current entry's data: exactly its size, then the end; an input that ends
    /// inside it is an error saying so (the stream was cut).
    pub fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(current) = self.current.as_ref() else { return Ok(0) };
        if current.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(current.remaining).unwrap_or(usize::MAX));
        let n = self.input.read_up_to(&mut buf[..want])?;
        let current = self.current.as_mut().expect("checked above");
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ended inside {} with {} bytes of it still to come (the stream was cut)",
                    self.archive, current.name, current.remaining
                ),
            ));
        }
        self.offset += n as u64;
        current.remaining -= n as u64;
        Ok(n)
    }

    /// After [`TarWalk::next_entry`] has met the end-of-archive block: the second one, and how
    /// many bytes follow it when the input knows (a stream is not read past it).
    pub fn trailer(&mut self) -> Result<Trailer, WalkProblem> {
        let mut block = [0u8; BLOCK as usize];
        let complete = self.read(&mut block)? == block.len();
        let extra_bytes = if complete { self.input.remaining().unwrap_or(0) } else { 0 };
        Ok(Trailer { second_block_zero: complete && is_zero_block(&block), extra_bytes })
    }
}
