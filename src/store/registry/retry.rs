//! The one retry policy of the registry store (spec/cli.md "Registry flags", RF-2): what is worth
//! another attempt, how long to wait before it, and how many attempts a unit of work gets in all.
//!
//! Every layer that retries (a request in the client, a resumed blob body, a whole blob transfer
//! in the engine) asks this module, and the attempts a unit has spent travel with its error
//! ([`super::RegistryError::attempts`]), so that layers share one budget of `1 + retries`
//! attempts instead of multiplying their own.

use std::time::Duration;

use super::error::RegistryErrorKind;

/// The longest `Retry-After` honoured; a registry asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the same request again (connection trouble, 408, 429, 500, 502, 503, 504).
    RetryRequest,
    /// The request itself cannot succeed again, but the unit it belongs to can, started afresh:
    /// an upload session the registry forgot, a `Range` request answered whole.
    RestartUnit,
    /// Final: a refusal, a protocol break, a TLS failure.
    Fail,
}

impl Verdict {
    /// Whether some layer may try again.
    pub fn is_retryable(self) -> bool {
        self != Verdict::Fail
    }
}

/// Classifies a failure (RF-2).
pub fn classify(kind: &RegistryErrorKind) -> Verdict {
    match kind {
        RegistryErrorKind::Transport(_)
        | RegistryErrorKind::Refused(_)
        | RegistryErrorKind::UnknownHost(_)
        | RegistryErrorKind::Timeout(_) => Verdict::RetryRequest,
        RegistryErrorKind::Status { status: 408 | 429 | 500 | 502 | 503 | 504, .. } => Verdict::RetryRequest,
        // distribution-spec: a registry restarted mid-upload no longer knows the session.
        RegistryErrorKind::Status { status: 400 | 404, code: Some(code), .. }
            if code == "BLOB_UPLOAD_UNKNOWN" || code == "BLOB_UPLOAD_INVALID" =>
        {
            Verdict::RestartUnit
        }
        RegistryErrorKind::RangeIgnored { .. }
        | RegistryErrorKind::ReauthenticateUnit { .. }
        | RegistryErrorKind::TooLargeForOneRequest { .. } => Verdict::RestartUnit,
        RegistryErrorKind::Status { .. }
        | RegistryErrorKind::Tls(_)
        | RegistryErrorKind::CertificateIsCa(_)
        | RegistryErrorKind::PlainHttp(_)
        | RegistryErrorKind::Unreachable(_)
        | RegistryErrorKind::Protocol(_) => Verdict::Fail,
    }
}

/// How many times to try, and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first (`--registry-retry-count`).
    pub retries: u32,
    /// The first backoff delay; it doubles each attempt, with jitter.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { retries: 5, base_delay: Duration::from_millis(500) }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub const NEVER: RetryPolicy = RetryPolicy { retries: 0, base_delay: Duration::ZERO };

    /// Attempts a unit of work gets in all.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// Whether a unit that has made `attempts` attempts, the last failing as `verdict`, may try
    /// again.
    pub fn allows(&self, attempts: u32, verdict: Verdict) -> bool {
        verdict.is_retryable() && attempts < self.max_attempts()
    }

    /// The wait before attempt `attempts + 1`: the registry's `Retry-After` (capped at a minute),
    /// else exponential backoff with up to 25% jitter.
    /// After a failed unit (a blob's "request, read body, hash"): adds the attempts `err`
    /// spent to `attempts` and gives the wait before the next attempt, or `None` when the unit
    /// fails now (not retryable, or its `1 + N` budget spent).
    pub fn after(&self, err: &crate::store::StoreError, attempts: &mut u32) -> Option<Duration> {
        let (spent, retry_after) = match err {
            crate::store::StoreError::Registry(remote) => (remote.attempts.max(1), remote.retry_after()),
            _ => (1, None),
        };
        *attempts += spent;
        (err.is_transient() && *attempts < self.max_attempts()).then(|| self.delay(*attempts, retry_after))
    }

    /// The warning a retry prints: what is tried again, which attempt of how many, and why
    /// (`what` is left out when the error already names it, as a registry error does).
    pub fn retrying(&self, what: impl std::fmt::Display, attempts: u32, err: impl std::fmt::Display) -> String {
        let (what, err) = (what.to_string(), err.to_string());
        let attempt = format!("(attempt {} of {})", attempts + 1, self.max_attempts());
        if err.contains(&what) {
            format!("retrying {attempt}: {err}")
        } else {
            format!("retrying {what} {attempt}: {err}")
        }
    }

    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(MAX_RETRY_AFTER);
        }
        let base = self.base_delay.saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(8)));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by registries and is ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: Option<&str>) -> RegistryErrorKind {
        RegistryErrorKind::Status { status, code: code.map(str::to_string), message: None, retry_after: None }
    }

    #[test]
    fn transient_failures_are_retried_and_refusals_are_not() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify(&status(code, None)), Verdict::RetryRequest, "{code}");
        }
        for code in [400, 401, 403, 404, 405, 413, 416, 501, 505] {
            assert_eq!(classify(&status(code, None)), Verdict::Fail, "{code}");
        }
        assert_eq!(classify(&RegistryErrorKind::Transport("reset".into())), Verdict::RetryRequest);
        assert_eq!(classify(&RegistryErrorKind::Refused("restarting".into())), Verdict::RetryRequest);
        assert_eq!(classify(&RegistryErrorKind::UnknownHost("renamed".into())), Verdict::RetryRequest);
        assert_eq!(classify(&RegistryErrorKind::Unreachable("never answered".into())), Verdict::Fail);
        assert_eq!(classify(&RegistryErrorKind::Timeout("headers".into())), Verdict::RetryRequest);
        assert_eq!(classify(&RegistryErrorKind::Tls("untrusted".into())), Verdict::Fail);
        assert_eq!(classify(&RegistryErrorKind::Protocol("no Location".into())), Verdict::Fail);
    }

    #[test]
    fn a_retry_warning_names_the_operation_once() {
        let policy = RetryPolicy::default();
        let err = "resolving tag v1 127.0.0.1:5000/app: connection failed: reset";
        assert_eq!(policy.retrying("resolving tag v1", 1, err), format!("retrying (attempt 2 of 6): {err}"));
        let err = "fetching blob sha256:ab 127.0.0.1:5000/app: connection failed: reset";
        assert_eq!(policy.retrying("blob sha256:ab", 1, err), format!("retrying (attempt 2 of 6): {err}"));
        assert_eq!(
            policy.retrying("blob sha256:ab", 2, "reading the archive: short"),
            "retrying blob sha256:ab (attempt 3 of 6): reading the archive: short"
        );
    }

    #[test]
    fn a_forgotten_upload_session_restarts_the_unit() {
        assert_eq!(classify(&status(404, Some("BLOB_UPLOAD_UNKNOWN"))), Verdict::RestartUnit);
        assert_eq!(classify(&status(400, Some("BLOB_UPLOAD_INVALID"))), Verdict::RestartUnit);
        assert_eq!(classify(&status(404, Some("BLOB_UNKNOWN"))), Verdict::Fail);
        assert_eq!(classify(&RegistryErrorKind::RangeIgnored { status: 200, offset: 5 }), Verdict::RestartUnit);
    }

    #[test]
    fn the_budget_is_one_plus_retries() {
        let policy = RetryPolicy { retries: 2, base_delay: Duration::ZERO };
        assert!(policy.allows(1, Verdict::RetryRequest));
        assert!(policy.allows(2, Verdict::RestartUnit));
        assert!(!policy.allows(3, Verdict::RetryRequest));
        assert!(!policy.allows(1, Verdict::Fail));
        assert!(!RetryPolicy::NEVER.allows(1, Verdict::RetryRequest));
    }

    #[test]
    fn delays_double_with_bounded_jitter_and_honour_retry_after() {
        let policy = RetryPolicy { retries: 5, base_delay: Duration::from_millis(100) };
        for (attempts, base) in [(1, 100), (2, 200), (3, 400)] {
            let delay = policy.delay(attempts, None);
            assert!(delay >= Duration::from_millis(base) && delay <= Duration::from_millis(base * 5 / 4), "{delay:?}");
        }
        assert_eq!(policy.delay(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3600))), MAX_RETRY_AFTER);
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
