//! The HTTP agent and what sits beneath it: the scheme a registry is spoken to with, the TLS
//! roots (system roots plus `--registry-ca-cert-path`), one pooled `ureq` agent, and the
//! classification of transport failures by their type (a TLS failure is a `rustls::Error`
//! somewhere in the error's chain, never a word found in a message).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ureq::Agent;
use ureq::config::RedirectAuthHeaders;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::client::RegistryOptions;
use super::direct::DirectGets;
use super::error::RegistryErrorKind;

/// `https://registry` (or `http://` with `--registry-insecure`); Docker Hub's API host for
/// `index.docker.io`.
pub fn base_url(insecure: bool, registry: &str) -> String {
    let scheme = if insecure { "http" } else { "https" };
    let host = if registry == "index.docker.io" { "registry-1.docker.io" } else { registry };
    format!("{scheme}://{host}")
}

/// The agent every request of the run goes through.
pub fn build_agent(options: &RegistryOptions, roots: &Option<Vec<Certificate<'static>>>) -> Result<Agent, String> {
    let roots = match roots {
        Some(certs) => RootCerts::new_with_certs(certs),
        None => RootCerts::WebPki,
    };
    let tls = TlsConfig::builder().root_certs(roots).disable_verification(!options.verify_certs).build();
    Ok(Agent::config_builder()
        .http_status_as_error(false)
        // A redirect may lead anywhere: it never carries the registry's credentials.
        .redirect_auth_headers(RedirectAuthHeaders::Never)
        // Without --registry-insecure no request, and no redirect, leaves HTTPS: a redirect to
        // plain HTTP would let anyone on that hop choose what a tag or manifest is.
        .https_only(!options.insecure)
        .tls_config(tls)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(options.response_header_timeout))
        // A body that stalls part-way fails after the same wait, and is then resumed.
        .timeout_per_read(Some(options.response_header_timeout))
        .max_idle_connections(options.connections.max(1) * 4)
        .max_idle_connections_per_host(options.connections.max(1))
        .user_agent(USER_AGENT)
        .accept_encoding("identity")
        .input_buffer_size(256 * 1024)
        .output_buffer_size(256 * 1024)
        .build()
        .into())
}

/// What every request says it comes from, through the agent or the direct reader.
pub const USER_AGENT: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));

/// How long a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The direct blob GETs ([`super::direct`]), with the agent's timeouts and roots; `None` when a
/// proxy is configured in the environment (the agent goes through it). HTTPS is read there only
/// with certificates verified against system roots or `--registry-ca-cert-path`.
pub fn build_direct(
    options: &RegistryOptions,
    agent: &Agent,
    roots: &Option<Vec<Certificate<'static>>>,
) -> Result<Option<DirectGets>, String> {
    if agent.config().proxy().is_some() {
        return Ok(None);
    }
    let tls = match roots {
        Some(certs) if options.verify_certs => {
            let mut store = rustls::RootCertStore::empty();
            for cert in certs {
                // A root the TLS library cannot use is left out, as the agent leaves it out.
                let _ = store.add(rustls::pki_types::CertificateDer::from(cert.der().to_vec()));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("setting up TLS: {e}"))?
                .with_root_certificates(store)
                .with_no_client_auth();
            Some(Arc::new(config))
        }
        _ => None,
    };
    let idle = options.connections.max(1);
    Ok(Some(DirectGets::new(tls, CONNECT_TIMEOUT, options.response_header_timeout, idle)))
}

/// System roots plus the extra CAs; `None` when there are neither (the agent then trusts
/// Mozilla's roots).
pub fn trusted_roots(options: &RegistryOptions) -> Result<Option<Vec<Certificate<'static>>>, String> {
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
    let native = rustls_native_certs::load_native_certs();
    certs.extend(native.certs.iter().map(|der| Certificate::from_der(der.as_ref()).to_owned()));
    Ok((!certs.is_empty()).then_some(certs))
}

/// Classifies a transport failure by its type.
pub fn transport_kind(error: ureq::Error) -> RegistryErrorKind {
    match error {
        ureq::Error::Timeout(what) => RegistryErrorKind::Timeout(what.to_string()),
        ureq::Error::BodyExceedsLimit(limit) => {
            RegistryErrorKind::Protocol(format!("the answer is larger than the {limit}-byte limit"))
        }
        ureq::Error::Rustls(e) => tls_kind(&e),
        ureq::Error::Tls(text) => RegistryErrorKind::Tls(text.to_string()),
        ureq::Error::Pem(e) => RegistryErrorKind::Tls(e.to_string()),
        ureq::Error::TlsRequired | ureq::Error::RequireHttpsOnly(_) => RegistryErrorKind::Tls(error.to_string()),
        ureq::Error::Io(e) => io_kind(&e),
        other => RegistryErrorKind::Transport(other.to_string()),
    }
}

/// An I/O failure: a timeout, a TLS failure carried inside it (rustls reports handshake
/// failures through the stream's `io::Error`), or connection trouble.
pub fn io_kind(error: &io::Error) -> RegistryErrorKind {
    if let Some(tls) = rustls_error_in(error) {
        return tls_kind(tls);
    }
    match error.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => RegistryErrorKind::Timeout(error.to_string()),
        io::ErrorKind::ConnectionRefused => RegistryErrorKind::Refused(error.to_string()),
        _ if names_an_unknown_host(error) => RegistryErrorKind::UnknownHost(error.to_string()),
        _ => RegistryErrorKind::Transport(error.to_string()),
    }
}

/// Whether `error` is the resolver saying the host name does not exist (EAI_NONAME,
/// EAI_NODATA), not that it failed for now (EAI_AGAIN: "Temporary failure in name
/// resolution"). The standard library reports every `getaddrinfo` failure as an uncategorised
/// error whose text is the resolver's own message, so the text is all there is to go by.
fn names_an_unknown_host(error: &io::Error) -> bool {
    let text = error.to_string();
    text.starts_with("failed to lookup address information")
        && ["Name or service not known", "No address associated with hostname", "nodename nor servname provided"]
            .iter()
            .any(|message| text.contains(message))
}

/// The `rustls::Error` in `error`'s chain of sources, if any.
fn rustls_error_in(error: &io::Error) -> Option<&rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> =
        error.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(inner) = current {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(ureq::Error::Rustls(tls)) = inner.downcast_ref::<ureq::Error>() {
            return Some(tls);
        }
        current = inner.source();
    }
    None
}

/// A record that does not parse as TLS is a server speaking something else, nearly always
/// plain HTTP; every other rustls error is a TLS failure (certificate, handshake).
fn tls_kind(error: &rustls::Error) -> RegistryErrorKind {
    match error {
        rustls::Error::InvalidMessage(_) => RegistryErrorKind::PlainHttp(error.to_string()),
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
            if matches!(other.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity)) =>
        {
            RegistryErrorKind::CertificateIsCa(error.to_string())
        }
        _ => RegistryErrorKind::Tls(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_wrapping(error: rustls::Error) -> ureq::Error {
        ureq::Error::Io(io::Error::new(io::ErrorKind::InvalidData, error))
    }

    #[test]
    fn tls_failures_are_recognised_by_type() {
        let untrusted = io_wrapping(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        assert!(matches!(transport_kind(untrusted), RegistryErrorKind::Tls(_)));
        let plain = io_wrapping(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType));
        assert!(matches!(transport_kind(plain), RegistryErrorKind::PlainHttp(_)));
        let direct = ureq::Error::Rustls(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired));
        assert!(matches!(transport_kind(direct), RegistryErrorKind::Tls(_)));
    }

    /// Review s8 G4: a self-signed CA certificate serving as the registry's own (openssl's
    /// default `req -x509`) is named for what it is, with what to do; the hint to pass the CA
    /// (which the user had done) is not given.
    #[test]
    fn a_ca_certificate_serving_as_the_registrys_own_is_named() {
        let other = rustls::OtherError(std::sync::Arc::new(webpki::Error::CaUsedAsEndEntity));
        let kind =
            transport_kind(io_wrapping(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))));
        assert!(matches!(kind, RegistryErrorKind::CertificateIsCa(_)), "{kind:?}");
        let error = super::super::error::RegistryError {
            registry: "127.0.0.1:5000".into(),
            repository: "x".into(),
            operation: "listing tags".into(),
            kind,
            attempts: 1,
        };
        let message = error.to_string();
        assert!(message.contains("CA:FALSE") && !message.contains("pass it with"), "{message}");
    }

    #[test]
    fn words_in_a_message_do_not_make_a_tls_failure() {
        let reset = ureq::Error::Io(io::Error::new(io::ErrorKind::ConnectionReset, "tls certificate handshake"));
        assert!(matches!(transport_kind(reset), RegistryErrorKind::Transport(_)));
        let slow = ureq::Error::Io(io::Error::new(io::ErrorKind::TimedOut, "slow"));
        assert!(matches!(transport_kind(slow), RegistryErrorKind::Timeout(_)));
        assert!(matches!(transport_kind(ureq::Error::ConnectionFailed), RegistryErrorKind::Transport(_)));
        let refused = ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(matches!(transport_kind(refused), RegistryErrorKind::Refused(_)));
    }

    /// RF-2: a host name the resolver says does not exist is told from a resolver that failed
    /// for now (the standard library's text for `getaddrinfo` failures is all there is).
    #[test]
    fn an_unknown_host_is_told_from_a_temporary_resolver_failure() {
        let lookup = |message: &str| io::Error::other(format!("failed to lookup address information: {message}"));
        assert!(matches!(io_kind(&lookup("Name or service not known")), RegistryErrorKind::UnknownHost(_)));
        assert!(matches!(io_kind(&lookup("No address associated with hostname")), RegistryErrorKind::UnknownHost(_)));
        assert!(matches!(io_kind(&lookup("Temporary failure in name resolution")), RegistryErrorKind::Transport(_)));
        assert!(matches!(io_kind(&io::Error::other("Name or service not known")), RegistryErrorKind::Transport(_)));
    }

    #[test]
    fn logging_is_compiled_out_of_the_body_path() {
        // Issue 18: ferry installs no logger, yet ureq logs every received body byte through
        // `trace!`; only a static maximum level removes that per-16-byte check from a blob GET.
        assert_eq!(log::STATIC_MAX_LEVEL, log::LevelFilter::Off);
    }

    #[test]
    fn blob_bodies_go_through_the_agent_behind_a_proxy() {
        let options = RegistryOptions::default();
        let plain: Agent = Agent::config_builder().proxy(None).build().into();
        assert!(build_direct(&options, &plain, &None).unwrap().is_some());
        let proxy = ureq::Proxy::new("http://127.0.0.1:9").unwrap();
        let proxied: Agent = Agent::config_builder().proxy(Some(proxy)).build().into();
        assert!(build_direct(&options, &proxied, &None).unwrap().is_none(), "a proxy is never bypassed");
    }

    #[test]
    fn the_scheme_follows_the_insecure_flag() {
        assert_eq!(base_url(false, "r.example:5000"), "https://r.example:5000");
        assert_eq!(base_url(true, "127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(base_url(false, "index.docker.io"), "https://registry-1.docker.io");
    }
}
