//! How a blob's bytes reach the disk (issue 18): directly from the buffers they were received
//! and hashed in, where the filesystem takes direct writes (a writer thread per large blob, so
//! writing one chunk overlaps hashing the next), else through the page cache at successive
//! offsets with its writeback started window by window.
//!
//! Direct writes are whole filesystem blocks ([`FS_BLOCK`]) at block offsets, from memory
//! aligned to a block too (spec/archive.md AR-W2e). Any other direct write into preallocated
//! blocks makes ext4 take the inode's lock exclusively and wait for every other direct write in
//! flight, so the workers' writes went one at a time (issue 18: 891 exclusive and 453 shared
//! waits for that lock in one export of the 1 GiB bench set, `sched_switch` traces); whole
//! aligned blocks go side by side. The block a blob starts in (shared with its tar header) and
//! the one it ends in (shared with the next entry) are written through the page cache, two
//! small writes per blob.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::mpsc::sync_channel;

use super::LayoutTarSink;
use crate::store::BlobReader;
use crate::store::layout_tar::header::BLOCK;
use crate::store::volumes::Volumes;
use crate::verify::{ALIGNMENT, AlignedBuffer, Chunk};

/// Blobs up to this size are written by the worker itself; larger ones by a writer thread of
/// their own, so that hashing the next chunk overlaps writing this one (issue 18).
const INLINE_WRITE: u64 = 1 << 20;

/// The filesystem block direct writes are made of, in the file and in length (ext4's and
/// most filesystems' block; a larger one only makes some of ferry's writes exclusive again).
const FS_BLOCK: u64 = 4096;

/// Blobs with fewer whole blocks than this go through the page cache: one small write costs
/// less than a direct one with two page-cache writes around it.
const DIRECT_AT_LEAST: u64 = 64 << 10;

impl LayoutTarSink {
    /// Direct handles on the partial files, if direct writes work there as blobs may use them:
    /// whole [`FS_BLOCK`]s at block offsets, from memory aligned at least to a tar block (a
    /// source that ignores the first-chunk hint leaves its chunks' blocks that far off). Proved
    /// by rewriting the archive's second filesystem block with its own bytes that way.
    pub(super) fn open_direct(&self) -> Option<Volumes> {
        if !self.direct_io {
            return None;
        }
        let file = self.file.as_ref()?;
        if file.len() < 2 * FS_BLOCK {
            return None;
        }
        let direct = file.reopen_direct(ALIGNMENT as u64)?;
        let mut probe = AlignedBuffer::new((FS_BLOCK + BLOCK) as usize);
        let block = &mut probe.as_mut_slice()[BLOCK as usize..(FS_BLOCK + BLOCK) as usize];
        file.read_exact_at(block, FS_BLOCK).ok()?;
        direct.write_all_at(block, FS_BLOCK).ok()?;
        Some(direct)
    }
}

/// Writes one blob at `offset` through direct handles, chunk by chunk from the buffers the
/// reader hands out: a blob larger than [`INLINE_WRITE`] by a writer thread, so the next chunk
/// is received and hashed while this one is written (handed over, never queued). The last
/// chunk is written with its tar padding (zeros to the next block); it arrives only verified.
pub(super) fn write_direct(
    direct: &Volumes,
    cached: &Volumes,
    reader: &mut BlobReader<'_>,
    offset: u64,
    size: u64,
) -> io::Result<()> {
    let mut blocks = BlockWriter::new(Handles { direct, cached }, offset, size);
    if !blocks.whole.is_empty() && blocks.whole.start > offset {
        // The bytes before the first whole block come alone, so that every later chunk starts
        // on a block, in the file and in memory: written from there, no chunk straddles one.
        reader.limit_first_chunk((blocks.whole.start - offset) as usize);
    }
    if size <= INLINE_WRITE {
        let mut at = offset;
        while let Some(chunk) = reader.next_chunk()? {
            at += blocks.write(chunk, at)?;
        }
        return Ok(());
    }
    let (queue, chunks) = sync_channel::<(Chunk, u64)>(0);
    std::thread::scope(|scope| {
        let writer = std::thread::Builder::new().name("ferry-write".into());
        let writer = writer
            .spawn_scoped(scope, move || -> io::Result<()> {
                for (chunk, at) in chunks {
                    blocks.write(chunk, at)?;
                }
                Ok(())
            })
            .map_err(|e| io::Error::other(format!("starting a blob writer thread: {e}")))?;
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

/// Where a blob region's bytes go: whole filesystem blocks directly, the rest through the page
/// cache.
trait Destination {
    fn direct(&self, bytes: &[u8], at: u64) -> io::Result<()>;
    fn cached(&self, bytes: &[u8], at: u64) -> io::Result<()>;
}

/// The archive's files, opened for direct and for page-cache writes.
struct Handles<'a> {
    direct: &'a Volumes,
    cached: &'a Volumes,
}

impl Destination for Handles<'_> {
    fn direct(&self, bytes: &[u8], at: u64) -> io::Result<()> {
        self.direct.write_all_at(bytes, at)
    }

    fn cached(&self, bytes: &[u8], at: u64) -> io::Result<()> {
        self.cached.write_all_at(bytes, at)
    }
}

/// Writes one blob region (its bytes, then zeros to the next tar block): the whole filesystem
/// blocks inside it directly, the rest through the page cache. A block that two chunks share
/// (a source that did not take [`crate::verify::VerifyingReader::limit_first_chunk`]'s hint) is gathered in a
/// block of its own and written when complete.
struct BlockWriter<D> {
    to: D,
    /// Where the blob starts; chunks of it must start a whole number of tar blocks after it.
    start: u64,
    /// Where its padding ends.
    end: u64,
    /// The whole filesystem blocks of the region written directly (empty: none are).
    whole: Range<u64>,
    /// The block being gathered and how much of it is filled.
    carry: AlignedBuffer,
    carried: usize,
}

impl<D: Destination> BlockWriter<D> {
    fn new(to: D, start: u64, size: u64) -> Self {
        let end = start + size.next_multiple_of(BLOCK);
        let mut whole = start.next_multiple_of(FS_BLOCK)..end / FS_BLOCK * FS_BLOCK;
        if whole.end < whole.start + DIRECT_AT_LEAST {
            whole = end..end;
        }
        BlockWriter { to, start, end, whole, carry: AlignedBuffer::new(FS_BLOCK as usize), carried: 0 }
    }

    /// Writes `chunk`, the blob's bytes at archive offset `at`, rounded up to whole tar blocks
    /// with zeros (the tar padding); returns the chunk's length.
    fn write(&mut self, mut chunk: Chunk, at: u64) -> io::Result<u64> {
        let len = chunk.len();
        if (at - self.start) % BLOCK != 0 {
            // Sources fill every chunk but the last and a first one asked to end on a block, so
            // this is a bug.
            return Err(io::Error::other("a chunk of a blob would start inside a tar block"));
        }
        let padded = len.next_multiple_of(BLOCK as usize).min((self.end - at) as usize);
        let buffer = chunk.buffer_mut();
        buffer[len..padded].fill(0);
        let bytes = &buffer[..padded];
        let (chunk_end, whole) = (at + padded as u64, self.whole.clone());
        // Before and after the whole blocks: through the page cache.
        let before = at..chunk_end.min(whole.start);
        if !before.is_empty() {
            self.to.cached(&bytes[..(before.end - at) as usize], at)?;
        }
        let after = at.max(whole.end)..chunk_end;
        if !after.is_empty() {
            self.to.cached(&bytes[(after.start - at) as usize..], after.start)?;
        }
        let mut from = at.max(whole.start);
        let to = chunk_end.min(whole.end);
        // A block begun by the previous chunk is completed from this one.
        if from < to && self.carried > 0 {
            let take = (FS_BLOCK as usize - self.carried).min((to - from) as usize);
            let source = (from - at) as usize;
            self.carry.as_mut_slice()[self.carried..self.carried + take].copy_from_slice(&bytes[source..source + take]);
            self.carried += take;
            from += take as u64;
            if self.carried == FS_BLOCK as usize {
                self.to.direct(self.carry.as_slice(), from - FS_BLOCK)?;
                self.carried = 0;
            }
        }
        if from < to {
            debug_assert!(from % FS_BLOCK == 0 && self.carried == 0, "a run of whole blocks starts on a block");
            let run = (to - from) / FS_BLOCK * FS_BLOCK;
            let source = (from - at) as usize;
            if run > 0 {
                self.to.direct(&bytes[source..source + run as usize], from)?;
            }
            let rest = (to - from - run) as usize;
            self.carry.as_mut_slice()[..rest]
                .copy_from_slice(&bytes[source + run as usize..source + run as usize + rest]);
            self.carried = rest;
        }
        Ok(len as u64)
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// One write a [`BlockWriter`] made: direct or not, where, its bytes, and the address in
    /// memory it was made from.
    type Recorded = (bool, u64, Vec<u8>, usize);

    /// Every write a [`BlockWriter`] makes.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Recorded>>);

    impl Destination for Recorder {
        fn direct(&self, bytes: &[u8], at: u64) -> io::Result<()> {
            self.0.lock().unwrap().push((true, at, bytes.to_vec(), bytes.as_ptr() as usize));
            Ok(())
        }

        fn cached(&self, bytes: &[u8], at: u64) -> io::Result<()> {
            self.0.lock().unwrap().push((false, at, bytes.to_vec(), bytes.as_ptr() as usize));
            Ok(())
        }
    }

    /// Writes a blob of `size` bytes at `start` in chunks of `chunk` bytes, the first one
    /// `first` bytes long when given (as a source that takes the hint hands them out); returns
    /// the writes, after checking that together they are the region's bytes, each once.
    fn write_blob(start: u64, size: usize, chunk: usize, first: Option<usize>) -> Vec<Recorded> {
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8 + 1).collect();
        let mut writer = BlockWriter::new(Recorder::default(), start, size as u64);
        let mut at = 0;
        let mut lengths = first.into_iter().chain(std::iter::repeat(chunk));
        while at < size {
            let len = lengths.next().unwrap().min(size - at);
            writer.write(Chunk::owned(&data[at..at + len]), start + at as u64).unwrap();
            at += len;
        }
        let mut writes = writer.to.0.into_inner().unwrap();
        writes.sort_by_key(|write| write.1);
        let mut region = Vec::new();
        for (_, at, bytes, _) in &writes {
            assert_eq!(*at, start + region.len() as u64, "writes cover the region once, in order");
            region.extend_from_slice(bytes);
        }
        let mut expected = data.clone();
        expected.resize(size.next_multiple_of(BLOCK as usize), 0);
        assert!(region == expected, "the region holds the blob, then zeros to the next tar block");
        writes
    }

    /// spec/archive.md AR-W2e (issue 18): a direct write of anything but whole, aligned
    /// filesystem blocks (in the file and in memory) makes ext4 take the inode's lock
    /// exclusively and drain every other direct write; so only whole blocks go directly, from
    /// chunks that start on one.
    #[test]
    fn direct_writes_are_whole_blocks_aligned_in_the_file_and_in_memory() {
        for start in [0u64, 512, 1536, 3584, 4096 + 512] {
            for size in [(3 << 20) + 1234, (1 << 20) + 4096, 200_000] {
                let whole = start.next_multiple_of(FS_BLOCK);
                let first = (whole > start).then_some((whole - start) as usize);
                let writes = write_blob(start, size, 1 << 20, first);
                let direct: u64 = writes.iter().filter(|write| write.0).map(|write| write.2.len() as u64).sum();
                for (is_direct, at, bytes, address) in &writes {
                    if *is_direct {
                        assert_eq!(at % FS_BLOCK, 0, "start {start} size {size}: a direct write at {at}");
                        assert_eq!(
                            bytes.len() as u64 % FS_BLOCK,
                            0,
                            "start {start} size {size}: {} bytes",
                            bytes.len()
                        );
                        assert_eq!(
                            *address % FS_BLOCK as usize,
                            0,
                            "start {start} size {size}: memory at {address:#x}"
                        );
                    } else {
                        assert!(bytes.len() < FS_BLOCK as usize, "only the edges go through the page cache");
                    }
                }
                let padded_end = start + (size as u64).next_multiple_of(BLOCK);
                assert_eq!(direct, padded_end / FS_BLOCK * FS_BLOCK - whole, "every whole block goes directly");
            }
        }
    }

    /// A source that hands out full chunks from the blob's start: blocks two chunks share are
    /// gathered and still written whole.
    #[test]
    fn blocks_chunks_share_are_gathered_and_written_whole() {
        for start in [512u64, 2048, 3584] {
            let writes = write_blob(start, (2 << 20) + 777, 1 << 20, None);
            let gathered = writes.iter().filter(|write| write.0 && write.2.len() == FS_BLOCK as usize).count();
            assert!(gathered >= 1, "start {start}: the block across the chunk edge is written on its own");
            for (is_direct, at, bytes, _) in &writes {
                if *is_direct {
                    assert_eq!((at % FS_BLOCK, bytes.len() as u64 % FS_BLOCK), (0, 0), "start {start}");
                }
            }
        }
    }

    #[test]
    fn small_blobs_go_through_the_page_cache_whole() {
        for (start, size) in [(512u64, 1000usize), (4096, 4096), (1024, (DIRECT_AT_LEAST as usize) + 100)] {
            let writes = write_blob(start, size, 1 << 20, None);
            assert!(writes.iter().all(|write| !write.0), "start {start} size {size}: nothing directly");
        }
    }
}
