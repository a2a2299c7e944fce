//! Read-ahead: a thread receives the next chunks of a stream while the consumer hashes and
//! writes the current one, so receiving and hashing one blob overlap on two cores instead of
//! adding up (issue 18). The thread reads straight into the pool buffers the consumer hashes
//! and writes from ([`crate::verify::Chunk`]): no byte is copied between them. Memory is
//! bounded: a stream runs at most `depth` chunks ahead of its consumer (plus the one being
//! filled). Buffers come from one process-wide pool and go back to it as chunks are dropped,
//! so blob after blob reuses the same warm memory instead of mapping and zeroing fresh pages.
//! The thread starts when the first chunk is asked for, after the consumer could say how long
//! that chunk may be (a writer of whole filesystem blocks wants the bytes up to its first block
//! boundary alone).

use std::io::{self, Read};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, sync_channel};

use crate::verify::{BufferPool, Chunk, ChunkSource};

/// Size of every read-ahead buffer: large reads and direct writes, yet a few per stream keep
/// four workers within a few MiB.
pub const BUFFER_SIZE: usize = 1 << 20;
/// Buffers the shared pool keeps for reuse: more than four workers have in flight (4 each),
/// so none is freed and mapped again (freed buffers fragment the allocator and grow the RSS).
const POOL_KEEP: usize = 24;

fn shared_pool() -> &'static BufferPool {
    static POOL: OnceLock<BufferPool> = OnceLock::new();
    POOL.get_or_init(|| BufferPool::growing(POOL_KEEP, BUFFER_SIZE))
}

/// A stream's chunks, received ahead by a thread of their own.
pub struct ReadAhead {
    state: State,
    finished: bool,
}

/// The thread starts at the first chunk asked for, so that a consumer can first say how long
/// that chunk may be ([`ChunkSource::limit_first_chunk`]).
enum State {
    Waiting { inner: Box<dyn Read + Send>, depth: usize, first: usize },
    Running(Receiver<io::Result<Chunk>>),
}

impl ReadAhead {
    /// Reads `inner` at most `depth` chunks (at least one) ahead of the consumer.
    pub fn new<R: Read + Send + 'static>(inner: R, depth: usize) -> Self {
        ReadAhead {
            state: State::Waiting { inner: Box::new(inner), depth: depth.max(1), first: usize::MAX },
            finished: false,
        }
    }

    fn running(&mut self) -> &Receiver<io::Result<Chunk>> {
        if let State::Waiting { inner, depth, first } = &mut self.state {
            let inner = std::mem::replace(inner, Box::new(io::empty()));
            self.state = State::Running(spawn(inner, *depth, *first));
        }
        match &self.state {
            State::Running(filled) => filled,
            State::Waiting { .. } => unreachable!("started above"),
        }
    }
}

/// The read-ahead thread: the first chunk holds at most `first` bytes, every other a whole
/// buffer (the last one what is left).
fn spawn(mut inner: Box<dyn Read + Send>, depth: usize, first: usize) -> Receiver<io::Result<Chunk>> {
    let (filled_tx, filled) = sync_channel::<io::Result<Chunk>>(depth);
    let receiver = std::thread::Builder::new().name("ferry-receive".into());
    receiver
        .spawn(move || {
            let pool = shared_pool();
            let mut limit = first;
            // Ends when the stream ends, fails, or the consumer is gone (a send fails).
            loop {
                let (chunk, error) = pool.fill(&mut inner, limit);
                limit = usize::MAX;
                let ended = chunk.is_empty();
                if !ended && filled_tx.send(Ok(chunk)).is_err() {
                    return;
                }
                match error {
                    Some(error) => {
                        let _ = filled_tx.send(Err(error));
                        return;
                    }
                    None if ended => {
                        let _ = filled_tx.send(Ok(Chunk::owned(&[])));
                        return;
                    }
                    None => {}
                }
            }
        })
        .expect("the system starts a read-ahead thread");
    filled
}

impl ChunkSource for ReadAhead {
    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.finished {
            return Ok(None);
        }
        match self.running().recv() {
            Ok(Ok(chunk)) if chunk.is_empty() => {
                self.finished = true;
                Ok(None)
            }
            Ok(Ok(chunk)) => Ok(Some(chunk)),
            Ok(Err(e)) => {
                self.finished = true;
                Err(e)
            }
            Err(_) => Err(io::Error::other("the read-ahead thread stopped unexpectedly")),
        }
    }

    fn limit_first_chunk(&mut self, len: usize) {
        if let State::Waiting { first, .. } = &mut self.state {
            *first = len.max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sha256_digest;
    use crate::verify::VerifyingReader;

    #[test]
    fn delivers_every_byte_in_order() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut ahead = ReadAhead::new(io::Cursor::new(data.clone()), 3);
        let mut out = Vec::new();
        while let Some(chunk) = ahead.next_chunk().unwrap() {
            assert!(chunk.len() == BUFFER_SIZE || out.len() + chunk.len() == data.len(), "chunks are full");
            out.extend_from_slice(&chunk);
        }
        assert!(out == data);
        let digest = sha256_digest(&data);
        let ahead = ReadAhead::new(io::Cursor::new(data.clone()), 2);
        let mut reader = VerifyingReader::from_chunks(Box::new(ahead), digest, data.len() as u64, "test");
        let mut read = Vec::new();
        reader.read_to_end(&mut read).unwrap();
        assert!(read == data, "Read over chunks delivers the same bytes");
    }

    /// A writer of whole filesystem blocks asks for the bytes up to its first block boundary
    /// alone; every later chunk is a whole buffer again.
    #[test]
    fn the_first_chunk_can_be_limited() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut ahead = ReadAhead::new(io::Cursor::new(data.clone()), 2);
        ahead.limit_first_chunk(3584);
        let mut lengths = Vec::new();
        let mut out = Vec::new();
        while let Some(chunk) = ahead.next_chunk().unwrap() {
            lengths.push(chunk.len());
            out.extend_from_slice(&chunk);
        }
        assert_eq!(lengths[..3], [3584, BUFFER_SIZE, BUFFER_SIZE]);
        assert!(out == data);
    }

    #[test]
    fn passes_errors_through() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("boom"))
            }
        }
        let err = ReadAhead::new(Failing, 2).next_chunk().unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }
}
