//! A token issuer for `auth: token` registries, run in the test process: a thread with a
//! loopback `TcpListener` serving the realm `https://127.0.0.1:PORT/token` with the registry's
//! own certificate (so a client trusting the test CA trusts both; ferry never sends
//! credentials to a plain-HTTP realm of a TLS registry, spec/cli.md "Registry flags").
//!
//! It follows the Docker token protocol (distribution docs/spec/auth/token.md and oauth.md):
//! - `GET /token?service=S&scope=repository:NAME:pull,push` (scope may repeat, and one scope
//!   parameter may hold several space-separated scopes) with optional HTTP basic credentials.
//!   Right credentials get every requested action; no credentials get a token with an empty
//!   `access` list (enough for `GET /v2/`, nothing more); wrong credentials get 401.
//! - `POST /token` with a form body, `grant_type=password` (`username`, `password`) or
//!   `grant_type=refresh_token` (`refresh_token` = [`REFRESH_TOKEN`]); with
//!   `access_type=offline` (or a refresh grant) the answer also carries `refresh_token`.
//!
//! The JWT is what distribution 2.8 (`registry/auth/token/token.go`) verifies: header
//! `{"typ":"JWT","alg":"ES256","x5c":[base64 DER of the signing cert]}` whose chain must reach
//! `rootcertbundle` (the test CA), claims `iss` = [`ISSUER`], `aud` = [`SERVICE`] (a single
//! string in 2.8), `exp`/`nbf` (checked with 60 s leeway), `iat`, `jti`, `sub` and `access`;
//! the ES256 signature is the fixed 64-byte r||s form libtrust expects.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};

use super::pki::TestPki;

/// The `service` the registry is configured with; tokens carry it as `aud`.
pub const SERVICE: &str = "ferry-test-registry";
/// The `issuer` the registry trusts; tokens carry it as `iss`.
pub const ISSUER: &str = "ferry-test-issuer";
/// The refresh token the issuer hands out for `access_type=offline` and accepts back.
pub const REFRESH_TOKEN: &str = "ferry-test-refresh-token";
/// Lifetime of issued tokens, in seconds (`expires_in`).
pub const TOKEN_LIFETIME_SECS: u64 = 300;

/// How long one connection may stall while sending its request or reading the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest form body accepted on `POST /token`.
const MAX_BODY: usize = 64 * 1024;

/// One request the issuer received on `/token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The user the request authenticated as; `None` for anonymous or rejected requests.
    pub user: Option<String>,
    /// The scopes asked for, in order, as sent (`repository:NAME:pull,push`).
    pub scopes: Vec<String>,
}

struct Shared {
    tls: Arc<rustls::ServerConfig>,
    stop: AtomicBool,
    served: AtomicUsize,
    log: Mutex<Vec<TokenRequest>>,
    signer: EcdsaKeyPair,
    x5c: String,
    username: String,
    password: String,
}

/// The running issuer; dropping it stops the accept loop and joins its thread.
pub struct TokenIssuer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl TokenIssuer {
    /// Starts an issuer on 127.0.0.1 (a free port, held from bind to drop) that signs with the
    /// token key of `pki` and accepts `username`/`password`.
    pub fn start(pki: &TestPki, username: &str, password: &str) -> TokenIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token issuer on 127.0.0.1");
        let addr = listener.local_addr().expect("token issuer address");
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pki.token_key_pkcs8, &SystemRandom::new())
                .expect("load token key");
        let shared = Arc::new(Shared {
            tls: server_config(pki),
            stop: AtomicBool::new(false),
            served: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            signer,
            x5c: STANDARD.encode(&pki.token_cert_der),
            username: username.to_string(),
            password: password.to_string(),
        });
        let accept_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("token-issuer".into())
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn token issuer");
        TokenIssuer { addr, shared, thread: Some(thread) }
    }

    /// The realm to configure in the registry: `https://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("https://{}/token", self.addr)
    }

    /// How many requests reached `/token` (any method, any outcome).
    pub fn requests(&self) -> usize {
        self.shared.served.load(Ordering::SeqCst)
    }

    /// Every request that reached `/token`, oldest first.
    pub fn request_log(&self) -> Vec<TokenRequest> {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag; join only when that worked, so a
        // drop never hangs (the thread then ends with the test process).
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(thread) = self.thread.take().filter(|_| woke) {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        let shared = Arc::clone(&shared);
        // One thread per connection: a client holding a connection open cannot stall others,
        // and each connection is bounded by IO_TIMEOUT.
        let _ = thread::Builder::new().name("token-conn".into()).spawn(move || {
            let _ = handle(stream, &shared);
        });
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

/// TLS with the registry's server certificate (for `127.0.0.1`, signed by the test CA).
fn server_config(pki: &TestPki) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes()).expect("server cert PEM")];
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).expect("server key PEM");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("token issuer TLS config");
    Arc::new(config)
}

fn read_request(stream: impl Read) -> io::Result<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let mut authorization = None;
    let mut content_length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim().to_string();
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value),
                "content-length" => content_length = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; content_length.min(MAX_BODY)];
    reader.read_exact(&mut body)?;
    Ok(Request { method, path, query, authorization, body })
}

fn handle(tcp: TcpStream, shared: &Shared) -> io::Result<()> {
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let connection = rustls::ServerConnection::new(Arc::clone(&shared.tls)).map_err(io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let request = read_request(&mut stream)?;
    if request.path != "/token" {
        return respond(&mut stream, "404 Not Found", &json!({"details": "only /token is served here"}));
    }
    shared.served.fetch_add(1, Ordering::SeqCst);
    let (params, offline_allowed) = match request.method.as_str() {
        "GET" => (parse_query(&request.query), false),
        "POST" => (parse_query(&String::from_utf8_lossy(&request.body)), true),
        _ => return respond(&mut stream, "405 Method Not Allowed", &json!({"details": "use GET or POST"})),
    };
    let param = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();

    // Who is asking: GET carries basic credentials; POST carries a grant in the form.
    let who: Result<Option<String>, &str> = if request.method == "GET" {
        match request.authorization.as_deref().and_then(basic_credentials) {
            Some((user, pass)) if user == shared.username && pass == shared.password => Ok(Some(user)),
            Some(_) => Err("wrong username or password"),
            None => Ok(None),
        }
    } else {
        match param("grant_type") {
            Some("password")
                if param("username") == Some(&shared.username) && param("password") == Some(&shared.password) =>
            {
                Ok(Some(shared.username.clone()))
            }
            Some("refresh_token") if param("refresh_token") == Some(REFRESH_TOKEN) => Ok(Some(shared.username.clone())),
            _ => Err("invalid grant"),
        }
    };
    let user = who.as_ref().ok().cloned().flatten();
    shared.log.lock().unwrap_or_else(|e| e.into_inner()).push(TokenRequest {
        method: request.method.clone(),
        user: user.clone(),
        scopes: scopes.clone(),
    });
    if let Err(reason) = who {
        return respond(&mut stream, "401 Unauthorized", &json!({"details": reason}));
    }

    let access: Vec<Value> =
        if user.is_some() { scopes.iter().filter_map(|s| access_entry(s)).collect() } else { Vec::new() };
    let token = sign_jwt(shared, user.as_deref().unwrap_or(""), access);
    let mut answer = json!({"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME_SECS});
    if offline_allowed && (param("access_type") == Some("offline") || param("grant_type") == Some("refresh_token")) {
        answer["refresh_token"] = json!(REFRESH_TOKEN);
    }
    if !scopes.is_empty() {
        answer["scope"] = json!(scopes.join(" "));
    }
    respond(&mut stream, "200 OK", &answer)
}

fn respond(stream: &mut impl Write, status: &str, body: &Value) -> io::Result<()> {
    let body = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// `repository:NAME:pull,push` → `{"type":"repository","name":NAME,"actions":["pull","push"]}`.
/// The name sits between the first and the last colon.
fn access_entry(scope: &str) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(json!({"type": kind, "name": name, "actions": actions}))
}

fn sign_jwt(shared: &Shared, subject: &str, access: Vec<Value>) -> String {
    static JTI: AtomicUsize = AtomicUsize::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [shared.x5c]});
    let claims = json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + TOKEN_LIFETIME_SECS,
        "nbf": now,
        "iat": now,
        "jti": format!("ferry-test-{now}-{}", JTI.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = shared.signer.sign(&SystemRandom::new(), signing_input.as_bytes()).expect("sign token");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Splits `a=1&b=2` into decoded pairs, keeping repeats (scope may repeat).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
