//! Small answers (a manifest, a token, a page of tags, an error's body): read whole into memory,
//! bounded in size and in time (spec/cli.md RF-6). The per-read timeout alone lets a registry
//! that sends a byte every few seconds hold a request open for ever; a blob body, which may
//! rightly take hours, is read elsewhere and resumed instead.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use ureq::Body;
use ureq::http::Response;

/// How many waits for a response's head its whole small body may take after it: 2 minutes
/// with the default `--registry-response-header-timeout` of 30 s.
pub const WHOLE_ANSWER_WAITS: u32 = 4;

/// The slowest a small answer may come once that time is up: its deadline moves on by one
/// second for every 16 KiB received, so a large tag page on a slow link is read whole while
/// a trickle still ends.
pub const SLOWEST_BYTES_PER_SECOND: u64 = 16 * 1024;

/// The deadline of an answer the client did not mark (a token from another host's realm, a
/// blob GET's error body): as marked ones have with the default head wait.
const UNMARKED: Duration = Duration::from_secs(30);

/// When a response's small body must have arrived whole; set on every answer the client gets.
#[derive(Debug, Clone, Copy)]
pub struct AnswerDeadline {
    pub at: Instant,
    pub allowed: Duration,
}

impl AnswerDeadline {
    /// The deadline for an answer whose head arrived now, when a head may take `head_wait`.
    pub fn after(head_wait: Duration) -> Self {
        let allowed = head_wait.saturating_mul(WHOLE_ANSWER_WAITS);
        AnswerDeadline { at: Instant::now() + allowed, allowed }
    }
}

/// The body of `response`, at most `limit` bytes, read before the response's deadline: an
/// answer that is still arriving then fails as a timeout, which the caller retries like any.
pub fn read_whole(response: &mut Response<Body>, limit: u64) -> Result<Vec<u8>, ureq::Error> {
    let deadline = response.extensions().get::<AnswerDeadline>().copied().unwrap_or(AnswerDeadline::after(UNMARKED));
    let mut reader = response.body_mut().with_config().limit(limit).reader();
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let read = match reader.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ureq::Error::from(e)),
        };
        bytes.extend_from_slice(&chunk[..read]);
        let earned = Duration::from_secs(bytes.len() as u64 / SLOWEST_BYTES_PER_SECOND);
        if Instant::now() > deadline.at + earned {
            let message = format!(
                "the answer was still arriving {} s after its head ({} bytes so far): the registry sends it too \
                 slowly (RF-6)",
                (deadline.allowed + earned).as_secs(),
                bytes.len()
            );
            return Err(ureq::Error::Io(io::Error::new(io::ErrorKind::TimedOut, message)));
        }
    }
}
