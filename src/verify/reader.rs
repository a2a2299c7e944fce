//! The verifying reader and the incremental sha256 hasher it uses.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::chunk::{BufferPool, Chunk, ChunkSource};
use crate::model::Digest;

/// Chunks a reader without a chunk source of its own reads into: two buffers (one being
/// consumed while the next is filled) of 1 MiB.
const OWN_CHUNKS: (usize, usize) = (2, 1 << 20);

/// Bytes hashed then written at a time by [`copy_verified`]: small enough to still be in the
/// CPU's cache when the write copies them (1 MiB pieces cost the page-cache copy twice the
/// CPU here: perf, issue 18).
pub const CACHE_PIECE: usize = 128 << 10;

/// Why bytes did not match their descriptor. `origin` says where they came from
/// ("bundle.tar", "registry.example.com/app", a file path) so the message is actionable alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("blob {digest} from {origin}: expected {expected} bytes, found {actual}{hint}")]
    Size { origin: String, digest: Digest, expected: u64, actual: u64, hint: &'static str },
    #[error("blob {expected} from {origin}: content hashes to {actual} (the bytes were altered or corrupted)")]
    Digest { origin: String, expected: Digest, actual: Digest },
    /// A piece of a blob verified whole earlier no longer hashes as it did (the media changed).
    #[error(
        "blob {digest} from {origin}: the bytes from {offset} changed since the blob was verified (the media was altered)"
    )]
    Changed { origin: String, digest: Digest, offset: u64 },
}

impl VerifyError {
    fn too_short(origin: &str, digest: Digest, expected: u64, actual: u64) -> Self {
        VerifyError::Size {
            origin: origin.to_string(),
            digest,
            expected,
            actual,
            hint: " (the data ends early: it is truncated)",
        }
    }

    fn too_long(origin: &str, digest: Digest, expected: u64) -> Self {
        VerifyError::Size {
            origin: origin.to_string(),
            digest,
            expected,
            actual: expected + 1,
            hint: " or more (the data is longer than its descriptor says)",
        }
    }
}

/// Extracts a [`VerifyError`] carried inside an `io::Error` by [`VerifyingReader`].
pub fn verify_error(err: &io::Error) -> Option<&VerifyError> {
    err.get_ref().and_then(|inner| inner.downcast_ref::<VerifyError>())
}

/// Incremental sha256 that also counts bytes.
#[derive(Clone, Default)]
pub struct Hasher {
    state: Sha256,
    bytes: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.state.update(data);
        self.bytes += data.len() as u64;
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_bytes(self.state.finalize().into()), self.bytes)
    }
}

impl Write for Hasher {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Wraps a reader of one blob; see the module documentation.
///
/// The check runs when the last byte arrives, before the read that delivers it returns, so a
/// consumer that stops at the descriptor's size never holds unverified final bytes; a consumer
/// that stops earlier proves nothing, so sinks read to the end (see [`copy_verified`]).
pub struct VerifyingReader<R> {
    inner: R,
    digest: Digest,
    size: u64,
    origin: String,
    hasher: Hasher,
    verified: bool,
    failure: Option<VerifyError>,
    /// What the underlying reader failed with (kind and message), if it did.
    source_failure: Option<(io::ErrorKind, String)>,
    on_progress: Option<Arc<AtomicU64>>,
    /// Where whole chunks come from, when the bytes are received by someone else (a read-ahead
    /// thread) into buffers that are then hashed and written without a copy; `inner` is then
    /// unused.
    chunks: Option<Box<dyn ChunkSource>>,
    /// Buffers that `next_chunk` reads `inner` into, when there is no chunk source.
    own_pool: Option<BufferPool>,
    own_chunks: (usize, usize),
    /// At most this many bytes in the first chunk (see [`VerifyingReader::limit_first_chunk`]).
    first_chunk: usize,
    /// The chunk `Read::read` is handing out, and how much of it it has.
    current: Option<(Chunk, usize)>,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, digest: Digest, size: u64, origin: impl Into<String>) -> Self {
        VerifyingReader {
            inner,
            digest,
            size,
            origin: origin.into(),
            hasher: Hasher::new(),
            verified: false,
            failure: None,
            source_failure: None,
            on_progress: None,
            chunks: None,
            own_pool: None,
            own_chunks: OWN_CHUNKS,
            first_chunk: usize::MAX,
            current: None,
        }
    }

    /// Chunks from [`VerifyingReader::next_chunk`] come from `count` buffers of `size` bytes
    /// (for a reader without a chunk source; call before the first chunk).
    pub fn with_chunks(mut self, count: usize, size: usize) -> Self {
        self.own_chunks = (count, size);
        self
    }

    /// The first chunk [`VerifyingReader::next_chunk`] hands out holds at most `len` bytes (at
    /// least one), so that every later one starts `len` bytes further on: a writer of whole
    /// filesystem blocks asks for the bytes up to its first block boundary. A hint its chunk
    /// source may ignore; only before the first chunk.
    pub fn limit_first_chunk(&mut self, len: usize) {
        if self.hasher.bytes() > 0 || self.current.is_some() {
            return;
        }
        match self.chunks.as_mut() {
            Some(source) => source.limit_first_chunk(len),
            None => self.first_chunk = len.max(1),
        }
    }

    /// Adds the byte count of every successful read to `counter` (for progress reporting).
    pub fn with_progress(mut self, counter: Arc<AtomicU64>) -> Self {
        self.on_progress = Some(counter);
        self
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes delivered so far.
    pub fn position(&self) -> u64 {
        self.hasher.bytes()
    }

    /// The verification failure this reader reported, if any: a consumer that wraps reads in
    /// its own errors (an HTTP client sending the body) can still tell a bad blob from a bad
    /// network.
    pub fn verification_failure(&self) -> Option<VerifyError> {
        self.failure.clone()
    }

    /// The failure of the reader underneath (a cut stream, a disk error), if one happened: a
    /// consumer that wraps reads in its own errors can tell a broken source from a broken sink.
    pub fn source_failure(&self) -> Option<io::Error> {
        self.source_failure.as_ref().map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    fn source_failed(&mut self, err: io::Error) -> io::Error {
        if err.kind() != io::ErrorKind::Interrupted {
            self.source_failure = Some((err.kind(), err.to_string()));
        }
        err
    }

    fn fail(&mut self, err: VerifyError) -> io::Error {
        self.failure = Some(err.clone());
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    /// The next bytes of the blob as one chunk, hashed, straight from the buffer they were
    /// received into (no copy); `None` at the end. The chunk that completes the blob is handed
    /// out only once the stream has ended there and the digest matched, like [`Read::read`]'s
    /// last bytes.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        self.next_chunk_with(usize::MAX, |_| Ok(()))
    }

    /// [`VerifyingReader::next_chunk`], calling `each` on every `piece` bytes of the chunk right
    /// after hashing them, while they are still in the CPU's cache (a buffered write copies
    /// them once more). The chunk that completes the blob is hashed and checked whole before
    /// `each` sees any of it. An error of `each` is returned as it is.
    pub fn next_chunk_with(
        &mut self,
        piece: usize,
        mut each: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<Option<Chunk>> {
        if let Some((chunk, used)) = self.current.take() {
            // A consumer that mixed reads and chunks: the rest of the chunk being read.
            if used < chunk.len() {
                let rest = Chunk::owned(&chunk[used..]);
                rest.chunks(piece.max(1)).try_for_each(&mut each)?;
                return Ok(Some(rest));
            }
        }
        if self.verified {
            return Ok(None);
        }
        let remaining = self.size - self.hasher.bytes();
        if remaining == 0 {
            self.check_end()?;
            return Ok(None);
        }
        let limit = usize::try_from(remaining).unwrap_or(usize::MAX);
        let chunk = match self.chunks.as_mut() {
            Some(source) => source.next_chunk(),
            None => {
                let (count, size) = self.own_chunks;
                let pool = self.own_pool.get_or_insert_with(|| BufferPool::growing(count, size));
                let limit = limit.min(std::mem::replace(&mut self.first_chunk, usize::MAX));
                match pool.fill(&mut self.inner, limit) {
                    (chunk, None) => Ok(Some(chunk)),
                    // Bytes before a failure are dropped with it: the blob is incomplete.
                    (_, Some(e)) => Err(e),
                }
            }
        };
        let chunk = match chunk.map_err(|e| self.source_failed(e))? {
            Some(chunk) if !chunk.is_empty() => chunk,
            _ => {
                let actual = self.hasher.bytes();
                let err = VerifyError::too_short(&self.origin, self.digest, self.size, actual);
                return Err(self.fail(err));
            }
        };
        if chunk.len() as u64 > remaining {
            let err = VerifyError::too_long(&self.origin, self.digest, self.size);
            return Err(self.fail(err));
        }
        if chunk.len() as u64 == remaining {
            self.hasher.update(&chunk);
            self.check_end()?;
            chunk.chunks(piece.max(1)).try_for_each(&mut each)?;
        } else {
            for bytes in chunk.chunks(piece.max(1)) {
                self.hasher.update(bytes);
                each(bytes)?;
            }
        }
        if let Some(counter) = &self.on_progress {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        Ok(Some(chunk))
    }

    /// All `size` bytes have been seen: confirm the stream ends here, then check the digest.
    fn check_end(&mut self) -> io::Result<()> {
        let extra = match self.chunks.as_mut() {
            Some(source) => match source.next_chunk() {
                Ok(chunk) => chunk.map_or(0, |chunk| chunk.len()),
                Err(e) => return Err(self.source_failed(e)),
            },
            None => {
                let mut probe = [0u8; 1];
                loop {
                    match self.inner.read(&mut probe) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(self.source_failed(e)),
                    }
                }
            }
        };
        if extra != 0 {
            let err = VerifyError::too_long(&self.origin, self.digest, self.size);
            return Err(self.fail(err));
        }
        let (actual, _) = std::mem::take(&mut self.hasher).finish();
        self.hasher = Hasher { bytes: self.size, ..Hasher::default() };
        if actual != self.digest {
            let err = VerifyError::Digest { origin: self.origin.clone(), expected: self.digest, actual };
            return Err(self.fail(err));
        }
        self.verified = true;
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.chunks.is_some() || self.current.is_some() {
            return self.read_from_chunks(buf);
        }
        if self.verified {
            return Ok(0);
        }
        let remaining = self.size - self.hasher.bytes();
        if remaining == 0 {
            self.check_end()?;
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want]).map_err(|e| self.source_failed(e))?;
        if n == 0 {
            let actual = self.hasher.bytes();
            let err = VerifyError::too_short(&self.origin, self.digest, self.size, actual);
            return Err(self.fail(err));
        }
        self.hasher.update(&buf[..n]);
        if self.hasher.bytes() == self.size {
            // Check before handing over the last bytes: a consumer that stops at the expected
            // size (an HTTP client sending Content-Length bytes) must still never pass on a
            // blob that fails verification.
            self.check_end()?;
        }
        if let Some(counter) = &self.on_progress {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl<'a> VerifyingReader<Box<dyn Read + Send + 'a>> {
    /// A verifying reader over chunks someone else receives (a read-ahead thread): its chunks
    /// are handed on by [`VerifyingReader::next_chunk`] as they are, hashed but never copied.
    pub fn from_chunks(source: Box<dyn ChunkSource>, digest: Digest, size: u64, origin: impl Into<String>) -> Self {
        let mut reader = VerifyingReader::new(Box::new(io::empty()) as Box<dyn Read + Send + 'a>, digest, size, origin);
        reader.chunks = Some(source);
        reader
    }
}

impl<R: Read> VerifyingReader<R> {
    /// `Read` over chunks: hands out the current chunk piece by piece (a consumer that wants
    /// a `Read`, such as an upload body, pays this one copy).
    fn read_from_chunks(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((chunk, used)) = &mut self.current {
                if *used < chunk.len() {
                    let n = buf.len().min(chunk.len() - *used);
                    buf[..n].copy_from_slice(&chunk[*used..*used + n]);
                    *used += n;
                    return Ok(n);
                }
            }
            self.current = None;
            match self.next_chunk()? {
                Some(chunk) => self.current = Some((chunk, 0)),
                None => return Ok(0),
            }
        }
    }
}

/// Copies a verifying reader to its end into `out`, chunk by chunk (each written from the buffer
/// it was received into; `buffer_size` sizes the buffers of a reader without a chunk source),
/// returning the byte count. The copy succeeds only if the blob verified.
pub fn copy_verified<R: Read, W: Write + ?Sized>(
    reader: &mut VerifyingReader<R>,
    out: &mut W,
    buffer_size: usize,
) -> io::Result<u64> {
    if reader.own_pool.is_none() {
        reader.own_chunks = (1, buffer_size.max(4096));
    }
    let mut total = 0u64;
    while let Some(chunk) = reader.next_chunk_with(CACHE_PIECE, |piece| out.write_all(piece))? {
        total += chunk.len() as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sha256_digest;

    fn read_all(data: &[u8], digest: Digest, size: u64) -> io::Result<Vec<u8>> {
        let mut reader = VerifyingReader::new(data, digest, size, "test");
        let mut out = Vec::new();
        copy_verified(&mut reader, &mut out, 3).map(|_| out)
    }

    #[test]
    fn passes_matching_bytes() {
        let data = b"hello world";
        assert_eq!(read_all(data, sha256_digest(data), 11).unwrap(), data);
        assert_eq!(read_all(b"", sha256_digest(b""), 0).unwrap(), b"");
    }

    #[test]
    fn fails_on_flipped_byte_short_and_long_input() {
        let digest = sha256_digest(b"hello world");
        let flipped = read_all(b"hello worle", digest, 11).unwrap_err();
        assert!(matches!(verify_error(&flipped), Some(VerifyError::Digest { .. })), "{flipped}");
        let short = read_all(b"hello", digest, 11).unwrap_err();
        assert!(short.to_string().contains("expected 11 bytes, found 5"), "{short}");
        let long = read_all(b"hello world!", digest, 11).unwrap_err();
        assert!(long.to_string().contains("longer than its descriptor"), "{long}");
    }

    /// A reader without a chunk source takes the first-chunk hint itself; once bytes were
    /// handed out it is too late and changes nothing.
    #[test]
    fn the_first_chunk_can_be_limited_before_any_is_read() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut reader = VerifyingReader::new(&data[..], sha256_digest(&data), data.len() as u64, "test");
        reader.limit_first_chunk(512);
        let first = reader.next_chunk().unwrap().unwrap();
        reader.limit_first_chunk(100);
        let second = reader.next_chunk().unwrap().unwrap();
        assert_eq!((first.len(), second.len()), (512, OWN_CHUNKS.1));
        let mut rest = Vec::new();
        while let Some(chunk) = reader.next_chunk().unwrap() {
            rest.extend_from_slice(&chunk);
        }
        assert_eq!(first.len() + second.len() + rest.len(), data.len());
    }

    #[test]
    fn the_last_bytes_are_withheld_when_the_digest_is_wrong() {
        let mut reader = VerifyingReader::new(&b"abd"[..], sha256_digest(b"abc"), 3, "test");
        let mut buf = [0u8; 3];
        assert!(reader.read(&mut buf).is_err(), "no byte of a bad blob's last read is delivered");
    }

    /// Chunks handed in by a source, in order; records where each buffer lives.
    struct Chunks(std::collections::VecDeque<Chunk>);
    impl ChunkSource for Chunks {
        fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
            Ok(self.0.pop_front())
        }
    }
    fn chunked(parts: &[&[u8]], digest: Digest, size: u64) -> (VerifyingReader<Box<dyn Read + Send>>, Vec<usize>) {
        let chunks: std::collections::VecDeque<Chunk> = parts.iter().map(|p| Chunk::owned(p)).collect();
        let addresses = chunks.iter().map(|c| c.as_ptr() as usize).collect();
        (VerifyingReader::from_chunks(Box::new(Chunks(chunks)), digest, size, "test"), addresses)
    }

    /// Issue 18: a chunk reaches the consumer in the very buffer it was received into (no copy
    /// between receiving, hashing and writing), and every byte is still verified.
    #[test]
    fn chunks_are_handed_on_in_the_buffers_they_came_in() {
        let (mut reader, addresses) =
            chunked(&[b"hello ", b"chunked ", b"world"], sha256_digest(b"hello chunked world"), 19);
        let mut handed = Vec::new();
        let mut bytes = Vec::new();
        while let Some(chunk) = reader.next_chunk().unwrap() {
            handed.push(chunk.as_ptr() as usize);
            bytes.extend_from_slice(&chunk);
        }
        assert_eq!(handed, addresses, "each chunk is the buffer it arrived in");
        assert_eq!(bytes, b"hello chunked world");
        assert_eq!(reader.position(), 19);
    }

    /// A consistent forgery served in chunks (content changed, same length; the digest the
    /// manifest names is the original's): the chunk that completes the blob is never handed out.
    #[test]
    fn a_forged_blob_in_chunks_withholds_its_last_chunk() {
        let original = b"layer bytes, original!";
        let forged = b"layer bytes, FORGED!!!";
        let (mut reader, _) = chunked(&[&forged[..12], &forged[12..]], sha256_digest(original), 22);
        assert_eq!(&*reader.next_chunk().unwrap().unwrap(), &forged[..12]);
        let err = reader.next_chunk().unwrap_err();
        assert!(matches!(verify_error(&err), Some(VerifyError::Digest { .. })), "{err}");
        // Too long and too short in chunks fail as in reads.
        let (mut long, _) = chunked(&[b"abc", b"d"], sha256_digest(b"abc"), 3);
        let err = std::iter::from_fn(|| long.next_chunk().transpose()).find_map(Result::err).unwrap();
        assert!(err.to_string().contains("longer than its descriptor"), "{err}");
        let (mut short, _) = chunked(&[b"ab"], sha256_digest(b"abc"), 3);
        let err = std::iter::from_fn(|| short.next_chunk().transpose()).find_map(Result::err).unwrap();
        assert!(err.to_string().contains("expected 3 bytes, found 2"), "{err}");
    }

    /// `Read` over chunks and `copy_verified` over a plain reader deliver the same bytes.
    #[test]
    fn reads_over_chunks_and_plain_copies_agree() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let digest = sha256_digest(&data);
        let (mut reader, _) = chunked(&[&data[..1_000_000], &data[1_000_000..]], digest, data.len() as u64);
        let mut read = Vec::new();
        reader.read_to_end(&mut read).unwrap();
        assert!(read == data);
        let mut plain = VerifyingReader::new(&data[..], digest, data.len() as u64, "test");
        let mut copied = Vec::new();
        assert_eq!(copy_verified(&mut plain, &mut copied, 4096).unwrap(), data.len() as u64);
        assert!(copied == data);
    }

    #[test]
    fn never_delivers_more_than_the_descriptor_size() {
        let mut reader = VerifyingReader::new(&b"abcdef"[..], sha256_digest(b"abc"), 3, "test");
        let mut buf = [0u8; 16];
        // The read that reaches the size already fails: the stream is longer than declared.
        assert!(reader.read(&mut buf).is_err());
        assert!(reader.verification_failure().is_some());
    }
}
