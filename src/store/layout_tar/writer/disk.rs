//! How a blob's bytes reach the disk (issue 18): directly from the buffers they were received
//! and hashed in, where the filesystem takes direct writes (a writer thread per large blob, so
//! writing one chunk overlaps hashing the next), else through the page cache at successive
//! offsets with its writeback started window by window.

use std::io::{self, Write};
use std::sync::mpsc::sync_channel;

use super::LayoutTarSink;
use crate::store::BlobReader;
use crate::store::layout_tar::header::BLOCK;
use crate::store::volumes::Volumes;
use crate::verify::{ALIGNMENT, AlignedBuffer, Chunk};

/// Blobs up to this size are written by the worker itself; larger ones by a writer thread of
/// their own, so that hashing the next chunk overlaps writing this one (issue 18).
const INLINE_WRITE: u64 = 1 << 20;

impl LayoutTarSink {
    /// Direct handles on the partial files, if direct writes of 512-byte blocks work there:
    /// proved by rewriting the archive's second block with its own bytes. Blob data starts on
    /// a tar block and its padding to the next block is zeros, so every blob write is whole
    /// blocks from an aligned buffer.
    pub(super) fn open_direct(&self) -> Option<Volumes> {
        if !self.direct_io {
            return None;
        }
        let file = self.file.as_ref()?;
        if file.len() < 2 * BLOCK {
            return None;
        }
        let direct = file.reopen_direct(ALIGNMENT as u64)?;
        let mut probe = AlignedBuffer::new(BLOCK as usize);
        let block = &mut probe.as_mut_slice()[..BLOCK as usize];
        file.read_exact_at(block, BLOCK).ok()?;
        direct.write_all_at(block, BLOCK).ok()?;
        Some(direct)
    }
}

/// Writes one blob at `offset` through direct handles, chunk by chunk from the buffers the
/// reader hands out: a blob larger than [`INLINE_WRITE`] by a writer thread, so the next chunk
/// is received and hashed while this one is written (handed over, never queued). The last
/// chunk is written with its tar padding (zeros to the next block); it arrives only verified.
pub(super) fn write_direct(direct: &Volumes, reader: &mut BlobReader<'_>, offset: u64, size: u64) -> io::Result<()> {
    if size <= INLINE_WRITE {
        let mut at = offset;
        while let Some(chunk) = reader.next_chunk()? {
            at += write_chunk(direct, chunk, at, offset)?;
        }
        return Ok(());
    }
    let (queue, chunks) = sync_channel::<(Chunk, u64)>(0);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<()> {
            for (chunk, at) in chunks {
                write_chunk(direct, chunk, at, offset)?;
            }
            Ok(())
        });
        let mut at = offset;
        let received = loop {
            match reader.next_chunk() {
                Ok(Some(chunk)) => {
                    let len = chunk.len() as u64;
                    if queue.send((chunk, at)).is_err() {
                        break Ok(()); // the writer failed; its error says why
                    }
                    at += len;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(queue);
        let written = writer.join().unwrap_or_else(|_| Err(io::Error::other("the blob writer thread panicked")));
        received.and(written)
    })
}

/// Writes `chunk` at archive offset `at` of a blob starting at `start`, rounded up to whole
/// blocks with zeros (the tar padding); returns the chunk's length.
fn write_chunk(direct: &Volumes, mut chunk: Chunk, at: u64, start: u64) -> io::Result<u64> {
    let len = chunk.len();
    if (at - start) % BLOCK != 0 {
        // Only the last chunk of a blob is short (sources fill every chunk), so this is a bug.
        return Err(io::Error::other("a direct write would start inside a block"));
    }
    let blocks = len.next_multiple_of(BLOCK as usize);
    let buffer = chunk.buffer_mut();
    buffer[len..blocks].fill(0);
    direct.write_all_at(&buffer[..blocks], at)?;
    Ok(len as u64)
}

/// How much a worker writes before asking the kernel to start writing it back.
const WRITEBACK_WINDOW: u64 = 8 << 20;

/// A `Write` that writes at successive offsets of the archive's files, starting the writeback
/// of every full window as it goes: left alone, the kernel keeps a whole archive dirty in the
/// page cache (up to `dirty_background_ratio` of memory) and writes it only at the final
/// fsync, after the network work instead of during it.
pub(super) struct PositionalWriter<'a> {
    file: &'a Volumes,
    offset: u64,
    unflushed_from: u64,
}

impl<'a> PositionalWriter<'a> {
    pub(super) fn new(file: &'a Volumes, offset: u64) -> Self {
        PositionalWriter { file, offset, unflushed_from: offset }
    }

    /// Starts (does not wait for) the writeback of what was written since the last call.
    pub(super) fn start_writeback(&mut self) {
        let length = self.offset - self.unflushed_from;
        if length == 0 {
            return;
        }
        self.file.start_writeback(self.unflushed_from, length);
        self.unflushed_from = self.offset;
    }
}

impl Write for PositionalWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        if self.offset - self.unflushed_from >= WRITEBACK_WINDOW {
            self.start_writeback();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
