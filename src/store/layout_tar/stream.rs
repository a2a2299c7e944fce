//! Reading an archive front to back from a stream that cannot seek (a pipe, a tape), with the
//! same rules as the archive source (spec/archive.md AR-R1..AR-R7): each header is validated
//! as it arrives, extension headers are bounded, and a stream that ends early says where.

use std::collections::HashSet;
use std::io::{self, Read};

use super::error::{ArchiveError, ArchiveProblem};
use super::header::{
    BLOCK, Deviation, HeaderKind, MAX_EXTENSION_BYTES, PaxOverrides, Trailer, is_ferrys_header, is_zero_block,
    is_zeros, padded, parse_header, parse_pax,
};
use super::reader::check_entry_name;
use crate::store::StoreError;

/// A regular-file entry of the stream; its data is read with [`TarStream::data`].
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub name: String,
    pub size: u64,
    /// Where its data starts in the stream.
    pub offset: u64,
}

/// The entries of a tar stream, in order.
pub struct TarStream<R> {
    inner: R,
    name: String,
    offset: u64,
    remaining: u64,
    padding: u64,
    current: Option<String>,
    seen: HashSet<String>,
    /// Headers and padding that are not what ferry writes (AR-R12).
    deviations: Vec<Deviation>,
}

impl<R: Read> TarStream<R> {
    pub fn new(inner: R, name: impl Into<String>) -> Self {
        TarStream {
            inner,
            name: name.into(),
            offset: 0,
            remaining: 0,
            padding: 0,
            current: None,
            seen: HashSet::new(),
            deviations: Vec::new(),
        }
    }

    /// Headers and padding that are not what ferry writes (AR-R12), in stream order.
    pub fn deviations(&self) -> &[Deviation] {
        &self.deviations
    }

    /// Reads the padding after the current entry's data, noting the entry if it is not zeros.
    fn read_padding(&mut self) -> Result<(), StoreError> {
        let mut padding = [0u8; BLOCK as usize];
        let padding = &mut padding[..self.padding as usize];
        self.fill(padding)?;
        if !is_zeros(padding) {
            if let Some(name) = &self.current {
                self.deviations.push(Deviation::Padding(name.clone()));
            }
        }
        Ok(())
    }

    /// After [`TarStream::next_entry`] has met the end-of-archive block: reads the second one,
    /// and nothing after it (not part of the archive).
    pub fn read_trailer(&mut self) -> Result<Trailer, StoreError> {
        let mut block = [0u8; BLOCK as usize];
        let complete = self.read_up_to(&mut block)? == block.len();
        Ok(Trailer { second_block_zero: complete && is_zero_block(&block), extra_bytes: 0 })
    }

    /// Bytes read from the stream so far.
    pub fn position(&self) -> u64 {
        self.offset
    }

    fn fail(&self, problem: ArchiveProblem) -> StoreError {
        StoreError::Archive(ArchiveError { archive: self.name.clone(), problem })
    }

    /// Reads exactly `buf.len()` bytes, or says the stream was cut.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        if self.read_up_to(buf)? < buf.len() {
            return Err(self.fail(ArchiveProblem::MissingEnd { offset: self.offset }));
        }
        Ok(())
    }

    /// Reads until `buf` is full or the stream ends; returns the bytes read.
    fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize, StoreError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::io(format!("reading {}", self.name), e)),
            }
        }
        Ok(filled)
    }

    fn skip(&mut self, mut count: u64) -> Result<(), StoreError> {
        let mut sink = [0u8; 8192];
        while count > 0 {
            let n = count.min(sink.len() as u64) as usize;
            self.fill(&mut sink[..n])?;
            count -= n as u64;
        }
        Ok(())
    }

    /// The next regular file (directories are checked and passed over), or `None` at the
    /// end-of-archive marker. Whatever is left of the previous entry's data is skipped.
    pub fn next_entry(&mut self) -> Result<Option<StreamEntry>, StoreError> {
        self.skip(self.remaining)?;
        self.read_padding()?;
        (self.remaining, self.padding, self.current) = (0, 0, None);
        let mut pax = PaxOverrides::default();
        let mut long_name: Option<String> = None;
        loop {
            let header_offset = self.offset;
            let mut block = [0u8; BLOCK as usize];
            self.fill(&mut block)?;
            if is_zero_block(&block) {
                return Ok(None);
            }
            let header = parse_header(&block)
                .map_err(|reason| self.fail(ArchiveProblem::BadHeader { offset: header_offset, reason }))?;
            let size = pax.size.take().unwrap_or(header.size);
            let raw_name = long_name.take().or(pax.path.take()).unwrap_or(header.name);
            if !is_ferrys_header(&block, &raw_name, size, header.kind) {
                self.deviations.push(Deviation::Header(raw_name.clone()));
            }
            let read_extension = |stream: &mut Self, limit: u64| -> Result<Vec<u8>, StoreError> {
                if size > limit {
                    return Err(stream.fail(ArchiveProblem::Oversize { name: raw_name.clone(), size, limit }));
                }
                let mut data = vec![0u8; size as usize];
                stream.fill(&mut data)?;
                stream.skip(padded(size) - size)?;
                Ok(data)
            };
            match header.kind {
                HeaderKind::PaxLocal => {
                    let data = read_extension(self, MAX_EXTENSION_BYTES)?;
                    pax = parse_pax(&data)
                        .map_err(|reason| self.fail(ArchiveProblem::BadHeader { offset: header_offset, reason }))?;
                }
                HeaderKind::PaxGlobal => {
                    read_extension(self, MAX_EXTENSION_BYTES)?;
                }
                HeaderKind::GnuLongName => {
                    let data = read_extension(self, 4096)?;
                    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                    long_name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
                }
                kind => {
                    let name = check_entry_name(&raw_name, kind).map_err(|problem| self.fail(problem))?;
                    if !self.seen.insert(name.clone()) {
                        return Err(self.fail(ArchiveProblem::Duplicate { name }));
                    }
                    if kind != HeaderKind::Regular {
                        self.skip(padded(size))?;
                        continue;
                    }
                    (self.remaining, self.padding) = (size, padded(size) - size);
                    self.current = Some(name.clone());
                    return Ok(Some(StreamEntry { name, size, offset: self.offset }));
                }
            }
        }
    }

    /// The current entry's data: exactly its size, then the end (a cut stream is an error).
    pub fn data(&mut self) -> EntryData<'_, R> {
        EntryData { stream: self }
    }
}

/// Reads the current entry's data.
pub struct EntryData<'a, R> {
    stream: &'a mut TarStream<R>,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stream = &mut *self.stream;
        if stream.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(stream.remaining).unwrap_or(usize::MAX));
        let n = stream.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ended inside {} with {} bytes of it still to come (the stream was cut)",
                    stream.name,
                    stream.current.as_deref().unwrap_or("an entry"),
                    stream.remaining
                ),
            ));
        }
        stream.offset += n as u64;
        stream.remaining -= n as u64;
        Ok(n)
    }
}
