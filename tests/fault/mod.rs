//! A fault-injection registry for the faults a real registry will not produce on demand
//! (spec/testing.md TS-2): an in-process HTTP/1.1 server on `127.0.0.1:0`, one thread per
//! connection, no async, that speaks enough of the distribution API for repositories held in
//! memory and can be told, per request path, to break: error statuses, 429 with `Retry-After`,
//! a reset or a clean close in the middle of a body, a slow answer, wrong bytes, a wrong
//! `Docker-Content-Digest`, a head that misdescribes its body, silence, a redirect to another server, tokens that expire.
//!
//! API:
//! - [`FaultServer::start`] (anonymous) or [`FaultServer::start_with_auth`] (bearer tokens from
//!   its own `/token`, for basic credentials); [`FaultServer::host`], [`FaultServer::base_url`].
//! - Content: [`FaultServer::seed_image`] (config + layers + OCI manifest, tagged),
//!   [`FaultServer::put_blob`], [`FaultServer::blob`] (what an upload left behind),
//!   [`FaultServer::open_upload`] (an upload in progress, for a `Location` on this server).
//! - Faults: [`FaultServer::add`] a [`Rule`] carrying a [`Fault`]; [`FaultServer::faults_applied`].
//! - Strictness: [`FaultServer::limits`] ([`Limits`]: `Range` support, chunk and single-PUT size
//!   caps, tag page size).
//! - [`harness`]: the client side the tests share (time bound, client options that record
//!   retries, content, pulls, leak checks).
//! - What happened: [`FaultServer::requests`] (every request with its headers and answer),
//!   [`FaultServer::count`], [`FaultServer::token_requests`], [`FaultServer::issued_tokens`],
//!   [`FaultServer::expire_tokens`].
//!
//! Every wait is bounded: connections time out after [`IO_TIMEOUT`] and stalls are finite, so a
//! server never keeps a test alive. Dropping the server stops its accept loop.

// Each test binary compiles its own copy of this module and uses only part of it.
#![allow(dead_code, unused_imports)]

mod auth;
mod faults;
pub mod harness;
mod http;
mod registry;

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

pub use auth::TokenAuth;
pub use faults::{Fault, Rule};
pub use http::{Request, Response};
pub use registry::{Limits, Route, Store, digest_of};

use faults::take_fault;

/// How long a connection may sit idle (between or inside requests) before the server drops it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Media types of the images [`FaultServer::seed_image`] makes (OCI image-spec).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One request as the server saw it, and how it answered.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// The status sent, or `None` when the connection was broken or left silent instead.
    pub status: Option<u16>,
    /// The fault applied, if any.
    pub fault: Option<String>,
}

impl Logged {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// An image the server holds.
#[derive(Debug, Clone)]
pub struct SeededImage {
    /// `127.0.0.1:PORT/repository:tag`.
    pub reference: String,
    pub manifest_digest: String,
    pub manifest: Vec<u8>,
    /// Digest and bytes of each layer, in manifest order.
    pub layers: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
struct State {
    store: Store,
    rules: Vec<Rule>,
    log: Vec<Logged>,
    auth: Option<TokenAuth>,
}

struct Shared {
    host: String,
    stop: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread must not take the whole server down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running server; see the module documentation.
pub struct FaultServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultServer {
    /// An anonymous registry on a free loopback port.
    pub fn start() -> FaultServer {
        Self::start_inner(None)
    }

    /// A registry that wants bearer tokens from its own `/token`, which takes these basic
    /// credentials.
    pub fn start_with_auth(username: &str, password: &str) -> FaultServer {
        Self::start_inner(Some(TokenAuth::new(username, password)))
    }

    fn start_inner(auth: Option<TokenAuth>) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault server on 127.0.0.1");
        let addr = listener.local_addr().expect("the fault server's address");
        let shared = Arc::new(Shared {
            host: addr.to_string(),
            stop: AtomicBool::new(false),
            state: Mutex::new(State { auth, ..State::default() }),
        });
        let accepting = Arc::clone(&shared);
        thread::Builder::new()
            .name("fault-accept".into())
            .spawn(move || accept_loop(listener, accepting))
            .expect("spawn the fault server");
        FaultServer { addr, shared }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a fault rule (after those already added).
    pub fn add(&self, rule: Rule) {
        self.shared.state().rules.push(rule);
    }

    /// How many requests a fault was applied to, over all rules.
    pub fn faults_applied(&self) -> usize {
        self.shared.state().rules.iter().map(|rule| rule.hits).sum()
    }

    /// Changes how strict the registry is.
    pub fn limits(&self, change: impl FnOnce(&mut Limits)) {
        change(&mut self.shared.state().store.limits);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.state().log.clone()
    }

    /// Requests with this method (`None`: any) whose path contains `path`.
    pub fn count(&self, method: Option<&str>, path: &str) -> usize {
        self.shared.state().log.iter().filter(|r| method.is_none_or(|m| m == r.method) && r.path.contains(path)).count()
    }

    /// Every token issued so far stops working.
    pub fn expire_tokens(&self) {
        if let Some(auth) = self.shared.state().auth.as_mut() {
            auth.expire_all();
        }
    }

    /// Requests to `/token` so far.
    pub fn token_requests(&self) -> usize {
        self.shared.state().auth.as_ref().map_or(0, |auth| auth.token_requests)
    }

    /// Every token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.state().auth.as_ref().map_or_else(Vec::new, |auth| auth.issued.clone())
    }

    /// 401 answers given to registry requests so far.
    pub fn challenges(&self) -> usize {
        self.shared.state().auth.as_ref().map_or(0, |auth| auth.challenges)
    }

    /// Stores a blob in `repository`; returns its digest.
    pub fn put_blob(&self, repository: &str, bytes: Vec<u8>) -> String {
        self.shared.state().store.put_blob(repository, bytes)
    }

    /// The blob `repository` holds under `digest`, if any (what an upload committed).
    pub fn blob(&self, repository: &str, digest: &str) -> Option<Vec<u8>> {
        let mut state = self.shared.state();
        state.store.repo(repository).blobs.get(digest).map(|bytes| bytes.to_vec())
    }

    /// Opens an upload into `repository` holding `data` already, as if a client had POSTed and
    /// PATCHed it here; returns the path and query of its `Location`.
    pub fn open_upload(&self, repository: &str, data: &[u8]) -> String {
        self.shared.state().store.open_upload(repository, data)
    }

    /// The manifest bytes `repository` holds under a tag or digest.
    pub fn manifest(&self, repository: &str, reference: &str) -> Option<Vec<u8>> {
        let mut state = self.shared.state();
        let repo = state.store.repo(repository);
        let digest = repo.tags.get(reference).cloned().unwrap_or_else(|| reference.to_string());
        repo.manifests.get(&digest).map(|(_, bytes)| bytes.clone())
    }

    /// Stores a one-config, `layers.len()`-layer OCI image in `repository`, tagged `tag`.
    /// Stores a manifest in `repository` (tagged when `tag` is given); returns its digest.
    pub fn put_manifest(&self, repository: &str, media_type: &str, bytes: Vec<u8>, tag: Option<&str>) -> String {
        self.shared.state().store.put_manifest(repository, media_type, bytes, tag)
    }

    pub fn seed_image(&self, repository: &str, tag: &str, layers: Vec<Vec<u8>>) -> SeededImage {
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}
        })
        .to_string()
        .into_bytes();
        let config_size = config.len();
        let config_digest = self.put_blob(repository, config);
        let layers: Vec<(String, Vec<u8>)> =
            layers.into_iter().map(|bytes| (self.put_blob(repository, bytes.clone()), bytes)).collect();
        let descriptors: Vec<serde_json::Value> = layers
            .iter()
            .map(|(digest, bytes)| serde_json::json!({"mediaType": OCI_LAYER, "digest": digest, "size": bytes.len()}))
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": descriptors,
        })
        .to_string()
        .into_bytes();
        let manifest_digest =
            self.shared.state().store.put_manifest(repository, OCI_MANIFEST, manifest.clone(), Some(tag));
        SeededImage { reference: format!("{}/{repository}:{tag}", self.host()), manifest_digest, manifest, layers }
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for connection in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = connection else { continue };
        let shared = Arc::clone(&shared);
        let _ = thread::Builder::new().name("fault-conn".into()).spawn(move || serve_connection(stream, &shared));
    }
}

/// Serves the requests of one kept-alive connection until the client closes it, it idles past
/// [`IO_TIMEOUT`], or a fault breaks it.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    loop {
        let request = match http::read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => return,
        };
        match answer(&mut stream, shared, &request) {
            Ok(true) => continue,
            Ok(false) | Err(_) => return,
        }
    }
}

/// Answers one request, applying any fault; returns whether the connection stays usable.
fn answer(stream: &mut TcpStream, shared: &Shared, request: &Request) -> std::io::Result<bool> {
    let head_only = request.method == "HEAD";
    let route = Route::parse(&request.path);
    let (index, fault, response) = {
        let mut state = shared.state();
        let state = &mut *state;
        let index = state.log.len();
        state.log.push(Logged {
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body_len: request.body.len(),
            status: None,
            fault: None,
        });
        let mut applied = Vec::new();
        if let Some(fault) = take_fault(&mut state.rules, request, true) {
            if let Some(auth) = state.auth.as_mut() {
                auth.expire_all();
            }
            applied.push(format!("{fault:?}"));
        }
        // Authentication first: a fault is meant for a request the registry would serve.
        let (repository, action) = route.access(&request.method);
        let refused = match state.auth.as_mut() {
            Some(auth) if route != Route::Token && !auth.allows(request, repository, action) => {
                Some(auth.challenge(&shared.host, repository, action))
            }
            _ => None,
        };
        let fault = if refused.is_none() { take_fault(&mut state.rules, request, false) } else { None };
        applied.extend(fault.as_ref().map(|f| format!("{f:?}")));
        state.log[index].fault = (!applied.is_empty()).then(|| applied.join(", "));
        let response = match (&refused, &fault) {
            (Some(challenge), _) => Some(challenge.clone()),
            // These faults answer in place of the registry.
            (
                None,
                Some(
                    Fault::Status(_)
                    | Fault::StatusWithMessage(..)
                    | Fault::StatusWithCode(..)
                    | Fault::TooManyRequests { .. }
                    | Fault::Redirect(_)
                    | Fault::Stall(_),
                ),
            ) => None,
            (None, _) if route == Route::Token => Some(
                state.auth.as_mut().map_or_else(|| Response::error(404, "NOT_FOUND", "no auth"), |a| a.issue(request)),
            ),
            (None, _) => Some(state.store.handle(request, &route, state.auth.as_ref())),
        };
        (index, fault, response)
    };
    let record = |status: Option<u16>| shared.state().log[index].status = status;

    let Some(mut response) = response else {
        // A fault that replaces the answer altogether.
        let replacement = match fault {
            Some(Fault::Status(status)) => Response::error(status, "FAULT", "injected failure"),
            Some(Fault::StatusWithMessage(status, message)) => Response::error(status, "FAULT", &message),
            Some(Fault::StatusWithCode(status, code)) => Response::error(status, &code, "injected failure"),
            Some(Fault::TooManyRequests { retry_after }) => {
                Response::error(429, "TOOMANYREQUESTS", "slow down").header("Retry-After", retry_after.to_string())
            }
            Some(Fault::Redirect(base)) => {
                let query = if request.query.is_empty() { String::new() } else { format!("?{}", request.query) };
                Response::new(307).header("Location", format!("{base}{}{query}", request.path))
            }
            Some(Fault::Stall(pause)) => {
                thread::sleep(pause);
                record(None);
                return Ok(false);
            }
            _ => unreachable!("only replacing faults leave no response"),
        };
        record(Some(replacement.status));
        http::write_response(stream, &replacement, head_only)?;
        return Ok(true);
    };

    match fault {
        Some(Fault::ResetAfter(limit)) => {
            http::write_partial(stream, &response, limit)?;
            // Let the bytes reach the client before the reset overtakes them.
            thread::sleep(Duration::from_millis(50));
            record(None);
            reset(stream);
            return Ok(false);
        }
        Some(Fault::TruncateAfter(limit)) => {
            http::write_partial(stream, &response, limit)?;
            record(None);
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(false);
        }
        Some(Fault::StallBody { after, pause }) => {
            http::write_partial(stream, &response, after)?;
            record(None);
            thread::sleep(pause);
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(false);
        }
        Some(Fault::Trickle(pause)) => {
            http::write_partial(stream, &response, 0)?;
            record(None);
            for byte in response.body.chunks(1) {
                thread::sleep(pause);
                if stream.write_all(byte).and_then(|()| stream.flush()).is_err() {
                    break;
                }
            }
            return Ok(false);
        }
        Some(Fault::Chunked(body)) => {
            if let Some(body) = body {
                response.body = body;
            }
            record(Some(response.status));
            http::write_chunked(stream, &response)?;
            return Ok(true);
        }
        Some(Fault::Delay(pause)) => thread::sleep(pause),
        Some(Fault::WrongBody) => response.body.iter_mut().for_each(|byte| *byte = !*byte),
        Some(Fault::ReplaceBody(body)) => response.body = body,
        Some(Fault::SetHeader(name, value)) => response.set_header(&name, value),
        Some(Fault::WrongDigestHeader) => {
            let wrong = digest_of(format!("not {}", request.path).as_bytes());
            response.set_header("Docker-Content-Digest", wrong);
        }
        Some(Fault::Misdescribe { content_type, content_length }) => {
            response.set_header("Content-Type", content_type);
            response.body.resize(content_length, b' ');
        }
        _ => {}
    }
    record(Some(response.status));
    http::write_response(stream, &response, head_only)?;
    stream.flush()?;
    Ok(true)
}

/// Makes the coming close of the connection a TCP reset (RST) rather than a clean FIN, as a
/// crashed proxy or a middlebox does: `SO_LINGER` with a zero timeout.
#[cfg(target_os = "linux")]
fn reset(stream: &TcpStream) {
    use std::ffi::{c_int, c_void};
    use std::os::fd::AsRawFd;

    #[repr(C)]
    struct Linger {
        l_onoff: c_int,
        l_linger: c_int,
    }
    unsafe extern "C" {
        fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, length: u32) -> c_int;
    }
    const SOL_SOCKET: c_int = 1;
    const SO_LINGER: c_int = 13;
    let linger = Linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: the descriptor is open for the duration of the call, and the option value is a
    // valid `struct linger` whose size is passed with it.
    let _ = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            (&raw const linger).cast::<c_void>(),
            size_of::<Linger>() as u32,
        )
    };
    // No shutdown here (that would send a FIN): the connection's two handles are dropped when
    // its thread returns, and the last close, with linger zero, sends the RST.
}

/// Elsewhere, a clean close is the closest portable approximation.
#[cfg(not(target_os = "linux"))]
fn reset(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}
