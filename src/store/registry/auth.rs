//! Registry authentication (distribution "token authentication specification"): the
//! [`Authenticator`] that turns an operation into its `Authorization` value, from the
//! credentials (resolved once per host, RF-1), the `WWW-Authenticate` challenge each registry
//! gave, and the bearer token cache shared by every worker.
//!
//! The token realm a registry names may be on another host, but never plain HTTP for an HTTPS
//! registry unless it is on this machine (spec/cli.md "Registry flags").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ureq::http::{self, Response};
use ureq::{Agent, Body};

use super::agent::transport_kind;
use super::client::Operation;
use super::credentials::{Credential, CredentialStore, Secret};
use super::error::{RegistryError, RegistryErrorKind, status_kind};
use super::origin::{Origin, encode_query};

/// What a registry asked for in its 401 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses a `WWW-Authenticate` header: a scheme, then `key="value"` pairs (values may hold
/// commas inside quotes, as scopes do).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if key.is_empty() {
            return params;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect::<String>().trim().to_string();
        }
        params.insert(key, value);
    }
}

/// Bearer tokens by (registry, scopes), shared by all workers; a token is dropped a little
/// before it expires, or when the registry refuses it. One worker at a time fetches the token
/// of a (registry, scopes); the others wait for it (a copy's workers, starting together, asked
/// the realm five times for one token: realms rate-limit).
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String), (Secret, Instant)>>,
    fetching: Mutex<HashMap<(String, String), FetchGate>>,
}

/// Held by the one worker fetching a (registry, scopes) token; it keeps the last fetch's
/// failure and when it happened, for the workers that waited on that fetch.
type FetchGate = std::sync::Arc<Mutex<Option<(Instant, RegistryError)>>>;

impl TokenCache {
    /// The cached token, else the one `fetch` gets (which caches it), fetched by one worker at a
    /// time: a worker that waited takes the token the one before it got, or its failure (a realm
    /// that fails is not asked again by every waiting worker in turn; each retry of the policy
    /// asks anew).
    pub fn get_or_fetch(
        &self,
        registry: &str,
        scopes: &str,
        fetch: impl FnOnce() -> Result<Secret, RegistryError>,
    ) -> Result<Secret, RegistryError> {
        if let Some(token) = self.get(registry, scopes) {
            return Ok(token);
        }
        let arrived = Instant::now();
        let gate = {
            let mut fetching = self.fetching.lock().expect("token fetch lock");
            std::sync::Arc::clone(fetching.entry((registry.to_string(), scopes.to_string())).or_default())
        };
        let mut last_failure = gate.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(token) = self.get(registry, scopes) {
            return Ok(token);
        }
        if let Some((when, failure)) = last_failure.as_ref()
            && *when >= arrived
        {
            return Err(failure.clone());
        }
        let fetched = fetch();
        *last_failure = fetched.as_ref().err().map(|failure| (Instant::now(), failure.clone()));
        fetched
    }

    pub fn get(&self, registry: &str, scopes: &str) -> Option<Secret> {
        let tokens = self.tokens.lock().expect("token cache lock");
        let (token, expires) = tokens.get(&(registry.to_string(), scopes.to_string()))?;
        (Instant::now() < *expires).then(|| token.clone())
    }

    /// Keeps `token` for `lifetime`, at most [`MAX_TOKEN_LIFETIME`] (an issuer's claim of 2^64 - 1
    /// seconds must not overflow the clock).
    pub fn put(&self, registry: &str, scopes: &str, token: Secret, lifetime: Duration) {
        let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
        // Refresh early so a long upload does not start with a token about to expire.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        let expires = Instant::now() + lifetime.saturating_sub(margin);
        self.tokens
            .lock()
            .expect("token cache lock")
            .insert((registry.to_string(), scopes.to_string()), (token, expires));
    }

    pub fn forget(&self, registry: &str, scopes: &str) {
        self.tokens.lock().expect("token cache lock").remove(&(registry.to_string(), scopes.to_string()));
    }
}

/// Credentials, challenges and tokens for every registry of the run.
pub struct Authenticator {
    credentials: CredentialStore,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: TokenCache,
    /// How long a response's head may take (`--registry-response-header-timeout`): a token
    /// answer's body gets the deadline every small answer has (spec/cli.md RF-6).
    head_wait: std::time::Duration,
}

impl Authenticator {
    pub fn new(credentials: CredentialStore, head_wait: std::time::Duration) -> Self {
        Authenticator { credentials, challenges: Mutex::new(HashMap::new()), tokens: TokenCache::default(), head_wait }
    }

    /// The `Authorization` value to send for `op`, if the registry is known to want one; a token
    /// is fetched when none is cached.
    pub fn authorization(
        &self,
        agent: &Agent,
        registry: &Origin,
        op: &Operation,
    ) -> Result<Option<Secret>, RegistryError> {
        // Cheap after the first time: the store resolves each host once (RF-1).
        let credential = self.credentials.lookup(&op.registry, &op.repository);
        if let Credential::RegistryToken(token) = &credential {
            return Ok(Some(bearer(token)));
        }
        let challenge = self.challenges.lock().expect("challenge lock").get(&op.registry).cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(basic_header(&credential)),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let token = self.tokens.get_or_fetch(&op.registry, &op.scopes.join(" "), || {
                    self.fetch_token(agent, registry, op, &realm, service.as_deref(), &credential)
                })?;
                Ok(Some(bearer(&token)))
            }
        }
    }

    /// Records the challenge of a 401 answer; a refused token is dropped from the cache.
    pub fn learn_challenge(&self, op: &Operation, response: &Response<Body>, had_authorization: bool) {
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
        agent: &Agent,
        registry: &Origin,
        op: &Operation,
        realm: &str,
        service: Option<&str>,
        credential: &Credential,
    ) -> Result<Secret, RegistryError> {
        let token_op = Operation { what: format!("getting a token from {realm} for {}", op.what), ..op.clone() };
        check_realm(&token_op, registry, realm)?;
        let mut query: Vec<(String, String)> = Vec::new();
        if let Some(service) = service {
            query.push(("service".into(), service.into()));
        }
        for scope in &op.scopes {
            query.push(("scope".into(), scope.clone()));
        }
        let invalid = |e: http::Error| token_op.error(RegistryErrorKind::Protocol(e.to_string()));
        let response = match credential {
            Credential::IdentityToken(refresh) => {
                query.push(("grant_type".into(), "refresh_token".into()));
                query.push(("refresh_token".into(), refresh.expose().to_string()));
                query.push(("client_id".into(), "ferry".into()));
                let request = http::Request::builder()
                    .method("POST")
                    .uri(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(encode_query(&query).into_bytes())
                    .map_err(invalid)?;
                agent.run(request)
            }
            other => {
                let separator = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{separator}{}", encode_query(&query));
                let mut builder = http::Request::builder().method("GET").uri(url);
                if let Some(basic) = basic_header(other) {
                    builder = builder.header("Authorization", basic.expose());
                }
                agent.run(builder.body(()).map_err(invalid)?)
            }
        }
        .map_err(|e| token_op.error(transport_kind(e)))?;
        if response.status().as_u16() >= 400 {
            return Err(token_op.error(status_kind(response)));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let mut response = response;
        response.extensions_mut().insert(super::answer::AnswerDeadline::after(self.head_wait));
        let bytes = super::answer::read_whole(&mut response, 1 << 20).map_err(|e| token_op.error(transport_kind(e)))?;
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

/// The longest a token is kept, whatever lifetime its issuer claims (a token that stops
/// working earlier is renewed on its 401 anyway).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

fn bearer(token: &Secret) -> Secret {
    Secret::new(format!("Bearer {}", token.expose()))
}

/// The token realm a registry names may be on another host (the token protocol sends the
/// registry's credentials there), but it must be http(s), and an HTTPS registry's realm must be
/// HTTPS too, so that credentials are never sent in cleartext, to this machine or any other
/// (a loopback port may be another user's process): spec/cli.md "Registry flags".
fn check_realm(op: &Operation, registry: &Origin, realm: &str) -> Result<(), RegistryError> {
    let Some(origin) = Origin::of(realm) else {
        return Err(op.error(RegistryErrorKind::Protocol(format!(
            "the registry ({registry}) names a token realm that is not an http(s) URL; refusing it"
        ))));
    };
    if registry.is_tls() && !origin.is_tls() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Operation {
        Operation { registry: "r.example".into(), repository: "a".into(), what: "x".into(), scopes: vec![] }
    }

    /// A token issuer claiming a lifetime of 2^64 - 1 seconds does not overflow the clock (it
    /// panicked ferry): the token is kept for at most an hour.
    #[test]
    fn an_endless_token_lifetime_is_capped() {
        let cache = TokenCache::default();
        cache.put("r.example", "s", Secret::new(String::from("t")), Duration::from_secs(u64::MAX));
        assert!(cache.get("r.example", "s").is_some());
    }

    #[test]
    fn token_realms_of_a_tls_registry_stay_on_tls_even_on_loopback() {
        let tls = Origin::of("https://r.example").unwrap();
        assert!(check_realm(&op(), &tls, "https://auth.example/token").is_ok());
        assert!(check_realm(&op(), &tls, "http://auth.example/token").is_err());
        assert!(check_realm(&op(), &tls, "http://127.0.0.1:5001/token").is_err());
        assert!(check_realm(&op(), &tls, "https://127.0.0.1:5001/token").is_ok());
        let plain = Origin::of("http://r.example").unwrap();
        assert!(check_realm(&op(), &plain, "http://auth.example/token").is_ok());
        assert!(check_realm(&op(), &tls, "ftp://auth.example/token").is_err());
    }

    #[test]
    fn basic_headers_encode_only_basic_credentials() {
        let basic = Credential::Basic { username: "u".into(), password: Secret::new("p") };
        assert_eq!(basic_header(&basic).unwrap().expose(), "Basic dTpw");
        assert!(basic_header(&Credential::Anonymous).is_none());
        assert!(basic_header(&Credential::IdentityToken(Secret::new("t"))).is_none());
    }

    #[test]
    fn parses_bearer_challenges_with_quoted_commas() {
        let challenge = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push""#,
        );
        assert_eq!(
            challenge,
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:team/app:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    /// Review s8: workers waiting on one token fetch take its failure instead of asking the
    /// realm again one after another (eight workers against a realm failing after a wait took
    /// eight waits, serialised); a worker arriving after the failure asks anew.
    #[test]
    fn workers_waiting_on_a_failed_fetch_share_its_failure() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = TokenCache::default();
        let asked = AtomicUsize::new(0);
        let failing = || {
            asked.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            Err(op().error(RegistryErrorKind::Status { status: 503, code: None, message: None, retry_after: None }))
        };
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    start.wait();
                    assert!(cache.get_or_fetch("r.example", "pull", failing).is_err());
                });
            }
        });
        assert_eq!(asked.load(Ordering::SeqCst), 1, "one realm request for the eight waiting workers");
        assert!(cache.get_or_fetch("r.example", "pull", failing).is_err());
        assert_eq!(asked.load(Ordering::SeqCst), 2, "a later worker asks again");
        let token = cache.get_or_fetch("r.example", "pull", || {
            cache.put("r.example", "pull", Secret::new("t"), Duration::from_secs(60));
            Ok(Secret::new("t"))
        });
        assert_eq!(token.unwrap().expose(), "t");
    }

    #[test]
    fn tokens_expire_and_can_be_forgotten() {
        let cache = TokenCache::default();
        cache.put("r", "s", Secret::new("t"), Duration::from_secs(300));
        assert!(cache.get("r", "s").is_some());
        cache.forget("r", "s");
        assert!(cache.get("r", "s").is_none());
        cache.put("r", "s", Secret::new("t"), Duration::ZERO);
        assert!(cache.get("r", "s").is_none());
    }
}
