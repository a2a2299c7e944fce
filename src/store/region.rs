//! A reader over a byte range of an archive's files, by positional reads (`pread`): many readers
//! can share the open files from many threads, nothing is mapped, and memory stays one buffer
//! per reader. The range may cross from one volume into the next.

use std::io::{self, Read};
use std::sync::Arc;

use super::volumes::Volumes;

/// Reads `len` bytes of `file` starting at `offset`.
pub struct FileRegion {
    file: Arc<Volumes>,
    offset: u64,
    remaining: u64,
}

impl FileRegion {
    pub fn new(file: Arc<Volumes>, offset: u64, len: u64) -> Self {
        FileRegion { file, offset, remaining: len }
    }
}

impl Read for FileRegion {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}
