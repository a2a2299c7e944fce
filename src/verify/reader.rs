//! The verifying reader and the incremental sha256 hasher it uses.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::model::Digest;

/// Why bytes did not match their descriptor. `origin` says where they came from
/// ("bundle.tar", "registry.example.com/app", a file path) so the message is actionable alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("blob {digest} from {origin}: expected {expected} bytes, found {actual}{hint}")]
    Size { origin: String, digest: Digest, expected: u64, actual: u64, hint: &'static str },
    #[error("blob {expected} from {origin}: content hashes to {actual} (the bytes were altered or corrupted)")]
    Digest { origin: String, expected: Digest, actual: Digest },
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

    /// All `size` bytes have been seen: confirm the stream ends here, then check the digest.
    fn check_end(&mut self) -> io::Result<()> {
        let mut probe = [0u8; 1];
        let extra = loop {
            match self.inner.read(&mut probe) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.source_failed(e)),
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
        if self.verified || buf.is_empty() {
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

/// Copies a verifying reader to its end into `out` with a buffer of `buffer_size` bytes,
/// returning the byte count. The copy succeeds only if the blob verified.
pub fn copy_verified<R: Read, W: Write + ?Sized>(
    reader: &mut VerifyingReader<R>,
    out: &mut W,
    buffer_size: usize,
) -> io::Result<u64> {
    let mut buffer = vec![0u8; buffer_size.max(4096)];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buffer[..n])?;
        total += n as u64;
    }
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

    #[test]
    fn the_last_bytes_are_withheld_when_the_digest_is_wrong() {
        let mut reader = VerifyingReader::new(&b"abd"[..], sha256_digest(b"abc"), 3, "test");
        let mut buf = [0u8; 3];
        assert!(reader.read(&mut buf).is_err(), "no byte of a bad blob's last read is delivered");
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
