//! What the fault server can be told to do wrong, and the rules that say to which requests.
//!
//! A rule matches a method and a path fragment, may let the first few matching requests
//! through (`after`), then applies its fault to the next `times` matching requests. The first
//! rule that matches wins; rules are consumed in the order they were added.

use std::time::Duration;

use super::http::Request;

/// One way to misbehave.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status (with a distribution error body) instead of serving.
    Status(u16),
    /// Answer this status with a distribution error carrying this message (a registry's own
    /// words, quoted by the client's errors).
    StatusWithMessage(u16, String),
    /// Answer this status with a distribution error of this code (e.g. `BLOB_UPLOAD_UNKNOWN`).
    StatusWithCode(u16, String),
    /// Serve the registry's answer, or these bytes instead of its body, with chunked transfer
    /// coding (no `Content-Length`): the body ends where the server says it does.
    Chunked(Option<Vec<u8>>),
    /// Answer 429 with `Retry-After: <seconds>`.
    TooManyRequests { retry_after: u64 },
    /// Send the head and this many body bytes, then reset the connection (RST).
    ResetAfter(usize),
    /// Send the head (whose `Content-Length` promises the whole body) and this many body bytes,
    /// then close the connection cleanly (FIN): a truncated body.
    TruncateAfter(usize),
    /// Send the head and this many body bytes, then go silent for `pause` before closing.
    StallBody { after: usize, pause: Duration },
    /// Send the head, then the body one byte at a time with this pause before each: a
    /// registry that never stalls long enough for a per-read timeout, yet never finishes.
    Trickle(Duration),
    /// Serve a body of the same length with every byte changed.
    WrongBody,
    /// Serve these bytes as the body (the head's length follows them).
    ReplaceBody(Vec<u8>),
    /// Answer with a `Docker-Content-Digest` of other bytes.
    WrongDigestHeader,
    /// Accept the request, send nothing for this long, then close the connection.
    Stall(Duration),
    /// Serve the registry's answer, but only after this long: a slow registry, not a broken one.
    Delay(Duration),
    /// Answer 307 to the same path and query on another server (`http://host:port`).
    Redirect(String),
    /// Serve the registry's answer with this header set (replacing any of that name), e.g. a
    /// `Location` or `Link` on another host.
    SetHeader(String, String),
    /// Invalidate every issued token before the request is checked, as if they had expired.
    ExpireTokens,
    /// Answer with this `Content-Type` and a `Content-Length` of this many bytes (the body cut or
    /// padded to it): on a HEAD, whose body is never sent, a head that lies about the manifest.
    Misdescribe { content_type: String, content_length: usize },
}

impl Fault {
    /// Token expiry is applied before authentication; every other fault after it, so that a
    /// client's first, unauthenticated request does not use a fault up.
    pub fn before_auth(&self) -> bool {
        matches!(self, Fault::ExpireTokens)
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone)]
pub struct Rule {
    method: Option<String>,
    path_contains: String,
    with_header: Option<String>,
    skip: usize,
    remaining: usize,
    fault: Fault,
    /// How many requests this rule has hit so far.
    pub hits: usize,
}

impl Rule {
    /// `fault` once, for requests with this method (`None`: any) whose path contains `path`.
    pub fn new(method: Option<&str>, path: &str, fault: Fault) -> Self {
        Rule {
            method: method.map(str::to_string),
            path_contains: path.to_string(),
            with_header: None,
            skip: 0,
            remaining: 1,
            fault,
            hits: 0,
        }
    }

    /// Apply the fault to this many matching requests.
    pub fn times(mut self, times: usize) -> Self {
        self.remaining = times;
        self
    }

    /// Let the first `count` matching requests through untouched.
    pub fn after(mut self, count: usize) -> Self {
        self.skip = count;
        self
    }

    /// Match only requests that carry this header (e.g. `range` for resumed downloads).
    pub fn with_header(mut self, name: &str) -> Self {
        self.with_header = Some(name.to_ascii_lowercase());
        self
    }

    fn matches(&self, request: &Request) -> bool {
        self.method.as_deref().is_none_or(|m| m == request.method)
            && request.path.contains(&self.path_contains)
            && self.with_header.as_deref().is_none_or(|name| request.header(name).is_some())
    }

    /// Whether this rule takes `request`; counts it down either way when it matches.
    fn take(&mut self, request: &Request, before_auth: bool) -> Option<Fault> {
        if self.fault.before_auth() != before_auth || self.remaining == 0 || !self.matches(request) {
            return None;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        self.remaining -= 1;
        self.hits += 1;
        Some(self.fault.clone())
    }
}

/// The first rule that takes the request, in the stage asked for.
pub fn take_fault(rules: &mut [Rule], request: &Request, before_auth: bool) -> Option<Fault> {
    rules.iter_mut().find_map(|rule| rule.take(request, before_auth))
}
