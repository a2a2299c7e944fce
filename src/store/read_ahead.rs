//! Read-ahead: a thread receives the next chunks of a stream while the consumer hashes and
//! writes the current one, so receiving and hashing one blob overlap on two cores instead of
//! adding up (issue 18). The thread reads straight into the pool buffers the consumer hashes
//! and writes from ([`crate::verify::Chunk`]): no byte is copied between them. Memory is
//! bounded: `depth` buffers of `buffer_size` bytes, recycled as the consumer drops chunks.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, sync_channel};

use crate::verify::{BufferPool, Chunk, ChunkSource};

/// A stream's chunks, received ahead by a thread of their own.
pub struct ReadAhead {
    filled: Receiver<io::Result<Chunk>>,
    finished: bool,
}

impl ReadAhead {
    pub fn new<R: Read + Send + 'static>(mut inner: R, depth: usize, buffer_size: usize) -> Self {
        let depth = depth.max(1);
        let (filled_tx, filled) = sync_channel::<io::Result<Chunk>>(depth);
        std::thread::spawn(move || {
            let pool = BufferPool::new(depth, buffer_size);
            // Ends when the stream ends, fails, or the consumer is gone (a send fails).
            loop {
                let (chunk, error) = pool.fill(&mut inner, usize::MAX);
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
        });
        ReadAhead { filled, finished: false }
    }
}

impl ChunkSource for ReadAhead {
    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.finished {
            return Ok(None);
        }
        match self.filled.recv() {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sha256_digest;
    use crate::verify::VerifyingReader;

    #[test]
    fn delivers_every_byte_in_order() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut ahead = ReadAhead::new(io::Cursor::new(data.clone()), 3, 64 * 1024);
        let mut out = Vec::new();
        while let Some(chunk) = ahead.next_chunk().unwrap() {
            assert!(chunk.len() == 64 * 1024 || out.len() + chunk.len() == data.len(), "chunks are full");
            out.extend_from_slice(&chunk);
        }
        assert!(out == data);
        let digest = sha256_digest(&data);
        let ahead = ReadAhead::new(io::Cursor::new(data.clone()), 2, 100_000);
        let mut reader = VerifyingReader::from_chunks(Box::new(ahead), digest, data.len() as u64, "test");
        let mut read = Vec::new();
        reader.read_to_end(&mut read).unwrap();
        assert!(read == data, "Read over chunks delivers the same bytes");
    }

    #[test]
    fn passes_errors_through() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("boom"))
            }
        }
        let err = ReadAhead::new(Failing, 2, 1024).next_chunk().unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }
}
