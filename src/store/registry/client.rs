//! The registry client: one request to a registry, sent with the credentials it may carry,
//! authenticated on demand and retried under the one retry policy (spec/cli.md "Registry flags",
//! RF-2). What lies beneath is in its own modules: the agent, TLS and scheme in [`super::agent`],
//! credentials, challenges and tokens in [`super::auth`], what is retryable in
//! [`super::retry`], errors in [`super::error`].
//!
//! A request is sent without credentials until a registry asks for them (401 with
//! `WWW-Authenticate`); the challenge is remembered per registry so later requests, from any
//! worker, go out authorised at once. Credentials and tokens go only to the registry's own
//! origin (scheme, host and port): a request to a URL the registry handed out on another host
//! (an upload `Location` on a storage host) goes without `Authorization`, its 401 is not taken
//! as the registry's challenge, and no URL may leave HTTPS for plain HTTP. Redirects are
//! followed without `Authorization`, by `ureq` and, for
//! blob bodies, by ferry's own reader ([`super::direct`], spec/cli.md RF-5), whose answers come
//! back as the same `Response` and go through the same logic here.
//!
//! A request whose body can be sent again is retried here; a streamed body cannot be, so its
//! failure goes up to the layer that can read the blob again (the engine), carrying the
//! attempts spent so that the budget is shared.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::{Agent, Body, ResponseExt, SendBody};

use super::agent::{base_url, build_agent, build_direct, io_kind, transport_kind, trusted_roots};
use super::answer::AnswerDeadline;
use super::auth::Authenticator;
use super::credentials::{CredentialStore, Secret};
use super::direct::DirectGets;
use super::error::{RegistryError, RegistryErrorKind, status_kind};
use super::origin::{AnsweredFrom, Origin, next_page};
use super::retry::{RetryPolicy, Verdict};

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
    /// The one retry policy (`--registry-retry-count`).
    pub retry: RetryPolicy,
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
            retry: RetryPolicy::default(),
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
            .field("retry", &self.retry)
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
    /// An error of this operation, after one attempt.
    pub fn error(&self, kind: RegistryErrorKind) -> RegistryError {
        RegistryError {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            operation: self.what.clone(),
            kind,
            attempts: 1,
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
    /// Blob bodies read straight into the caller's buffers; `None` behind a proxy.
    direct: Option<DirectGets>,
    options: RegistryOptions,
    auth: Authenticator,
    /// Registries that have answered a request in this run: a refused connection to one of
    /// them is worth another try, to any other it is not (spec/cli.md RF-2).
    answered: Mutex<HashSet<String>>,
    /// Registries found to speak HTTPS although `--registry-insecure` had ferry start in plain
    /// HTTP: from then on they are spoken to over HTTPS (spec/cli.md RF-7).
    speaks_tls: Mutex<HashSet<String>>,
}

/// The origin the answer finally came from (after any redirect).
fn answered_from(response: &Response<Body>) -> Option<Origin> {
    response.extensions().get::<AnsweredFrom>().and_then(|AnsweredFrom(url)| Origin::of(url))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether a 400 is a TLS server's answer to a plain-HTTP request: Go's "Client sent an HTTP
/// request to an HTTPS server.", nginx's "The plain HTTP request was sent to HTTPS port".
fn says_it_speaks_tls(kind: &RegistryErrorKind) -> bool {
    let RegistryErrorKind::Status { status: 400, message: Some(message), .. } = kind else { return false };
    let message = message.to_ascii_lowercase();
    message.contains("http request to an https server") || message.contains("plain http request was sent to https")
}

/// Which way a request goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// The agent.
    Agent,
    /// A GET whose body is read by ferry itself where it can be ([`super::direct`]).
    Direct,
}

impl RegistryClient {
    pub fn new(options: RegistryOptions, credentials: CredentialStore) -> Result<Self, String> {
        let roots = trusted_roots(&options)?;
        let agent = build_agent(&options, &roots)?;
        let direct = build_direct(&options, &agent, &roots)?;
        let head_wait = options.response_header_timeout;
        Ok(RegistryClient {
            agent,
            direct,
            options,
            auth: Authenticator::new(credentials, head_wait),
            answered: Mutex::new(HashSet::new()),
            speaks_tls: Mutex::new(HashSet::new()),
        })
    }

    /// How many answers were read by ferry's own HTTP/1.1 reader rather than the agent.
    pub fn direct_answers(&self) -> u64 {
        self.direct.as_ref().map_or(0, DirectGets::answers)
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// The retry policy every layer uses.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.options.retry
    }

    /// `https://registry` (or `http://` with `--registry-insecure`, until the registry says it
    /// speaks HTTPS).
    pub fn base_url(&self, registry: &str) -> String {
        let plain = self.options.insecure && !lock(&self.speaks_tls).contains(registry);
        base_url(plain, registry)
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
    /// an error naming the operation, the status the registry sent and the attempts made.
    pub fn send(
        &self,
        op: &Operation,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: RequestBody<'_>,
        allow_404: bool,
    ) -> Result<Response<Body>, RegistryError> {
        self.send_within(op, method, url, headers, body, allow_404, &mut 0)
    }

    /// [`RegistryClient::send`] for a unit whose attempts are counted in `attempts` (a body
    /// resumed with `Range`): this request gets what remains of the budget, adds the attempts
    /// it makes, and its error counts them all.
    #[allow(clippy::too_many_arguments)]
    pub fn send_within(
        &self,
        op: &Operation,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: RequestBody<'_>,
        allow_404: bool,
        attempts: &mut u32,
    ) -> Result<Response<Body>, RegistryError> {
        self.send_by(Way::Agent, op, method, url, headers, body, allow_404, attempts)
    }

    /// A GET of a blob's body, counted in `attempts` like [`RegistryClient::send_within`]: the
    /// same request, answered the same way, but its body is read from the connection straight
    /// into the caller's buffers (no copy through the HTTP client's own, issue 18).
    pub fn get_body_within(
        &self,
        op: &Operation,
        url: &str,
        headers: &[(&str, String)],
        attempts: &mut u32,
    ) -> Result<Response<Body>, RegistryError> {
        self.send_by(Way::Direct, op, http::Method::GET, url, headers, RequestBody::Empty, false, attempts)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_by(
        &self,
        way: Way,
        op: &Operation,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        mut body: RequestBody<'_>,
        allow_404: bool,
        attempts: &mut u32,
    ) -> Result<Response<Body>, RegistryError> {
        // A URL made before the registry was found to speak HTTPS (RF-7: a page link, an upload
        // location, a request sent at the same time as the one that found it) goes to HTTPS.
        let upgraded = self.upgraded_url(&op.registry, url);
        let url = upgraded.as_deref().unwrap_or(url);
        let credentialed = self.credentials_go_to(op, url)?;
        let policy = self.options.retry;
        let mut reauthenticated = false;
        loop {
            // Another request may have found out meanwhile that the registry speaks HTTPS: a
            // retry goes there, never again in plain HTTP.
            if let Some(upgraded) = self.upgraded_url(&op.registry, url).filter(|_| body.replayable()) {
                return self.send_by(way, op, method, &upgraded, headers, body, allow_404, attempts);
            }
            *attempts += 1;
            let mut untouched = false;
            let answer = self.attempt(way, op, &method, url, headers, &mut body, credentialed, &mut untouched);
            let answer = self.first_contact(op, answer);
            let error = match answer {
                // Only the registry's own 401 teaches a challenge: another host must not choose
                // where the registry's credentials go next.
                Ok((response, had_authorization))
                    if response.status() == 401
                        && credentialed
                        && !reauthenticated
                        && self.answered_by_registry(op, &response) =>
                {
                    reauthenticated = true;
                    self.auth.learn_challenge(op, &response, had_authorization);
                    if body.replayable() {
                        // Answering a challenge is part of the request, not a retry.
                        *attempts -= 1;
                        continue;
                    }
                    let RegistryErrorKind::Status { code, message, .. } = status_kind(response) else {
                        unreachable!("status_kind always gives a status")
                    };
                    op.error(RegistryErrorKind::ReauthenticateUnit { code, message })
                }
                Ok((response, _)) if response.status().as_u16() < 400 || (allow_404 && response.status() == 404) => {
                    return Ok(response);
                }
                // RF-7: `--registry-insecure` allows plain HTTP, it does not forbid HTTPS: a
                // registry that answers plain HTTP with "this is an HTTPS port" is spoken to over
                // HTTPS from then on (as imgpkg does), this request first.
                // Only the registry's own answer says what it speaks (not a redirect target's):
                // it came from where it was asked, the registry's plain-HTTP origin.
                Ok((response, _))
                    if response.status() == 400
                        && Origin::of(url) == Origin::of(&base_url(true, &op.registry))
                        && answered_from(&response) == Origin::of(url) =>
                {
                    let kind = status_kind(response);
                    let resendable = body.replayable() || untouched;
                    // A HEAD's answer has no body to say it: a GET of the API root asks.
                    let speaks_tls = says_it_speaks_tls(&kind)
                        || (method == http::Method::HEAD && self.root_says_it_speaks_tls(&op.registry));
                    if resendable && speaks_tls {
                        lock(&self.speaks_tls).insert(op.registry.clone());
                        *attempts -= 1;
                        let upgraded = format!("https://{}", &url["http://".len()..]);
                        return self.send_by(way, op, method, &upgraded, headers, body, allow_404, attempts);
                    }
                    op.error(kind)
                }
                Ok((response, _)) => op.error(status_kind(response)),
                Err(error) => error,
            };
            let error = RegistryError { attempts: *attempts, ..error };
            let verdict = error.verdict();
            // A streamed body can go again only if this attempt failed before sending any of it.
            let resendable = body.replayable() || untouched;
            if !(verdict == Verdict::RetryRequest && resendable && policy.allows(*attempts, verdict)) {
                return Err(error);
            }
            self.report_retry(op, *attempts + 1, &error.to_string());
            std::thread::sleep(policy.delay(*attempts, error.retry_after()));
        }
    }

    /// The next page of a listing of `registry` (a tag list, a referrers index) that the page
    /// asked for at `url` links to, if any ([`super::origin::next_page`]): resolved against the
    /// URL as it was asked for (over HTTPS once the registry said it speaks it, RF-7).
    pub fn next_page(
        &self,
        registry: &str,
        url: &str,
        link: Option<&str>,
        what: &str,
    ) -> Result<Option<String>, String> {
        let url = self.upgraded_url(registry, url).unwrap_or_else(|| url.to_string());
        next_page(&url, link, &self.registry_origin(registry), what)
    }

    fn upgraded_url(&self, registry: &str, url: &str) -> Option<String> {
        let plain = base_url(true, registry);
        let rest = url.strip_prefix(&plain).filter(|rest| rest.is_empty() || rest.starts_with('/'))?;
        lock(&self.speaks_tls).contains(registry).then(|| format!("{}{rest}", base_url(false, registry)))
    }

    /// Whether `GET http://REGISTRY/v2/` is answered as a TLS server answers plain HTTP.
    fn root_says_it_speaks_tls(&self, registry: &str) -> bool {
        let Ok(request) = http::Request::get(format!("{}/v2/", base_url(true, registry))).body(()) else {
            return false;
        };
        match self.agent.run(request) {
            Ok(response) if response.status() == 400 => says_it_speaks_tls(&status_kind(response)),
            _ => false,
        }
    }

    /// Remembers that `op`'s registry answered; a connection it refused, or a host name that
    /// does not exist, before it ever did is [`RegistryErrorKind::Unreachable`], which is not
    /// retried (spec/cli.md RF-2).
    fn first_contact<T>(&self, op: &Operation, answer: Result<T, RegistryError>) -> Result<T, RegistryError> {
        let mut answered = self.answered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match answer {
            Ok(response) => {
                if !answered.contains(&op.registry) {
                    answered.insert(op.registry.clone());
                }
                Ok(response)
            }
            Err(RegistryError {
                kind: RegistryErrorKind::Refused(text) | RegistryErrorKind::UnknownHost(text),
                ..
            }) if !answered.contains(&op.registry) => Err(op.error(RegistryErrorKind::Unreachable(text))),
            Err(error) => Err(error),
        }
    }

    /// Whether `response` came from `op`'s registry itself, not from a host a redirect led to:
    /// only the registry's own 401 is a challenge (spec/cli.md "Registry flags").
    fn answered_by_registry(&self, op: &Operation, response: &Response<Body>) -> bool {
        answered_from(response) == Some(self.registry_origin(&op.registry))
    }

    /// Tells the observer that attempt `next` is about to be made, and why.
    pub fn report_retry(&self, op: &Operation, next: u32, reason: &str) {
        if let Some(observer) = &self.options.on_retry {
            observer(&self.options.retry.retrying(&op.what, next.saturating_sub(1), reason));
        }
    }

    /// One attempt: the authorisation (a token fetch may fail like a request), then the request.
    /// Returns the answer and whether it carried `Authorization`; `untouched` is set when it
    /// failed before the body was sent.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        way: Way,
        op: &Operation,
        method: &http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: &mut RequestBody<'_>,
        credentialed: bool,
        untouched: &mut bool,
    ) -> Result<(Response<Body>, bool), RegistryError> {
        let authorization = if credentialed {
            *untouched = true;
            let authorization = self.auth.authorization(&self.agent, &self.registry_origin(&op.registry), op)?;
            *untouched = false;
            authorization
        } else {
            None
        };
        if let (Way::Direct, Some(direct)) = (way, &self.direct) {
            match direct.get(url, headers, authorization.as_ref()) {
                Ok(Some(response)) => return Ok((response, authorization.is_some())),
                Ok(None) => {}
                Err(e) => return Err(op.error(io_kind(&e))),
            }
        }
        let response = self.send_once(op, method, url, headers, &authorization, body)?;
        Ok((response, authorization.is_some()))
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
        let mut response = match body {
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
        }?;
        let answered_from = AnsweredFrom(response.get_uri().to_string());
        response.extensions_mut().insert(answered_from);
        response.extensions_mut().insert(AnswerDeadline::after(self.options.response_header_timeout));
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::registry::FlagCredentials;

    /// RF-7: once a registry is found to speak HTTPS, every plain-HTTP URL of it made before
    /// (a page link resolved against the first page's URL, an upload location) goes to HTTPS;
    /// other hosts' URLs, and look-alike hosts, are left alone.
    #[test]
    fn urls_of_a_registry_found_to_speak_https_go_to_https() {
        let options = RegistryOptions { insecure: true, ..RegistryOptions::default() };
        let credentials = CredentialStore::new(FlagCredentials::default(), &Default::default(), Vec::new());
        let client = RegistryClient::new(options, credentials).unwrap();
        let page = "http://r.example:5000/v2/a/tags/list?last=b&n=2";
        let current = |url: &str| client.upgraded_url("r.example:5000", url).unwrap_or_else(|| url.to_string());
        assert_eq!(current(page), page);
        assert_eq!(client.base_url("r.example:5000"), "http://r.example:5000");
        lock(&client.speaks_tls).insert("r.example:5000".into());
        assert_eq!(current(page), "https://r.example:5000/v2/a/tags/list?last=b&n=2");
        assert_eq!(client.base_url("r.example:5000"), "https://r.example:5000");
        assert_eq!(current("http://r.example:50001/v2/"), "http://r.example:50001/v2/");
        assert_eq!(current("http://other:5000/v2/"), "http://other:5000/v2/");
    }
}
