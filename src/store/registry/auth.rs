//! Registry authentication: parsing `WWW-Authenticate` challenges and the bearer token cache
//! shared by every worker (distribution "token authentication specification").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::credentials::Secret;

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
/// before it expires, or when the registry refuses it.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String), (Secret, Instant)>>,
}

impl TokenCache {
    pub fn get(&self, registry: &str, scopes: &str) -> Option<Secret> {
        let tokens = self.tokens.lock().expect("token cache lock");
        let (token, expires) = tokens.get(&(registry.to_string(), scopes.to_string()))?;
        (Instant::now() < *expires).then(|| token.clone())
    }

    pub fn put(&self, registry: &str, scopes: &str, token: Secret, lifetime: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
