//! The HTTP side of the registry store: one shared `ureq` agent (rustls, pooled connections),
//! authentication on demand, and bounded retries with exponential backoff and jitter.
//!
//! A request is sent without credentials until a registry asks for them (401 with
//! `WWW-Authenticate`); the challenge is remembered per registry so later requests, from any
//! worker, go out authorised at once. Credentials and tokens go only to the registry's own
//! origin (scheme, host and port; spec/cli.md "Registry flags"): a request to a URL the
//! registry handed out on another host (an upload `Location` on a storage host) goes without
//! `Authorization`, its 401 is not taken as the registry's challenge, and no URL may leave
//! HTTPS for plain HTTP. Redirects are followed by `ureq`, which drops `Authorization` on them. Requests whose body can be replayed are retried here on
//! connection errors, 5xx, 408 and 429 (honouring `Retry-After`); streamed uploads are retried
//! by the engine, which reopens the source.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ureq::config::RedirectAuthHeaders;
use ureq::http::{self, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body, SendBody};

use super::auth::{Challenge, TokenCache, parse_challenge};
use super::credentials::{Credential, CredentialStore, Secret};
use super::error::{RegistryError, RegistryErrorKind, parse_error_body};
use super::origin::Origin;

/// Called with a message each time a request is retried.
pub type RetryObserver = Arc<dyn Fn(&str) + Send + Sync>;

/// How to reach registries (imgpkg's registry flags).
#[derive(Clone)]
pub struct RegistryOptions {
    /// Plain HTTP for every registry (`--registry-insecure`).
    pub insecure: bool,
    /// `false` only when asked (`--registry-verify-certs=false`).
    pub verify_certs: bool,
    /// Extra CA certificates (PEM) trusted beside the system roots.
    pub ca_cert_paths: Vec<PathBuf>,
    /// How long to wait for response headers (`--registry-response-header-timeout`).
    pub response_header_timeout: Duration,
    /// Extra attempts after a transient failure (`--registry-retry-count`).
    pub retries: u32,
    /// The first backoff delay; it doubles each attempt, with jitter.
    pub retry_base_delay: Duration,
    /// Upload in chunks of this many bytes instead of one PUT.
    pub chunk_size: Option<u64>,
    /// Pooled connections per host.
    pub connections: usize,
    pub on_retry: Option<RetryObserver>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: false,
            verify_certs: true,
            ca_cert_paths: Vec::new(),
            response_header_timeout: Duration::from_secs(30),
            retries: 5,
            retry_base_delay: Duration::from_millis(500),
            chunk_size: None,
            connections: 8,
            on_retry: None,
        }
    }
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("insecure", &self.insecure)
            .field("verify_certs", &self.verify_certs)
            .field("ca_cert_paths", &self.ca_cert_paths)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// What a request is, for errors and for the token scopes it needs.
#[derive(Debug, Clone)]
pub struct Operation {
    pub registry: String,
    pub repository: String,
    /// "resolving", "fetching manifest sha256:..", "uploading blob ..".
    pub what: String,
    /// Token scopes, e.g. `repository:team/app:pull`.
    pub scopes: Vec<String>,
}

impl Operation {
    pub fn error(&self, kind: RegistryErrorKind) -> RegistryError {
        RegistryError {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            operation: self.what.clone(),
            kind,
        }
    }
}

/// A request body.
pub enum RequestBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// A stream of exactly this many bytes; not replayable.
    Stream(&'a mut (dyn Read + Send), u64),
}

impl RequestBody<'_> {
    fn replayable(&self) -> bool {
        !matches!(self, RequestBody::Stream(..))
    }
}

/// The shared client.
pub struct RegistryClient {
    agent: Agent,
    options: RegistryOptions,
    credentials: CredentialStore,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: TokenCache,
}

impl RegistryClient {
    pub fn new(options: RegistryOptions, credentials: CredentialStore) -> Result<Self, String> {
        let tls =
            TlsConfig::builder().root_certs(root_certs(&options)?).disable_verification(!options.verify_certs).build();
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            // A redirect may lead anywhere: it never carries the registry's credentials.
            .redirect_auth_headers(RedirectAuthHeaders::Never)
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(options.response_header_timeout))
            // A body that stalls part-way fails after the same wait, and is then resumed.
            .timeout_per_read(Some(options.response_header_timeout))
            .max_idle_connections(options.connections.max(1) * 4)
            .max_idle_connections_per_host(options.connections.max(1))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity")
            .input_buffer_size(256 * 1024)
            .output_buffer_size(256 * 1024)
            .build()
            .into();
        Ok(RegistryClient {
            agent,
            options,
            credentials,
            challenges: Mutex::new(HashMap::new()),
            tokens: TokenCache::default(),
        })
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// `https://registry` (or `http://` with `--registry-insecure`).
    pub fn base_url(&self, registry: &str) -> String {
        let scheme = if self.options.insecure { "http" } else { "https" };
        let host = if registry == "index.docker.io" { "registry-1.docker.io" } else { registry };
        format!("{scheme}://{host}")
    }

    /// The origin credentials for `registry` belong to.
    pub fn registry_origin(&self, registry: &str) -> Origin {
        Origin::of(&self.base_url(registry)).expect("base_url builds an absolute http(s) URL")
    }

    /// Whether a request to `url` for `op` may carry the registry's credentials: only when `url`
    /// is on the registry's own origin. A URL that is not http(s), or that leaves HTTPS for plain
    /// HTTP, is refused (spec/cli.md "Registry flags"; issue 12 item 4).
    pub fn credentials_go_to(&self, op: &Operation, url: &str) -> Result<bool, RegistryError> {
        let registry = self.registry_origin(&op.registry);
        let Some(target) = Origin::of(url) else {
            return Err(op.error(RegistryErrorKind::Protocol(format!(
                "the registry ({registry}) gave a URL that is not http(s); refusing to follow it"
            ))));
        };
        if registry.is_tls() && !target.is_tls() {
            return Err(op.error(RegistryErrorKind::Protocol(format!(
                "the registry ({registry}) sent the client to plain-HTTP {target}; refusing to leave HTTPS"
            ))));
        }
        Ok(target == registry)
    }

    /// Sends a request, authenticating and retrying as the module documentation says. Returns
    /// any response whose status is below 400, and 404s when `allow_404`; everything else is
    /// an error naming the operation. A `url` on another origin than the registry's is sent
    /// without credentials ([`RegistryClient::credentials_go_to`]).
    pub fn send(
        &self,
        op: &Operation,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        mut body: RequestBody<'_>,
        allow_404: bool,
    ) -> Result<Response<Body>, RegistryError> {
        let credentialed = self.credentials_go_to(op, url)?;
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            let authorization = if credentialed { self.authorization(op) } else { Ok(None) };
            let authorization = match authorization {
                Ok(authorization) => authorization,
                Err(error) if error.is_transient() && attempt < self.options.retries => {
                    self.report_retry(op, attempt + 1, &error.to_string());
                    attempt += 1;
                    std::thread::sleep(self.backoff(attempt, None));
                    continue;
                }
                Err(error) => return Err(error),
            };
            let result = self.send_once(op, &method, url, headers, &authorization, &mut body);
            let retry_after = match result {
                // Only the registry's own 401 teaches a challenge: another host must not choose
                // where the registry's credentials go next.
                Ok(response) if response.status() == 401 && credentialed && !reauthenticated => {
                    reauthenticated = true;
                    self.learn_challenge(op, &response, authorization.is_some());
                    if body.replayable() {
                        continue;
                    }
                    return Err(op.error(RegistryErrorKind::Status {
                        status: 503,
                        code: Some("UNAUTHORIZED".into()),
                        message: Some("credentials expired in the middle of a transfer; retrying".into()),
                    }));
                }
                Ok(response) if response.status().as_u16() < 400 || (allow_404 && response.status() == 404) => {
                    return Ok(response);
                }
                Ok(response) => {
                    let retry_after = retry_after_seconds(&response);
                    let error = status_error(op, response);
                    if !(error.is_transient() && body.replayable() && attempt < self.options.retries) {
                        return Err(error);
                    }
                    self.report_retry(op, attempt + 1, &error.to_string());
                    retry_after
                }
                Err(error) => {
                    if !(error.is_transient() && body.replayable() && attempt < self.options.retries) {
                        return Err(error);
                    }
                    self.report_retry(op, attempt + 1, &error.to_string());
                    None
                }
            };
            attempt += 1;
            std::thread::sleep(self.backoff(attempt, retry_after));
        }
    }

    fn report_retry(&self, op: &Operation, attempt: u32, reason: &str) {
        if let Some(observer) = &self.options.on_retry {
            observer(&format!("retrying {} (attempt {attempt} of {}): {reason}", op.what, self.options.retries));
        }
    }

    /// Exponential backoff with jitter, or the server's `Retry-After` (capped at a minute).
    pub fn backoff(&self, attempt: u32, retry_after: Option<u64>) -> Duration {
        if let Some(seconds) = retry_after {
            return Duration::from_secs(seconds.min(60));
        }
        let base = self.options.retry_base_delay.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(8)));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let jitter = base.mul_f64(f64::from(nanos % 1000) / 4000.0);
        base + jitter
    }

    fn send_once(
        &self,
        op: &Operation,
        method: &http::Method,
        url: &str,
        headers: &[(&str, String)],
        authorization: &Option<Secret>,
        body: &mut RequestBody<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut builder = http::Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(value) = authorization {
            builder = builder.header("Authorization", value.expose());
        }
        let transport = |e: ureq::Error| op.error(transport_kind(e));
        let invalid = |e: http::Error| op.error(RegistryErrorKind::Protocol(format!("cannot build the request: {e}")));
        match body {
            // Requests that may carry a body say Content-Length: 0 rather than go chunked
            // (distribution-spec: "the POST request MUST include Content-Length: 0").
            RequestBody::Empty if method != http::Method::GET && method != http::Method::HEAD => {
                let request = builder.header("Content-Length", "0").body(&[][..]).map_err(invalid)?;
                self.agent.run(request).map_err(transport)
            }
            RequestBody::Empty => {
                let request = builder.body(()).map_err(invalid)?;
                self.agent.run(request).map_err(transport)
            }
            RequestBody::Bytes(bytes) => {
                let request =
                    builder.header("Content-Length", bytes.len().to_string()).body(*bytes).map_err(invalid)?;
                self.agent.run(request).map_err(transport)
            }
            RequestBody::Stream(reader, length) => {
                let request = builder
                    .header("Content-Length", length.to_string())
                    .body(SendBody::from_reader(&mut **reader))
                    .map_err(invalid)?;
                self.agent.run(request).map_err(transport)
            }
        }
    }

    /// The `Authorization` value to send for this operation, if the registry is known to want one.
    fn authorization(&self, op: &Operation) -> Result<Option<Secret>, RegistryError> {
        let credential = self.credentials.lookup(&op.registry, &op.repository);
        if let Credential::RegistryToken(token) = &credential {
            return Ok(Some(Secret::new(format!("Bearer {}", token.expose()))));
        }
        let challenge = self.challenges.lock().expect("challenge lock").get(&op.registry).cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(basic_header(&credential)),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let scopes = op.scopes.join(" ");
                if let Some(token) = self.tokens.get(&op.registry, &scopes) {
                    return Ok(Some(Secret::new(format!("Bearer {}", token.expose()))));
                }
                let token = self.fetch_token(op, &realm, service.as_deref(), &credential)?;
                Ok(Some(Secret::new(format!("Bearer {}", token.expose()))))
            }
        }
    }

    /// Records the challenge of a 401 answer; a refused token is dropped from the cache.
    fn learn_challenge(&self, op: &Operation, response: &Response<Body>, had_authorization: bool) {
        let challenge = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(parse_challenge);
        if had_authorization {
            self.tokens.forget(&op.registry, &op.scopes.join(" "));
        }
        if let Some(challenge) = challenge {
            self.challenges.lock().expect("challenge lock").insert(op.registry.clone(), challenge);
        }
    }

    /// Asks the token endpoint for a bearer token covering `op.scopes`.
    fn fetch_token(
        &self,
        op: &Operation,
        realm: &str,
        service: Option<&str>,
        credential: &Credential,
    ) -> Result<Secret, RegistryError> {
        let token_op = Operation { what: format!("getting a token from {realm} for {}", op.what), ..op.clone() };
        check_realm(&token_op, &self.registry_origin(&op.registry), realm)?;
        let mut query: Vec<(String, String)> = Vec::new();
        if let Some(service) = service {
            query.push(("service".into(), service.into()));
        }
        for scope in &op.scopes {
            query.push(("scope".into(), scope.clone()));
        }
        let response = match credential {
            Credential::IdentityToken(refresh) => {
                query.push(("grant_type".into(), "refresh_token".into()));
                query.push(("refresh_token".into(), refresh.expose().to_string()));
                query.push(("client_id".into(), "ferry".into()));
                let form = encode_query(&query);
                let request = http::Request::builder()
                    .method("POST")
                    .uri(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form.into_bytes())
                    .map_err(|e| token_op.error(RegistryErrorKind::Protocol(e.to_string())))?;
                self.agent.run(request)
            }
            other => {
                let separator = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{separator}{}", encode_query(&query));
                let mut builder = http::Request::builder().method("GET").uri(url);
                if let Some(basic) = basic_header(other) {
                    builder = builder.header("Authorization", basic.expose());
                }
                let request =
                    builder.body(()).map_err(|e| token_op.error(RegistryErrorKind::Protocol(e.to_string())))?;
                self.agent.run(request)
            }
        }
        .map_err(|e| token_op.error(transport_kind(e)))?;
        if response.status().as_u16() >= 400 {
            return Err(status_error(&token_op, response));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let mut response = response;
        let bytes = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| token_op.error(transport_kind(e)))?;
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| token_op.error(RegistryErrorKind::Protocol(format!("the token answer is not JSON: {e}"))))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_op.error(RegistryErrorKind::Protocol("the token answer holds no token".into())))?;
        let token = Secret::new(token);
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).max(1));
        self.tokens.put(&op.registry, &op.scopes.join(" "), token.clone(), lifetime);
        Ok(token)
    }
}

/// The token realm a registry names may be on another host (the token protocol sends the
/// registry's credentials there), but it must be http(s), and an HTTPS registry's realm must be
/// HTTPS too, so that credentials never cross a network in cleartext. A plain-HTTP realm on this
/// machine (loopback) is allowed: nothing leaves it (spec/cli.md "Registry flags").
fn check_realm(op: &Operation, registry: &Origin, realm: &str) -> Result<(), RegistryError> {
    let Some(origin) = Origin::of(realm) else {
        return Err(op.error(RegistryErrorKind::Protocol(format!(
            "the registry ({registry}) names a token realm that is not an http(s) URL; refusing it"
        ))));
    };
    if registry.is_tls() && !origin.is_tls() && !origin.is_loopback() {
        return Err(op.error(RegistryErrorKind::Protocol(format!(
            "the HTTPS registry ({registry}) asks for a token from plain-HTTP {origin}; refusing to send \
             credentials there in cleartext (the registry's token realm must use https)"
        ))));
    }
    Ok(())
}

fn basic_header(credential: &Credential) -> Option<Secret> {
    match credential {
        Credential::Basic { username, password } => {
            let encoded = STANDARD.encode(format!("{username}:{}", password.expose()));
            Some(Secret::new(format!("Basic {encoded}")))
        }
        _ => None,
    }
}

fn encode_query(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect::<Vec<_>>().join("&")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn retry_after_seconds(response: &Response<Body>) -> Option<u64> {
    response.headers().get("retry-after")?.to_str().ok()?.trim().parse().ok()
}

/// Turns an error status into an error carrying the registry's code and message.
pub fn status_error(op: &Operation, mut response: Response<Body>) -> RegistryError {
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(64 * 1024).read_to_vec().unwrap_or_default();
    let (code, message) = parse_error_body(&body);
    op.error(RegistryErrorKind::Status { status, code, message })
}

/// Classifies a transport failure.
pub fn transport_kind(error: ureq::Error) -> RegistryErrorKind {
    match error {
        ureq::Error::Timeout(what) => RegistryErrorKind::Timeout(format!("{what:?}")),
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => RegistryErrorKind::Timeout(e.to_string()),
        ureq::Error::BodyExceedsLimit(limit) => {
            RegistryErrorKind::Protocol(format!("the answer is larger than the {limit}-byte limit"))
        }
        ureq::Error::Tls(text) => RegistryErrorKind::Tls(text.to_string()),
        ureq::Error::Rustls(e) => RegistryErrorKind::Tls(e.to_string()),
        other => {
            let text = other.to_string();
            let lower = text.to_ascii_lowercase();
            let tls = ["certificate", "corrupt message", "handshake", "tls"].iter().any(|word| lower.contains(word));
            if tls { RegistryErrorKind::Tls(text) } else { RegistryErrorKind::Transport(text) }
        }
    }
}

/// System roots plus the extra CAs; Mozilla's roots when the system has none.
fn root_certs(options: &RegistryOptions) -> Result<RootCerts, String> {
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for path in &options.ca_cert_paths {
        let pem = std::fs::read(path).map_err(|e| format!("reading CA certificate {}: {e}", path.display()))?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let PemItem::Certificate(cert) = item.map_err(|e| format!("parsing {}: {e}", path.display()))? {
                certs.push(cert);
            }
        }
        if certs.len() == before {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
    }
    if certs.is_empty() && !options.ca_cert_paths.is_empty() {
        return Ok(RootCerts::WebPki);
    }
    let native = rustls_native_certs::load_native_certs();
    let system: Vec<Certificate<'static>> =
        native.certs.iter().map(|der| Certificate::from_der(der.as_ref()).to_owned()).collect();
    if system.is_empty() && certs.is_empty() {
        return Ok(RootCerts::WebPki);
    }
    certs.extend(system);
    Ok(RootCerts::new_with_certs(&certs))
}
