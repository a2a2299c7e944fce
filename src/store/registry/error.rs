//! Registry errors: the registry, repository and operation, the HTTP status and the registry's
//! own error code and message (distribution-spec "error codes"), with a hint a user can act on.
//! Credentials and tokens never appear here.

use std::fmt;

/// Why a registry operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub struct RegistryError {
    pub registry: String,
    pub repository: String,
    pub operation: String,
    pub kind: RegistryErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// The registry answered with an error status.
    Status { status: u16, code: Option<String>, message: Option<String> },
    /// The connection failed, was reset, or TLS failed.
    Transport(String),
    /// TLS failed: an untrusted certificate, or a plain-HTTP server.
    Tls(String),
    /// No answer in time.
    Timeout(String),
    /// The registry answered something that breaks the protocol (a wrong digest header, a
    /// missing Location, an oversize manifest).
    Protocol(String),
}

impl RegistryError {
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            RegistryErrorKind::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// Whether trying again may succeed: connection trouble, timeouts, 5xx, 429 and 408.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            RegistryErrorKind::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            RegistryErrorKind::Transport(_) | RegistryErrorKind::Timeout(_) => true,
            RegistryErrorKind::Protocol(_) | RegistryErrorKind::Tls(_) => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    fn hint(&self) -> &'static str {
        match &self.kind {
            RegistryErrorKind::Status { status: 401, .. } => {
                " (check --registry-username/--registry-password, IMGPKG_REGISTRY_* variables or `docker login`)"
            }
            RegistryErrorKind::Status { status: 403, .. } => " (the credentials lack permission for this repository)",
            RegistryErrorKind::Status { code: Some(code), .. } if code == "NAME_UNKNOWN" => {
                " (the repository does not exist)"
            }
            RegistryErrorKind::Status { code: Some(code), .. } if code == "MANIFEST_UNKNOWN" => {
                " (no such tag or digest in this repository)"
            }
            RegistryErrorKind::Tls(text) if text.contains("corrupt message") => {
                " (the registry may speak plain HTTP: pass --registry-insecure if that is intended)"
            }
            RegistryErrorKind::Tls(_) => " (if the registry uses a private CA, pass it with --registry-ca-cert-path)",
            _ => "",
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}: ", self.operation, self.registry, self.repository)?;
        match &self.kind {
            RegistryErrorKind::Status { status, code, message } => {
                write!(f, "HTTP {status}")?;
                if let Some(code) = code {
                    write!(f, " {code}")?;
                }
                if let Some(message) = message.as_ref().filter(|m| !m.is_empty()) {
                    write!(f, ": {message}")?;
                }
            }
            RegistryErrorKind::Transport(text) => write!(f, "connection failed: {text}")?,
            RegistryErrorKind::Tls(text) => write!(f, "TLS failed: {text}")?,
            RegistryErrorKind::Timeout(text) => write!(f, "timed out: {text}")?,
            RegistryErrorKind::Protocol(text) => write!(f, "{text}")?,
        }
        f.write_str(self.hint())
    }
}

/// The first entry of a distribution error body: `{"errors":[{"code":..,"message":..}]}`.
pub fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(parsed) => parsed.errors.into_iter().next().map_or((None, None), |e| (e.code, e.message)),
        Err(_) => {
            let text = String::from_utf8_lossy(body).trim().chars().take(200).collect::<String>();
            (None, (!text.is_empty()).then_some(text))
        }
    }
}
