//! Bearer-token authentication for the fault server (distribution "token authentication
//! specification"): a `/token` endpoint on the same server that takes basic credentials and
//! hands out opaque tokens for the scopes asked, a check of every `/v2/` request against them,
//! and invalidation on demand (a token that "expired" mid-transfer).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::http::{Request, Response};

/// The `service` of the challenge.
pub const SERVICE: &str = "fault";

/// Who may log in, and the tokens handed out.
#[derive(Debug, Default)]
pub struct TokenAuth {
    pub username: String,
    pub password: String,
    /// Valid tokens and the scopes each was granted.
    valid: HashMap<String, Vec<String>>,
    /// Every token ever issued, valid or not (so tests can look for leaks).
    pub issued: Vec<String>,
    /// Requests to `/token`, successful or not.
    pub token_requests: usize,
    /// 401 answers given to `/v2/` requests.
    pub challenges: usize,
}

impl TokenAuth {
    pub fn new(username: &str, password: &str) -> Self {
        TokenAuth { username: username.into(), password: password.into(), ..TokenAuth::default() }
    }

    /// Every token issued so far stops working.
    pub fn expire_all(&mut self) {
        self.valid.clear();
    }

    /// `GET /token?service=..&scope=..` with basic credentials.
    pub fn issue(&mut self, request: &Request) -> Response {
        self.token_requests += 1;
        let given = request.header("authorization").and_then(basic_credentials);
        if given != Some((self.username.clone(), self.password.clone())) {
            return Response::error(401, "UNAUTHORIZED", "wrong username or password");
        }
        if request.query_param("service").as_deref() != Some(SERVICE) {
            return Response::error(400, "INVALID", "unknown service");
        }
        let scopes: Vec<String> =
            request.query_params("scope").iter().flat_map(|s| s.split(' ')).map(str::to_string).collect();
        // Unpredictable enough for a test, distinct per issue, and never a substring of another.
        let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let token = format!("fault-token-{}-{nonce:x}-end", self.issued.len() + 1);
        self.valid.insert(token.clone(), scopes);
        self.issued.push(token.clone());
        let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
        Response::new(200).header("Content-Type", "application/json").body(body.into_bytes())
    }

    /// Whether the request carries a valid token granting `action` (`pull` or `push`) on
    /// `repository`; `None` for the `/v2/` root, which any valid token may read.
    pub fn allows(&self, request: &Request, repository: Option<&str>, action: &str) -> bool {
        let Some(token) = request.header("authorization").and_then(|v| v.strip_prefix("Bearer ")) else {
            return false;
        };
        let Some(scopes) = self.valid.get(token) else { return false };
        match repository {
            None => true,
            Some(repository) => scopes.iter().any(|scope| grants(scope, repository, action)),
        }
    }

    /// The 401 a registry sends to make the client fetch a token.
    pub fn challenge(&mut self, host: &str, repository: Option<&str>, action: &str) -> Response {
        self.challenges += 1;
        let mut value = format!(r#"Bearer realm="http://{host}/token",service="{SERVICE}""#);
        if let Some(repository) = repository {
            let actions = if action == "push" { "pull,push" } else { "pull" };
            value.push_str(&format!(r#",scope="repository:{repository}:{actions}""#));
        }
        Response::error(401, "UNAUTHORIZED", "authentication required").header("WWW-Authenticate", value)
    }
}

/// `repository:NAME:pull,push` grants `action` on NAME.
fn grants(scope: &str, repository: &str, action: &str) -> bool {
    let Some(rest) = scope.strip_prefix("repository:") else { return false };
    let Some((name, actions)) = rest.rsplit_once(':') else { return false };
    name == repository && actions.split(',').any(|a| a == action || a == "*")
}

fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}
