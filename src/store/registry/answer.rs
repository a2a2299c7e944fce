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
    let deadline = response.extensions().get::<AnswerDeadline>().copied();
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
        if let Some(deadline) = deadline.filter(|deadline| Instant::now() > deadline.at) {
            let message = format!(
                "the answer was still arriving {} s after its head ({} bytes so far): the registry sends it too \
                 slowly (RF-6)",
                deadline.allowed.as_secs(),
                bytes.len()
            );
            return Err(ureq::Error::Io(io::Error::new(io::ErrorKind::TimedOut, message)));
        }
    }
}
