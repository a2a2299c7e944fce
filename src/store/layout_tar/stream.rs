//! Reading an archive front to back from a stream that cannot seek (a pipe, a tape), with the
//! same rules as the archive source (spec/archive.md AR-R1..AR-R7, AR-R12): the headers come
//! from the same walk ([`crate::store::tar::walk`]) and the names pass the same checks; a stream
//! that ends early says where.

use std::collections::HashSet;
use std::io::{self, Read};

use super::error::{ArchiveError, ArchiveProblem, walk_failure};
use super::header::{Deviation, HeaderKind, Trailer};
use super::reader::check_entry_name;
use crate::store::StoreError;
use crate::store::tar::walk::{StreamInput, TarWalk, WalkProblem};

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
    walk: TarWalk<StreamInput<R>>,
    name: String,
    seen: HashSet<String>,
}

impl<R: Read> TarStream<R> {
    pub fn new(inner: R, name: impl Into<String>) -> Self {
        let name = name.into();
        TarStream { walk: TarWalk::new(StreamInput::new(inner), name.clone()), name, seen: HashSet::new() }
    }

    /// Headers and padding that are not what ferry writes (AR-R12), in stream order.
    pub fn deviations(&self) -> &[Deviation] {
        self.walk.deviations()
    }

    /// After [`TarStream::next_entry`] has met the end-of-archive block: reads the second one,
    /// and nothing after it (not part of the archive).
    pub fn read_trailer(&mut self) -> Result<Trailer, StoreError> {
        self.walk.trailer().map_err(|problem| self.walked(problem))
    }

    /// Bytes read from the stream so far.
    pub fn position(&self) -> u64 {
        self.walk.offset()
    }

    fn fail(&self, problem: ArchiveProblem) -> StoreError {
        StoreError::Archive(ArchiveError { archive: self.name.clone(), problem })
    }

    fn walked(&self, problem: WalkProblem) -> StoreError {
        walk_failure(&self.name, problem)
    }

    /// The next regular file (directories are checked and passed over), or `None` at the
    /// end-of-archive marker. Whatever is left of the previous entry's data is skipped.
    pub fn next_entry(&mut self) -> Result<Option<StreamEntry>, StoreError> {
        loop {
            let Some(entry) = self.walk.next_entry().map_err(|problem| self.walked(problem))? else {
                return Ok(None);
            };
            let name = check_entry_name(&entry.raw_name, entry.kind).map_err(|problem| self.fail(problem))?;
            if !self.seen.insert(name.clone()) {
                return Err(self.fail(ArchiveProblem::Duplicate { name }));
            }
            if entry.kind == HeaderKind::Regular {
                return Ok(Some(StreamEntry { name, size: entry.size, offset: entry.data_offset }));
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
        self.stream.walk.read_data(buf)
    }
}
