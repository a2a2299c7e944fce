//! Chunks: the buffers a blob's bytes are received into, hashed in and written from, without
//! being copied between them (issue 18). A [`BufferPool`] owns a fixed number of buffers, so a
//! pipeline of receive, hash and write holds at most that much memory; a [`Chunk`] is one
//! filled buffer, which goes back to its pool when dropped, on whichever thread drops it.
//!
//! Buffers start at a multiple of [`ALIGNMENT`] in memory and hold a multiple of it, which is
//! what a direct (page-cache-bypassing) write asks of the memory it writes from.

use std::io::{self, Read};
use std::ops::Deref;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Memory alignment of every pool buffer: a page, enough for `O_DIRECT` on any Linux device.
pub const ALIGNMENT: usize = 4096;

/// A buffer whose usable bytes start at an [`ALIGNMENT`] boundary (over-allocated by one
/// alignment, so no unsafe allocation is needed).
pub struct AlignedBuffer {
    raw: Vec<u8>,
    start: usize,
    capacity: usize,
}

impl AlignedBuffer {
    /// A zeroed buffer of `capacity` bytes rounded up to [`ALIGNMENT`].
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1).div_ceil(ALIGNMENT) * ALIGNMENT;
        let raw = vec![0u8; capacity + ALIGNMENT];
        let start = raw.as_ptr().align_offset(ALIGNMENT);
        AlignedBuffer { raw, start, capacity }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.capacity]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.capacity]
    }
}

/// A set of buffers handed out in turn. A bounded pool ([`BufferPool::new`]) waits in
/// [`BufferPool::take`] while all its buffers are in use, which is what bounds a pipeline's
/// memory; a growing one ([`BufferPool::growing`]) allocates another instead, for a consumer
/// that may hold chunks while asking for more.
pub struct BufferPool {
    /// Behind a lock only so that one pool can serve many threads (a process-wide pool).
    free: Mutex<Receiver<AlignedBuffer>>,
    recycle: SyncSender<AlignedBuffer>,
    size: usize,
    grows: bool,
}

impl BufferPool {
    /// `count` buffers (at least one) of `size` bytes each.
    pub fn new(count: usize, size: usize) -> Self {
        let count = count.max(1);
        let (recycle, free) = sync_channel(count);
        for _ in 0..count {
            recycle.send(AlignedBuffer::new(size)).expect("the channel has room for every buffer");
        }
        BufferPool { free: Mutex::new(free), recycle, size, grows: false }
    }

    /// Buffers of `size` bytes allocated when none is free; at most `keep` are kept for reuse.
    pub fn growing(keep: usize, size: usize) -> Self {
        let (recycle, free) = sync_channel(keep.max(1));
        BufferPool { free: Mutex::new(free), recycle, size, grows: true }
    }

    /// The next free buffer: waiting for one to come back if all are in use (or allocating
    /// one, in a growing pool).
    pub fn take(&self) -> AlignedBuffer {
        let free = self.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.grows {
            return free.try_recv().unwrap_or_else(|_| AlignedBuffer::new(self.size));
        }
        // The pool holds a sender itself, so the channel never disconnects while it waits.
        free.recv().expect("a pool keeps a sender of its own")
    }

    /// Reads from `reader` into the next free buffer until it is full or the stream ends, and
    /// returns what was read as a chunk (possibly empty: the stream had ended). A failure after
    /// some bytes returns those bytes first and the failure with them.
    pub fn fill(&self, reader: &mut dyn Read, limit: usize) -> (Chunk, Option<io::Error>) {
        let mut buffer = self.take();
        let limit = limit.min(buffer.capacity());
        let mut filled = 0;
        let mut failure = None;
        let slice = buffer.as_mut_slice();
        while filled < limit {
            match reader.read(&mut slice[filled..limit]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        (Chunk { buffer: Some(buffer), len: filled, recycle: Some(self.recycle.clone()) }, failure)
    }
}

/// One buffer of received bytes; back to its pool when dropped.
pub struct Chunk {
    buffer: Option<AlignedBuffer>,
    len: usize,
    recycle: Option<SyncSender<AlignedBuffer>>,
}

impl Chunk {
    /// Bytes of a buffer owned by no pool (tests, small blobs).
    pub fn owned(bytes: &[u8]) -> Self {
        let mut buffer = AlignedBuffer::new(bytes.len());
        buffer.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        Chunk { buffer: Some(buffer), len: bytes.len(), recycle: None }
    }

    /// The whole buffer behind the chunk: its bytes, then what the buffer holds past them (zero
    /// in a fresh buffer, stale bytes of an earlier chunk otherwise). For writers that must
    /// write whole blocks and zero the tail themselves.
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().expect("a chunk holds its buffer until dropped").as_mut_slice()
    }
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk").field("len", &self.len).finish()
    }
}

impl Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buffer.as_ref().expect("a chunk holds its buffer until dropped").as_slice()[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let (Some(buffer), Some(recycle)) = (self.buffer.take(), &self.recycle) {
            // The pool may be gone (its reader finished); then the buffer is simply freed.
            let _ = recycle.try_send(buffer);
        }
    }
}

/// Where a verifying reader takes whole chunks from (a read-ahead thread, say), instead of
/// reading into a buffer of its own.
pub trait ChunkSource: Send {
    /// The next chunk of the stream; an empty chunk or `None` at its end.
    fn next_chunk(&mut self) -> io::Result<Option<Chunk>>;

    /// Asks that the first chunk hold at most `len` bytes (at least one), so that every later
    /// chunk starts where a writer wants its buffers to (a filesystem block); called before the
    /// first chunk, a hint a source may ignore.
    fn limit_first_chunk(&mut self, _len: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_return_to_their_pool() {
        let pool = BufferPool::new(2, 5000);
        let data = vec![7u8; 20_000];
        let mut reader = &data[..];
        let (first, _) = pool.fill(&mut reader, usize::MAX);
        let (second, _) = pool.fill(&mut reader, 100);
        assert_eq!((first.len(), second.len()), (8192, 100));
        assert_eq!(first.as_ptr() as usize % ALIGNMENT, 0);
        drop(first);
        let (third, error) = pool.fill(&mut reader, usize::MAX);
        assert!(error.is_none());
        assert_eq!(third.len(), 8192, "a buffer came back and was filled again");
    }
}
