//! Response bodies (spec/serve.md SV-0, SV-3): small ones from memory, blobs streamed from the
//! archive a chunk at a time on the runtime's bounded blocking pool, so a response holds at
//! most one chunk and a slow client holds no thread. A full blob streams through the verifying
//! reader; a read that fails marks the blob and ends the body early, which cuts the connection.
//! Also the `Range` header's parser.

use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::task::JoinHandle;

use super::content::{CHUNK, Content};
use super::{RequestRecord, ServeLog};
use crate::model::Digest;

/// Every response body.
pub type ServeBody = UnsyncBoxBody<Bytes, io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> ServeBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn empty() -> ServeBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A response body that logs its request once, when it ends or is dropped before its end (the
/// client went away, the connection was cut): with the bytes really sent, not those announced.
pub struct Logged {
    inner: ServeBody,
    record: Option<RequestRecord>,
    started: std::time::Instant,
    log: Arc<dyn ServeLog>,
}

impl Logged {
    /// `inner`, logging `record` at its end.
    pub fn wrap(
        inner: ServeBody,
        record: RequestRecord,
        started: std::time::Instant,
        log: Arc<dyn ServeLog>,
    ) -> ServeBody {
        Logged { inner, record: Some(record), started, log }.boxed_unsync()
    }

    fn finish(&mut self, ended: bool) {
        if let Some(mut record) = self.record.take() {
            record.complete = ended && record.announced.is_none_or(|announced| announced == record.bytes);
            record.millis = self.started.elapsed().as_millis();
            self.log.request(&record);
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                if let Some(record) = self.record.as_mut() {
                    record.bytes += len;
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Ready(None) => self.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // hyper need not poll a body that says it has ended (an empty one, a small one after
        // its one frame): that is an end, not a cut.
        let ended = self.inner.is_end_stream();
        self.finish(ended);
    }
}

/// Who to tell when a full read of a blob verifies or fails.
pub struct Verification {
    pub content: Arc<Content>,
    pub digest: Digest,
    pub log: Arc<dyn ServeLog>,
}

/// Reads a blob's bytes in chunks; moved onto the blocking pool for each read.
struct Chunker {
    reader: Box<dyn Read + Send>,
    remaining: u64,
    verification: Option<Verification>,
}

impl Chunker {
    fn next_chunk(&mut self) -> io::Result<Bytes> {
        let want = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(CHUNK);
        let mut buffer = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            match self.reader.read(&mut buffer[filled..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ended inside the blob")),
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    if let Some(check) = &self.verification {
                        if let Some(message) = check.content.read_failed(&check.digest, &err) {
                            check.log.blob_failed(&check.digest, &message);
                        }
                    }
                    return Err(err);
                }
            }
        }
        self.remaining -= want as u64;
        if let (0, Some(check)) = (self.remaining, &self.verification) {
            // The verifying reader checked the digest in the read that delivered the last byte.
            check.content.full_read_verified(&check.digest);
        }
        Ok(Bytes::from(buffer))
    }
}

enum State {
    Idle(Box<Chunker>),
    Reading(JoinHandle<(Box<Chunker>, io::Result<Bytes>)>),
    Done,
}

/// A blob's bytes as a response body of exactly `len` bytes (or an error that cuts it).
pub struct BlobStream {
    state: State,
    left: u64,
}

impl BlobStream {
    pub fn new(reader: Box<dyn Read + Send>, len: u64, verification: Option<Verification>) -> Self {
        let chunker = Chunker { reader, remaining: len, verification };
        BlobStream { state: State::Idle(Box::new(chunker)), left: len }
    }

    pub fn boxed(self) -> ServeBody {
        BodyExt::boxed_unsync(self)
    }
}

impl Body for BlobStream {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Idle(mut chunker) => {
                    if chunker.remaining == 0 {
                        return Poll::Ready(None);
                    }
                    self.state = State::Reading(tokio::task::spawn_blocking(move || {
                        let chunk = chunker.next_chunk();
                        (chunker, chunk)
                    }));
                }
                State::Reading(mut reading) => match Pin::new(&mut reading).poll(cx) {
                    Poll::Pending => {
                        self.state = State::Reading(reading);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok((chunker, Ok(chunk)))) => {
                        self.left -= chunk.len() as u64;
                        self.state = State::Idle(chunker);
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    Poll::Ready(Ok((_, Err(err)))) => return Poll::Ready(Some(Err(err))),
                    Poll::Ready(Err(join)) => return Poll::Ready(Some(Err(io::Error::other(join)))),
                },
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// What a `Range` header asks of a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No range, one ferry does not serve partially (several ranges, another unit), or a
    /// malformed one: the whole blob (RFC 9110 lets a server ignore `Range`).
    Whole,
    /// Bytes `start..start + len`.
    Part { start: u64, len: u64 },
    /// A well-formed range that lies outside the blob: 416.
    Unsatisfiable,
}

/// Parses `bytes=A-B`, `bytes=A-` or `bytes=-N` against a blob of `size` bytes.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    // Range units are case-insensitive (RFC 9110 14.1).
    let spec =
        header.map(str::trim).filter(|text| text.get(..6).is_some_and(|unit| unit.eq_ignore_ascii_case("bytes=")));
    let Some(spec) = spec.map(|text| &text[6..]) else { return RangeAsk::Whole };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeAsk::Whole };
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
    };
    match (first.is_empty(), last.is_empty()) {
        (true, false) => match number(last) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if size == 0 => RangeAsk::Unsatisfiable,
            Some(suffix) => {
                let len = suffix.min(size);
                RangeAsk::Part { start: size - len, len }
            }
            None => RangeAsk::Whole,
        },
        (false, _) => {
            let Some(start) = number(first) else { return RangeAsk::Whole };
            let end = if last.is_empty() { Some(u64::MAX) } else { number(last) };
            match end {
                None => RangeAsk::Whole,
                Some(end) if end < start => RangeAsk::Whole,
                Some(_) if start >= size => RangeAsk::Unsatisfiable,
                Some(end) => RangeAsk::Part { start, len: end.min(size - 1) - start + 1 },
            }
        }
        (true, true) => RangeAsk::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob of several chunks goes out a chunk at a time (memory stays one chunk per
    /// response, SV-0), whole and in order; a verifying reader's failure ends the body with an
    /// error before its last bytes.
    #[test]
    fn a_blob_streams_in_bounded_chunks_and_a_bad_one_is_cut() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let data: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        let collect = |reader: Box<dyn Read + Send>| {
            runtime.block_on(async {
                let mut body = BlobStream::new(reader, data.len() as u64, None);
                let mut chunks = Vec::new();
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(frame) => chunks.push(frame.into_data().unwrap()),
                        Err(err) => return (chunks, Some(err)),
                    }
                }
                (chunks, None)
            })
        };
        let (chunks, failure) = collect(Box::new(io::Cursor::new(data.clone())));
        assert!(failure.is_none());
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|chunk| chunk.len() <= CHUNK));
        assert_eq!(chunks.concat(), data);

        let digest = crate::model::sha256_digest(&data);
        let mut bad = data.clone();
        *bad.last_mut().unwrap() ^= 1;
        let verifying = crate::verify::VerifyingReader::new(io::Cursor::new(bad), digest, data.len() as u64, "test");
        let (chunks, failure) = collect(Box::new(verifying));
        assert!(failure.is_some(), "the body ends with an error");
        assert_eq!(chunks.len(), 2, "the last chunk, which completes the blob, is withheld");
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        let part = |start, len| RangeAsk::Part { start, len };
        assert_eq!(parse_range(None, 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-0"), 10), part(0, 1));
        assert_eq!(parse_range(Some("bytes=2-5"), 10), part(2, 4));
        assert_eq!(parse_range(Some("bytes=2-"), 10), part(2, 8));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), part(8, 2));
        assert_eq!(parse_range(Some("bytes=-3"), 10), part(7, 3));
        assert_eq!(parse_range(Some("bytes=-30"), 10), part(0, 10));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=99999999999999999999999-"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-18446744073709551615"), 10), part(0, 10));
        assert_eq!(parse_range(Some("Bytes=2-5"), 10), part(2, 4), "units are case-insensitive");
        assert_eq!(parse_range(Some("bytes=é-"), 10), RangeAsk::Whole);
    }
}
