//! Blob GETs answered straight from the connection (spec/cli.md RF-5, issue 18): the request is
//! written and its answer's head parsed here, and the body is read from the socket (or the TLS
//! stream) into the caller's buffers, which for a blob are the read-ahead buffers then hashed
//! and written in place. Through the general HTTP client every body byte was copied once more,
//! out of the client's own receive buffer (9-14% of an export's CPU, perf).
//!
//! The answer comes back as the same `Response<Body>` the client gets from `ureq`, so the one
//! request logic above it ([`super::client`]: challenges, statuses, retries) treats both alike.
//! What this reader accepts from the network is bounded and checked: a head of at most
//! [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields (parsed by `httparse`), one `Content-Length`
//! (digits only; several must agree) or `chunked` framing (no other transfer coding), header
//! values it sends free of control characters. Redirects are followed as the client's own
//! agent follows them: never with the registry's credentials, never from HTTPS to plain HTTP,
//! at most [`MAX_REDIRECTS`]. Connections are kept alive per origin, as the agent's are; a
//! kept connection the server closed meanwhile is replaced once, before any answer is read.
//!
//! Not taken here (the caller uses the general client): a proxy in the environment, and HTTPS
//! without certificate verification (`--registry-verify-certs=false`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use ureq::Body;
use ureq::http::{HeaderName, HeaderValue, Response, Uri};

use super::credentials::Secret;
use super::origin::{AnsweredFrom, Origin, resolve};

/// The longest answer head accepted (status line and every field).
pub const MAX_HEAD: usize = 64 << 10;
/// The most header fields an answer may have.
pub const MAX_HEADERS: usize = 100;
/// Redirects followed for one request, as many as the agent follows.
pub const MAX_REDIRECTS: usize = 10;
/// The longest chunk-size line (with extensions) or trailer section of a chunked body.
const MAX_CHUNK_LINE: usize = 4 << 10;
/// Informational (1xx) answers skipped before the real one.
const MAX_INFORMATIONAL: usize = 8;
/// How much is read at a time while a head or a chunk line is incomplete.
const CONTROL_READ: usize = 16 << 10;

/// The direct GET path of one client.
pub struct DirectGets {
    /// Verifying TLS configuration (the agent's roots); `None`: HTTPS goes the general way.
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    read_timeout: Duration,
    user_agent: &'static str,
    idle: Arc<IdleConnections>,
    answers: AtomicU64,
}

impl DirectGets {
    pub fn new(
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
        read_timeout: Duration,
        idle_per_origin: usize,
    ) -> Self {
        DirectGets {
            tls,
            connect_timeout,
            read_timeout,
            user_agent: super::agent::USER_AGENT,
            idle: Arc::new(IdleConnections { by_origin: Mutex::new(HashMap::new()), per_origin: idle_per_origin }),
            answers: AtomicU64::new(0),
        }
    }

    /// How many answers were read here (for tests and diagnostics).
    pub fn answers(&self) -> u64 {
        self.answers.load(Ordering::Relaxed)
    }

    /// GETs `url` with `headers` and `authorization` (sent to `url`'s origin only, never on a
    /// redirect), following redirects. `Ok(None)`: this URL is not for this path (HTTPS without
    /// a verifying configuration); nothing was sent.
    pub fn get(
        &self,
        url: &str,
        headers: &[(&str, String)],
        authorization: Option<&Secret>,
    ) -> io::Result<Option<Response<Body>>> {
        let mut url = url.to_string();
        let mut authorization = authorization;
        for _ in 0..=MAX_REDIRECTS {
            let target = Target::parse(&url)?;
            if target.origin.is_tls() && self.tls.is_none() {
                return Ok(None);
            }
            let (response, location) = self.exchange(&target, headers, authorization)?;
            let Some(location) = location else {
                self.answers.fetch_add(1, Ordering::Relaxed);
                let mut response = response;
                response.extensions_mut().insert(AnsweredFrom(url));
                return Ok(Some(response));
            };
            let next = resolve(&url, &location)
                .ok_or_else(|| protocol(format!("a redirect to {location:?} that is not a URL")))?;
            let next_origin =
                Origin::of(&next).ok_or_else(|| protocol(format!("a redirect to {next:?}, which is not http(s)")))?;
            if target.origin.is_tls() && !next_origin.is_tls() {
                return Err(protocol(format!(
                    "a redirect from {} to plain-HTTP {next_origin}; refusing to leave HTTPS",
                    target.origin
                )));
            }
            url = next;
            authorization = None;
        }
        Err(protocol(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// One request on a kept connection or a new one; a kept connection that fails before any
    /// answer arrived (the server closed it while idle) is replaced by a new one, once. Returns
    /// the answer, and the `Location` to go to when it is a redirect.
    fn exchange(
        &self,
        target: &Target,
        headers: &[(&str, String)],
        authorization: Option<&Secret>,
    ) -> io::Result<(Response<Body>, Option<String>)> {
        let request = target.request(self.user_agent, headers, authorization)?;
        if let Some(mut kept) = self.idle.take(&target.origin) {
            match kept.send_and_read_head(&request) {
                Ok(head) => return self.answer(kept, head),
                Err(HeadError::Io(e)) => return Err(e),
                Err(HeadError::ClosedBeforeAnswer(_)) => {}
            }
        }
        let mut fresh = self.connect(target)?;
        match fresh.send_and_read_head(&request) {
            Ok(head) => self.answer(fresh, head),
            Err(HeadError::Io(e) | HeadError::ClosedBeforeAnswer(e)) => Err(e),
        }
    }

    fn answer(&self, connection: Connection, head: Head) -> io::Result<(Response<Body>, Option<String>)> {
        let redirect = matches!(head.status, 301 | 302 | 303 | 307 | 308);
        let location = redirect.then(|| head.field("location").map(str::to_string)).flatten();
        let framing = head.framing()?;
        let reusable = head.keep_alive && !matches!(framing, Framing::UntilClose);
        let mut builder = Response::builder().status(head.status);
        for (name, value) in &head.fields {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| protocol(format!("an answer header with the invalid name {name:?}")))?;
            let value = HeaderValue::from_bytes(value)
                .map_err(|_| protocol(format!("the answer header {name} has an invalid value")))?;
            builder = builder.header(name, value);
        }
        let body = if location.is_some() {
            // A redirect's own body is not read: its connection is closed.
            Body::builder().data(Vec::new())
        } else {
            let idle = Arc::clone(&self.idle);
            Body::builder().reader(DirectBody {
                connection: Some(connection),
                framing,
                reusable,
                idle,
                finished: false,
            })
        };
        let response = builder.body(body).map_err(|e| protocol(format!("cannot build the answer: {e}")))?;
        Ok((response, location))
    }

    fn connect(&self, target: &Target) -> io::Result<Connection> {
        let addresses: Vec<_> = (target.connect_host(), target.origin.port()).to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{} resolves to no address", target.host));
        let mut tcp = None;
        for address in addresses {
            match TcpStream::connect_timeout(&address, self.connect_timeout) {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or(last)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(self.read_timeout))?;
        tcp.set_write_timeout(Some(self.read_timeout))?;
        let stream = match &self.tls {
            Some(tls) if target.origin.is_tls() => {
                let name = ServerName::try_from(target.connect_host().to_string())
                    .map_err(|e| protocol(format!("{} is not a name TLS can check: {e}", target.host)))?;
                let session = rustls::ClientConnection::new(Arc::clone(tls), name).map_err(io::Error::other)?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(session, tcp)))
            }
            _ => Stream::Plain(tcp),
        };
        Ok(Connection { origin: target.origin.clone(), stream, pending: Vec::new(), pending_at: 0 })
    }
}

fn protocol(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the registry's answer breaks HTTP/1.1: {message}"))
}

/// Where one request goes.
struct Target {
    origin: Origin,
    /// The host as the URL names it (an IPv6 address in brackets).
    host: String,
    /// `Host` field value: the host, and the port when the URL gives one.
    host_field: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> io::Result<Target> {
        let invalid = || protocol(format!("cannot request {url:?}"));
        let origin = Origin::of(url).ok_or_else(invalid)?;
        let uri: Uri = url.parse().map_err(|_| invalid())?;
        let host = uri.host().ok_or_else(invalid)?.to_string();
        let host_field = match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".to_string());
        Ok(Target { origin, host, host_field, path_and_query })
    }

    /// The host to connect to and name in TLS: without an IPv6 address's brackets.
    fn connect_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The request's bytes. Every value is checked as a header value (no CR, LF or other
    /// control character can split the request).
    fn request(
        &self,
        user_agent: &str,
        headers: &[(&str, String)],
        authorization: Option<&Secret>,
    ) -> io::Result<Vec<u8>> {
        let mut fields: Vec<(&str, &str)> = vec![
            ("Host", &self.host_field),
            ("User-Agent", user_agent),
            ("Accept", "*/*"),
            ("Accept-Encoding", "identity"),
        ];
        fields.extend(headers.iter().map(|(name, value)| (*name, value.as_str())));
        if let Some(secret) = authorization {
            fields.push(("Authorization", secret.expose()));
        }
        let mut request = format!("GET {} HTTP/1.1\r\n", self.path_and_query).into_bytes();
        for (name, value) in fields {
            if HeaderName::from_bytes(name.as_bytes()).is_err() || HeaderValue::from_str(value).is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the request header {name} holds characters a header cannot carry"),
                ));
            }
            request.extend_from_slice(name.as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");
        Ok(request)
    }
}

/// Connections kept alive after their answer was read to its end.
struct IdleConnections {
    by_origin: Mutex<HashMap<Origin, Vec<Connection>>>,
    per_origin: usize,
}

impl IdleConnections {
    fn take(&self, origin: &Origin) -> Option<Connection> {
        self.by_origin.lock().expect("idle connections lock").get_mut(origin)?.pop()
    }

    fn put(&self, connection: Connection) {
        let mut by_origin = self.by_origin.lock().expect("idle connections lock");
        let kept = by_origin.entry(connection.origin.clone()).or_default();
        if kept.len() < self.per_origin {
            kept.push(connection);
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One connection, with what was received past the part already taken (a head, a chunk line).
struct Connection {
    origin: Origin,
    stream: Stream,
    pending: Vec<u8>,
    pending_at: usize,
}

/// Why no head was read.
enum HeadError {
    /// The connection ended before a single byte of an answer: a kept connection closed while
    /// idle, which a new connection replaces.
    ClosedBeforeAnswer(io::Error),
    Io(io::Error),
}

/// An answer's status line and fields.
struct Head {
    status: u16,
    fields: Vec<(String, Vec<u8>)>,
    keep_alive: bool,
}

impl Head {
    fn field<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.values(name).next().and_then(|v| std::str::from_utf8(v).ok()).map(str::trim)
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// How the body is delimited (RFC 9112 section 6.3, for the answer to a GET).
    fn framing(&self) -> io::Result<Framing> {
        if self.status == 204 || self.status == 304 {
            return Ok(Framing::Length(0));
        }
        let codings: Vec<String> = self
            .values("transfer-encoding")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        if !codings.is_empty() {
            if codings != ["chunked"] {
                return Err(protocol(format!("the transfer coding {:?} (only chunked is read)", codings.join(", "))));
            }
            // A length beside chunked framing is ignored (RFC 9112 6.3), never trusted.
            return Ok(Framing::Chunked(ChunkState::Size));
        }
        let mut length: Option<u64> = None;
        for value in self.values("content-length").flat_map(|v| v.split(|&b| b == b',')) {
            let text = std::str::from_utf8(value).unwrap_or("").trim();
            let parsed = (!text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| protocol(format!("the Content-Length {text:?}")))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(protocol("Content-Length fields that disagree".to_string()));
            }
            length = Some(parsed);
        }
        Ok(match length {
            Some(length) => Framing::Length(length),
            None => Framing::UntilClose,
        })
    }
}

impl Connection {
    fn send_and_read_head(&mut self, request: &[u8]) -> Result<Head, HeadError> {
        let sent = self.stream.write_all(request).and_then(|()| self.stream.flush());
        if let Err(e) = sent {
            return Err(HeadError::ClosedBeforeAnswer(e));
        }
        for _ in 0..MAX_INFORMATIONAL {
            let head = self.read_head()?;
            if !(100..200).contains(&head.status) {
                return Ok(head);
            }
        }
        Err(HeadError::Io(protocol(format!("more than {MAX_INFORMATIONAL} informational answers"))))
    }

    fn read_head(&mut self) -> Result<Head, HeadError> {
        let mut received_any = self.pending_at < self.pending.len();
        loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut fields);
            let available = &self.pending[self.pending_at..];
            match response.parse(available) {
                Ok(httparse::Status::Complete(length)) => {
                    let mut head = Head {
                        status: response.code.unwrap_or(0),
                        fields: response.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect(),
                        keep_alive: false,
                    };
                    let close = head
                        .values("connection")
                        .any(|v| String::from_utf8_lossy(v).to_ascii_lowercase().contains("close"));
                    head.keep_alive = response.version == Some(1) && !close;
                    self.pending_at += length;
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) if available.len() >= MAX_HEAD => {
                    return Err(HeadError::Io(protocol(format!("an answer head longer than {MAX_HEAD} bytes"))));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(HeadError::Io(protocol(format!("an answer head that does not parse ({e})")))),
            }
            match self.receive_more(MAX_HEAD) {
                Ok(0) if !received_any => {
                    let closed = io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed before an answer");
                    return Err(HeadError::ClosedBeforeAnswer(closed));
                }
                Ok(0) => {
                    let closed =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed inside an answer head");
                    return Err(HeadError::Io(closed));
                }
                Ok(_) => received_any = true,
                Err(e) if !received_any && is_reset(&e) => return Err(HeadError::ClosedBeforeAnswer(e)),
                Err(e) => return Err(HeadError::Io(e)),
            }
        }
    }

    /// Receives up to [`CONTROL_READ`] more bytes into `pending`, keeping at most `limit`
    /// unread; returns how many arrived (0 at the end of the stream).
    fn receive_more(&mut self, limit: usize) -> io::Result<usize> {
        if self.pending_at > 0 {
            self.pending.drain(..self.pending_at);
            self.pending_at = 0;
        }
        let room = limit.saturating_sub(self.pending.len()).clamp(1, CONTROL_READ);
        let start = self.pending.len();
        self.pending.resize(start + room, 0);
        let read = self.stream.read(&mut self.pending[start..]);
        self.pending.truncate(start + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Body bytes: what is already received first, then straight from the stream into `buf`.
    fn read_body(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let pending = &self.pending[self.pending_at..];
        if !pending.is_empty() {
            let n = pending.len().min(buf.len());
            buf[..n].copy_from_slice(&pending[..n]);
            self.pending_at += n;
            return Ok(n);
        }
        self.stream.read(buf)
    }

    /// One line (without its CRLF) of a chunked body's framing, at most [`MAX_CHUNK_LINE`].
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let pending = &self.pending[self.pending_at..];
            let end = pending.iter().position(|&b| b == b'\n');
            if end.unwrap_or(pending.len()) > MAX_CHUNK_LINE {
                return Err(protocol(format!("a chunk line longer than {MAX_CHUNK_LINE} bytes")));
            }
            if let Some(end) = end {
                let line = pending[..end].strip_suffix(b"\r").unwrap_or(&pending[..end]).to_vec();
                self.pending_at += end + 1;
                return Ok(line);
            }
            if self.receive_more(MAX_CHUNK_LINE)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed inside a chunked body",
                ));
            }
        }
    }
}

fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe
    )
}

/// How an answer's body ends.
enum Framing {
    /// After this many more bytes.
    Length(u64),
    Chunked(ChunkState),
    /// When the server closes the connection.
    UntilClose,
}

enum ChunkState {
    /// A chunk-size line comes next.
    Size,
    /// This many bytes of the current chunk remain, then its CRLF.
    Data(u64),
    /// The last chunk and its trailers were read.
    Done,
}

/// An answer's body, read from the connection into the caller's buffer. Read to its end on a
/// connection that may stay open, the connection is kept for the next request.
struct DirectBody {
    connection: Option<Connection>,
    framing: Framing,
    reusable: bool,
    idle: Arc<IdleConnections>,
    finished: bool,
}

impl DirectBody {
    fn finish(&mut self) {
        self.finished = true;
        if let Some(connection) = self.connection.take()
            && self.reusable
            && connection.pending_at == connection.pending.len()
        {
            self.idle.put(connection);
        }
    }

    fn closed_early(what: String) -> io::Error {
        io::Error::new(io::ErrorKind::UnexpectedEof, what)
    }
}

impl Read for DirectBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished || buf.is_empty() {
            return Ok(0);
        }
        let Some(connection) = self.connection.as_mut() else { return Ok(0) };
        match &mut self.framing {
            Framing::Length(0) => {
                self.finish();
                Ok(0)
            }
            Framing::Length(remaining) => {
                let want = buf.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                let n = connection.read_body(&mut buf[..want])?;
                if n == 0 {
                    return Err(Self::closed_early(format!(
                        "the connection closed {remaining} bytes before the end its Content-Length gives"
                    )));
                }
                *remaining -= n as u64;
                if *remaining == 0 {
                    self.finish();
                }
                Ok(n)
            }
            Framing::UntilClose => {
                let n = connection.read_body(buf)?;
                if n == 0 {
                    self.finished = true;
                    self.connection = None;
                }
                Ok(n)
            }
            Framing::Chunked(state) => loop {
                match state {
                    ChunkState::Size => {
                        let line = connection.read_line()?;
                        let mut with_end = line.clone();
                        with_end.extend_from_slice(b"\r\n");
                        let size = match httparse::parse_chunk_size(&with_end) {
                            Ok(httparse::Status::Complete((_, size))) => size,
                            _ => {
                                let shown: String = String::from_utf8_lossy(&line).chars().take(40).collect();
                                return Err(protocol(format!("the chunk-size line {shown:?}")));
                            }
                        };
                        if size == 0 {
                            // Trailers, up to the empty line that ends the body.
                            let mut trailer_bytes = 0;
                            loop {
                                let trailer = connection.read_line()?;
                                if trailer.is_empty() {
                                    break;
                                }
                                trailer_bytes += trailer.len();
                                if trailer_bytes > MAX_CHUNK_LINE {
                                    return Err(protocol(format!("trailers longer than {MAX_CHUNK_LINE} bytes")));
                                }
                            }
                            *state = ChunkState::Done;
                        } else {
                            *state = ChunkState::Data(size);
                        }
                    }
                    ChunkState::Data(0) => {
                        if !connection.read_line()?.is_empty() {
                            return Err(protocol("a chunk longer than its size line says".to_string()));
                        }
                        *state = ChunkState::Size;
                    }
                    ChunkState::Data(remaining) => {
                        let want = buf.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                        let n = connection.read_body(&mut buf[..want])?;
                        if n == 0 {
                            return Err(Self::closed_early("the connection closed inside a chunk".to_string()));
                        }
                        *remaining -= n as u64;
                        return Ok(n);
                    }
                    ChunkState::Done => {
                        self.finish();
                        return Ok(0);
                    }
                }
            },
        }
    }
}

/// RF-5: what the reader accepts and refuses, against scripted loopback servers.
#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    use super::*;

    /// What the scripted server does after writing an answer.
    #[derive(Clone, Copy, PartialEq)]
    enum Then {
        Keep,
        Close,
    }

    /// A loopback server answering each request it reads with the next scripted answer; it
    /// reports every request as (connection number, request head).
    fn serve(script: Vec<(Vec<u8>, Then)>) -> (String, mpsc::Receiver<(usize, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut answers = script.into_iter();
            for (number, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => break,
                        }
                    }
                    if head.is_empty() {
                        break;
                    }
                    let _ = tx.send((number, String::from_utf8_lossy(&head).into_owned()));
                    let Some((answer, then)) = answers.next() else { return };
                    let _ = stream.write_all(&answer);
                    if then == Then::Close {
                        break;
                    }
                }
            }
        });
        (base, rx)
    }

    fn direct() -> DirectGets {
        DirectGets::new(None, Duration::from_secs(5), Duration::from_secs(5), 2)
    }

    fn get(direct: &DirectGets, url: &str, authorization: Option<&Secret>) -> io::Result<(u16, Vec<u8>)> {
        let mut response = direct.get(url, &[], authorization)?.expect("plain HTTP is read directly");
        let mut body = Vec::new();
        response.body_mut().as_reader().read_to_end(&mut body)?;
        Ok((response.status().as_u16(), body))
    }

    fn answer(head: &str, body: &[u8]) -> Vec<u8> {
        let mut bytes = head.replace('\n', "\r\n").into_bytes();
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn a_length_delimited_body_is_read_whole_and_its_connection_kept() {
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let (base, requests) = serve(vec![
            (answer("HTTP/1.1 200 OK\nContent-Length: 300000\n", &body), Then::Keep),
            (answer("HTTP/1.1 404 Not Found\nContent-Length: 9\n", b"not found"), Then::Keep),
        ]);
        let direct = direct();
        let token = Secret::new("Bearer abc");
        let (status, read) = get(&direct, &format!("{base}/v2/a/blobs/sha256:1"), Some(&token)).unwrap();
        assert!(status == 200 && read == body);
        let (status, read) = get(&direct, &format!("{base}/v2/a/blobs/sha256:2"), None).unwrap();
        assert_eq!((status, read.as_slice()), (404, &b"not found"[..]));
        let (first, head) = requests.recv().unwrap();
        assert!(head.starts_with("GET /v2/a/blobs/sha256:1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nAuthorization: Bearer abc\r\n") && head.contains("\r\nHost: 127.0.0.1:"), "{head}");
        let (second, head) = requests.recv().unwrap();
        assert!(!head.contains("Authorization"), "{head}");
        assert_eq!(first, second, "the second request went on the kept connection");
        assert_eq!(direct.answers(), 2);
    }

    #[test]
    fn a_kept_connection_the_server_closed_is_replaced() {
        let (base, requests) = serve(vec![
            (answer("HTTP/1.1 200 OK\nContent-Length: 2\n", b"ok"), Then::Close),
            (answer("HTTP/1.1 200 OK\nContent-Length: 5\n", b"again"), Then::Keep),
        ]);
        let direct = direct();
        assert_eq!(get(&direct, &format!("{base}/a"), None).unwrap().1, b"ok");
        assert_eq!(get(&direct, &format!("{base}/b"), None).unwrap().1, b"again");
        let connections: Vec<usize> = requests.try_iter().map(|(n, _)| n).collect();
        assert_eq!(connections, [0, 1], "the closed connection was not used for the second answer");
    }

    #[test]
    fn chunked_bodies_are_decoded_with_extensions_and_trailers() {
        let chunked = b"5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        let (base, _requests) = serve(vec![
            (answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", chunked), Then::Keep),
            (answer("HTTP/1.1 200 OK\nContent-Length: 3\n", b"end"), Then::Keep),
        ]);
        let direct = direct();
        assert_eq!(get(&direct, &format!("{base}/a"), None).unwrap().1, b"hello, world");
        assert_eq!(get(&direct, &format!("{base}/b"), None).unwrap().1, b"end", "the framing ended where it said");
    }

    #[test]
    fn broken_chunked_framing_is_an_error() {
        let cases: [&[u8]; 4] = [
            b"zz\r\nhello\r\n0\r\n\r\n",             // not a hex size
            b"5\r\nhello!!\r\n0\r\n\r\n",            // a chunk longer than its size
            b"ffffffffffffffffff\r\nx\r\n0\r\n\r\n", // a size past 2^64
            b"3\r\nabc",                             // the connection ends inside the body
        ];
        for case in cases {
            let (base, _requests) =
                serve(vec![(answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", case), Then::Close)]);
            let error = get(&direct(), &format!("{base}/a"), None).unwrap_err();
            assert!(
                matches!(error.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof),
                "{:?}: {error}",
                String::from_utf8_lossy(case)
            );
        }
        let long_line = [vec![b'1'; MAX_CHUNK_LINE + 10], b"\r\n".to_vec()].concat();
        let (base, _requests) =
            serve(vec![(answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", &long_line), Then::Close)]);
        let error = get(&direct(), &format!("{base}/a"), None).unwrap_err();
        assert!(error.to_string().contains("chunk line longer"), "{error}");
    }

    #[test]
    fn a_body_cut_short_is_an_error_not_its_end() {
        let (base, _requests) = serve(vec![(answer("HTTP/1.1 200 OK\nContent-Length: 100\n", &[7; 40]), Then::Close)]);
        let error = get(&direct(), &format!("{base}/a"), None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
        assert!(error.to_string().contains("60 bytes before the end"), "{error}");
    }

    #[test]
    fn lengths_and_codings_that_cannot_be_trusted_are_refused() {
        let heads = [
            "HTTP/1.1 200 OK\nContent-Length: 5\nContent-Length: 6\n",
            "HTTP/1.1 200 OK\nContent-Length: 5, 6\n",
            "HTTP/1.1 200 OK\nContent-Length: +5\n",
            "HTTP/1.1 200 OK\nContent-Length: 0x5\n",
            "HTTP/1.1 200 OK\nContent-Length: 99999999999999999999999\n",
            "HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n",
        ];
        for head in heads {
            let (base, _requests) = serve(vec![(answer(head, b"hello"), Then::Close)]);
            let error = get(&direct(), &format!("{base}/a"), None).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{head:?}: {error}");
        }
        let (base, _requests) =
            serve(vec![(answer("HTTP/1.1 200 OK\nContent-Length: 5\nContent-Length: 5\n", b"hello"), Then::Close)]);
        assert_eq!(get(&direct(), &format!("{base}/a"), None).unwrap().1, b"hello", "repeated equal lengths agree");
    }

    #[test]
    fn oversize_heads_and_too_many_fields_are_refused() {
        let long = format!("HTTP/1.1 200 OK\nX-Long: {}\nContent-Length: 0\n", "a".repeat(MAX_HEAD));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\n")).collect();
        let many = format!("HTTP/1.1 200 OK\n{many}Content-Length: 0\n");
        for (head, says) in [(long, "longer than"), (many, "does not parse")] {
            let (base, _requests) = serve(vec![(answer(&head, b""), Then::Close)]);
            let error = get(&direct(), &format!("{base}/a"), None).unwrap_err();
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn informational_answers_are_skipped_and_an_answer_without_length_ends_at_close() {
        let (base, _requests) = serve(vec![(
            answer("HTTP/1.1 103 Early Hints\nLink: </x>\n\nHTTP/1.1 200 OK\n", b"until the end"),
            Then::Close,
        )]);
        assert_eq!(get(&direct(), &format!("{base}/a"), None).unwrap(), (200, b"until the end".to_vec()));
    }

    #[test]
    fn redirects_are_followed_without_the_credentials() {
        let (storage, storage_requests) =
            serve(vec![(answer("HTTP/1.1 200 OK\nContent-Length: 4\n", b"blob"), Then::Keep)]);
        let location =
            format!("HTTP/1.1 307 Temporary Redirect\nLocation: {storage}/bucket/x?sig=1\nContent-Length: 0\n");
        let (registry, registry_requests) = serve(vec![(answer(&location, b""), Then::Keep)]);
        let token = Secret::new("Bearer secret-token");
        let range = [("Range", "bytes=0-".to_string())];
        let mut response =
            direct().get(&format!("{registry}/v2/a/blobs/sha256:1"), &range, Some(&token)).unwrap().unwrap();
        let mut body = Vec::new();
        response.body_mut().as_reader().read_to_end(&mut body).unwrap();
        assert_eq!(body, b"blob");
        assert!(registry_requests.recv().unwrap().1.contains("Authorization: Bearer secret-token"));
        let (_, head) = storage_requests.recv().unwrap();
        assert!(head.starts_with("GET /bucket/x?sig=1 HTTP/1.1\r\n"), "{head}");
        assert!(!head.contains("Authorization") && !head.contains("secret-token"), "{head}");
        assert!(head.contains("Range: bytes=0-"), "the range goes with the redirect: {head}");
    }

    #[test]
    fn a_redirect_loop_ends() {
        let script = (0..=MAX_REDIRECTS)
            .map(|_| (answer("HTTP/1.1 302 Found\nLocation: /again\nContent-Length: 0\n", b""), Then::Keep))
            .collect();
        let (base, _requests) = serve(script);
        let error = get(&direct(), &format!("{base}/a"), None).unwrap_err();
        assert!(error.to_string().contains("more than 10 redirects"), "{error}");
    }

    #[test]
    fn header_values_that_could_split_the_request_are_refused_before_sending() {
        let (base, requests) = serve(vec![]);
        let injected = Secret::new("Bearer x\r\nX-Injected: 1");
        let error = direct().get(&format!("{base}/a"), &[], Some(&injected)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        assert!(!error.to_string().contains("Injected"), "the value is not echoed: {error}");
        assert!(requests.recv_timeout(Duration::from_millis(200)).is_err(), "nothing was sent");
    }

    #[test]
    fn https_without_a_verifying_configuration_is_left_to_the_agent() {
        assert!(direct().get("https://127.0.0.1:1/v2/a/blobs/sha256:1", &[], None).unwrap().is_none());
    }
}

/// Over TLS: a real handshake against a loopback server with its own CA.
#[cfg(test)]
mod tls_tests {
    use std::net::TcpListener;
    use std::thread;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;

    /// A TLS server for `localhost` answering one request with `answer`; the client's config
    /// trusts its certificate.
    fn tls_server(answer: Vec<u8>) -> (String, Arc<rustls::ClientConfig>) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = CertificateDer::from(certified.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Arc::new(server);
        thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let session = rustls::ServerConnection::new(server).unwrap();
            let mut stream = rustls::StreamOwned::new(session, tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream.write_all(&answer);
            let _ = stream.flush();
        });
        (format!("https://localhost:{port}"), Arc::new(client))
    }

    #[test]
    fn a_body_is_read_over_tls() {
        let (base, tls) = tls_server(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret".to_vec());
        let direct = DirectGets::new(Some(tls), Duration::from_secs(5), Duration::from_secs(5), 1);
        let mut response = direct.get(&format!("{base}/v2/a/blobs/sha256:1"), &[], None).unwrap().unwrap();
        let mut body = Vec::new();
        response.body_mut().as_reader().read_to_end(&mut body).unwrap();
        assert_eq!(body, b"secret");
    }

    #[test]
    fn a_redirect_from_https_to_plain_http_is_refused() {
        let (base, tls) = tls_server(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:9/x\r\nContent-Length: 0\r\n\r\n".to_vec(),
        );
        let direct = DirectGets::new(Some(tls), Duration::from_secs(5), Duration::from_secs(5), 1);
        let token = Secret::new("Bearer t");
        let error = direct.get(&format!("{base}/v2/a/blobs/sha256:1"), &[], Some(&token)).unwrap_err();
        assert!(error.to_string().contains("refusing to leave HTTPS"), "{error}");
    }

    #[test]
    fn an_untrusted_certificate_fails_the_handshake() {
        let (base, _trusting) = tls_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let strangers = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let direct = DirectGets::new(Some(Arc::new(strangers)), Duration::from_secs(5), Duration::from_secs(5), 1);
        let error = direct.get(&format!("{base}/a"), &[], None).unwrap_err();
        let kind = crate::store::registry::agent::io_kind(&error);
        assert!(matches!(kind, crate::store::registry::RegistryErrorKind::Tls(_)), "{kind:?}");
    }
}
