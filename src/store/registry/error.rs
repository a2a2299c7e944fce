//! Registry errors: the registry, repository and operation, the HTTP status and the registry's
//! own error code and message (distribution-spec "error codes"), with a hint a user can act on.
//! Credentials and tokens never appear here. The status shown is always the one the registry
//! sent (spec/cli.md "Registry flags", RF-2): retry decisions are made by [`super::retry`] from
//! the real answer, never by rewriting it.

use std::fmt;
use std::time::Duration;

use ureq::Body;
use ureq::http::Response;

use super::retry::{self, Verdict};

/// Why a registry operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub struct RegistryError {
    pub registry: String,
    pub repository: String,
    pub operation: String,
    pub kind: RegistryErrorKind,
    /// Attempts the unit of work had made when it failed with this error (at least 1); layers
    /// above add theirs to it, so that all share one budget (RF-2).
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// The registry answered with an error status.
    Status {
        status: u16,
        code: Option<String>,
        message: Option<String>,
        /// The registry's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The registry answered a `Range` request (resuming a body at `offset`) with `status`
    /// instead of 206: it cannot resume, the blob must be fetched again whole.
    RangeIgnored { status: u16, offset: u64 },
    /// The registry answered 413 to a blob sent in one request: it is sent in chunks next time.
    TooLargeForOneRequest { code: Option<String>, message: Option<String> },
    /// The registry answered 401 to a request whose streamed body cannot be sent again (its
    /// token expired mid-transfer); a fresh challenge was learnt, so the unit can start afresh.
    ReauthenticateUnit { code: Option<String>, message: Option<String> },
    /// The connection failed, was reset, or TLS failed.
    Transport(String),
    /// The connection was refused (retried once the registry has answered in this run: it may
    /// be restarting).
    Refused(String),
    /// The resolver says the registry's host name does not exist (retried, like
    /// [`RegistryErrorKind::Refused`], once the registry has answered in this run).
    UnknownHost(String),
    /// [`RegistryErrorKind::Refused`] or [`RegistryErrorKind::UnknownHost`] before the registry ever answered in this run: nothing
    /// listens there, so it is not retried (spec/cli.md RF-2).
    Unreachable(String),
    /// TLS failed: an untrusted certificate, a failed handshake.
    Tls(String),
    /// The registry's certificate is a CA certificate (`CA:TRUE`) serving as its own server
    /// certificate, as `openssl req -x509` makes one by default: refused even when it is given
    /// with `--registry-ca-cert-path` (rustls does not let a CA be an end entity).
    CertificateIsCa(String),
    /// The TLS handshake got an answer that is not TLS at all (a plain-HTTP server).
    PlainHttp(String),
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
            RegistryErrorKind::ReauthenticateUnit { .. } => Some(401),
            RegistryErrorKind::TooLargeForOneRequest { .. } => Some(413),
            _ => None,
        }
    }

    /// What the retry policy makes of this failure.
    pub fn verdict(&self) -> Verdict {
        retry::classify(&self.kind)
    }

    /// Whether some layer may try again (the retry policy's classification; whether attempts
    /// remain is the caller's question, see [`RegistryError::attempts`]).
    pub fn is_transient(&self) -> bool {
        self.verdict().is_retryable()
    }

    /// The registry's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            RegistryErrorKind::Status { retry_after, .. } => retry_after,
            _ => None,
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
            RegistryErrorKind::PlainHttp(_) => {
                " (the registry may speak plain HTTP: pass --registry-insecure if that is intended)"
            }
            RegistryErrorKind::Tls(_) => " (if the registry uses a private CA, pass it with --registry-ca-cert-path)",
            RegistryErrorKind::CertificateIsCa(_) => {
                " (the registry's certificate is a CA certificate, basicConstraints CA:TRUE, serving as its own server \
                 certificate, which ferry's TLS library refuses even from --registry-ca-cert-path: reissue it with \
                 CA:FALSE, e.g. openssl req -x509 ... -addext basicConstraints=critical,CA:FALSE, or issue it from a \
                 CA and pass that CA; --registry-verify-certs=false skips the check)"
            }
            RegistryErrorKind::Unreachable(_) => {
                " (nothing answered there: check the registry's host and port, and that it is running)"
            }
            _ => "",
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}: ", self.operation, self.registry, self.repository)?;
        match &self.kind {
            RegistryErrorKind::Status { status, code, message, .. } => write_status(f, *status, code, message)?,
            RegistryErrorKind::RangeIgnored { status, offset } => write!(
                f,
                "the registry answered HTTP {status} to a Range request for bytes {offset}- (it cannot resume a blob)"
            )?,
            RegistryErrorKind::ReauthenticateUnit { code, message } => {
                write_status(f, 401, code, message)?;
                write!(f, " in the middle of a streamed request (the credentials expired; they were renewed)")?;
            }
            RegistryErrorKind::TooLargeForOneRequest { code, message } => {
                write_status(f, 413, code, message)?;
                write!(f, " (the registry refuses a blob this large in one request; it is sent in chunks next)")?;
            }
            RegistryErrorKind::Transport(text)
            | RegistryErrorKind::Refused(text)
            | RegistryErrorKind::UnknownHost(text) => write!(f, "connection failed: {text}")?,
            RegistryErrorKind::Unreachable(text) => write!(f, "cannot connect: {text}")?,
            RegistryErrorKind::Tls(text)
            | RegistryErrorKind::PlainHttp(text)
            | RegistryErrorKind::CertificateIsCa(text) => write!(f, "TLS failed: {text}")?,
            RegistryErrorKind::Timeout(text) => write!(f, "timed out: {text}")?,
            RegistryErrorKind::Protocol(text) => write!(f, "{text}")?,
        }
        f.write_str(self.hint())?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

fn write_status(
    f: &mut fmt::Formatter<'_>,
    status: u16,
    code: &Option<String>,
    message: &Option<String>,
) -> fmt::Result {
    write!(f, "HTTP {status}")?;
    if let Some(code) = code {
        write!(f, " {}", one_line(code))?;
    }
    if let Some(message) = message.as_ref().filter(|m| !m.is_empty()) {
        write!(f, ": {}", one_line(message))?;
    }
    Ok(())
}

/// A registry's code or message on one line: its line breaks become spaces, so that it cannot
/// print lines of its own (an `error:` line ferry never wrote). Other control characters are
/// escaped where messages are printed.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n']).filter(|part| !part.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Turns an error status into an error kind carrying the registry's code, message and
/// `Retry-After`, exactly as sent.
pub fn status_kind(mut response: Response<Body>) -> RegistryErrorKind {
    let status = response.status().as_u16();
    let retry_after =
        response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry::parse_retry_after);
    let body = super::answer::read_whole(&mut response, 64 * 1024).unwrap_or_default();
    let (code, message) = parse_error_body(&body);
    RegistryErrorKind::Status { status, code, message, retry_after }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry's message cannot print lines of its own.
    #[test]
    fn a_registry_message_stays_on_one_line() {
        let kind = RegistryErrorKind::Status {
            status: 400,
            code: Some("BAD\nCODE".into()),
            message: Some("no\r\nerror: forged line\n".into()),
            retry_after: None,
        };
        let text = error(kind, 1).to_string();
        assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
        assert!(text.ends_with("HTTP 400 BAD CODE: no error: forged line"), "{text}");
    }

    fn error(kind: RegistryErrorKind, attempts: u32) -> RegistryError {
        RegistryError {
            registry: "r.example".into(),
            repository: "team/app".into(),
            operation: "fetching blob x".into(),
            kind,
            attempts,
        }
    }

    #[test]
    fn statuses_print_as_the_registry_sent_them() {
        let kind = RegistryErrorKind::Status {
            status: 401,
            code: Some("UNAUTHORIZED".into()),
            message: Some("authentication required".into()),
            retry_after: None,
        };
        let text = error(kind, 1).to_string();
        assert!(
            text.starts_with("fetching blob x r.example/team/app: HTTP 401 UNAUTHORIZED: authentication required"),
            "{text}"
        );
        assert!(text.contains("--registry-username"), "{text}");
        let text = error(RegistryErrorKind::Status { status: 503, code: None, message: None, retry_after: None }, 3)
            .to_string();
        assert!(text.ends_with("HTTP 503 (after 3 attempts)"), "{text}");
    }

    #[test]
    fn a_range_answered_whole_says_so() {
        let text = error(RegistryErrorKind::RangeIgnored { status: 200, offset: 65536 }, 2).to_string();
        assert!(text.contains("HTTP 200 to a Range request for bytes 65536-"), "{text}");
        assert!(!text.contains("connection"), "{text}");
    }

    #[test]
    fn error_bodies_give_the_first_code_and_message() {
        let body = br#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"upload unknown"},{"code":"X"}]}"#;
        assert_eq!(parse_error_body(body), (Some("BLOB_UPLOAD_UNKNOWN".into()), Some("upload unknown".into())));
        assert_eq!(parse_error_body(b"  plain words "), (None, Some("plain words".into())));
        assert_eq!(parse_error_body(b""), (None, None));
    }
}
