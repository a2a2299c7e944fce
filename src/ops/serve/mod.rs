//! `ferry serve`: an archive as a read-only registry, read in place (spec/serve.md).
//!
//! [`start`] checks the archive (every blob hashed, or with [`VerifyMode::Lazy`] only its
//! graph), builds the two views of its names ([`catalog`]), and binds the socket; then
//! [`Server::run`] serves until SIGINT or SIGTERM. [`routes`] parses requests, [`handler`]
//! answers them from [`content`], [`body`] streams blobs a chunk at a time, [`server`] owns the
//! runtime, connections, TLS and the stop.

mod body;
mod catalog;
mod content;
mod handler;
mod ranges;
mod routes;
mod server;
mod stall;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::verify::{self, Unhashed};
use crate::engine::{Graph, Reporter};
use crate::model::{Digest, sha256_digest};
use crate::store::StoreError;
use crate::store::layout_tar::LayoutTarSource;
use content::Content;
use handler::Shared;

/// When blob bytes are hashed (spec/serve.md SV-3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Every blob before listening.
    #[default]
    Eager,
    /// Each blob on its first full read.
    Lazy,
}

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub repo: Option<String>,
    pub verify: VerifyMode,
    pub identity: Option<Digest>,
    pub tls: Option<TlsFiles>,
    /// Parallel hashing at start, and the most archive reads in flight.
    pub workers: usize,
}

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{archive} failed verification; nothing is served:\n  {}", .failures.join("\n  "))]
    Integrity { archive: String, failures: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("--repo {name:?} is not a repository name (lowercase letters, digits and . _ - /, as registries allow)")]
    RepoName { name: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("serving {archive}: {source}")]
    Runtime { archive: String, source: std::io::Error },
    #[error(
        "{archive} is an imgpkg tarball: serve reads ferry archives; turn it into one with `ferry export --imgpkg-tar {archive} -o ARCHIVE` (every digest kept)"
    )]
    Imgpkg { archive: String },
}

impl ServeError {
    pub fn is_integrity(&self) -> bool {
        match self {
            ServeError::Integrity { .. } => true,
            ServeError::Store(err) => err.is_integrity(),
            _ => false,
        }
    }
}

/// One request, as logged.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    /// The request path as sent (untrusted: escape it before printing).
    pub path: String,
    pub status: u16,
    /// The body bytes sent to the client.
    pub bytes: u64,
    /// The body length announced (`Content-Length`; 0 for `HEAD`), when there was one.
    pub announced: Option<u64>,
    /// Whether the body ended as announced; false when the client went away or the server cut
    /// it (a blob that failed verification mid-body, a stalled client).
    pub complete: bool,
    /// From the request to the body's end (or its cut).
    pub millis: u128,
    pub peer: SocketAddr,
}

/// Where the server's log goes; the CLI prints it.
pub trait ServeLog: Send + Sync {
    fn request(&self, record: &RequestRecord);
    /// A blob failed its digest while being read: it is never served again.
    fn blob_failed(&self, digest: &Digest, message: &str);
}

/// What the ready line says (spec/serve.md SV-4).
#[derive(Debug, Clone, Serialize)]
pub struct Ready {
    pub archive: String,
    pub identity: Digest,
    pub address: SocketAddr,
    pub url: String,
    pub tls: bool,
    pub verify: VerifyMode,
    pub repositories: Vec<String>,
}

/// A checked archive with its socket bound, ready to serve.
pub struct Server {
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    content: Arc<Content>,
    catalog: catalog::Catalog,
    ready: Ready,
    warnings: Vec<String>,
    readers: usize,
}

impl Server {
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// What the check found worth saying that does not stop serving (unreferenced blobs of an
    /// archive ferry did not write).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Serves until SIGINT or SIGTERM.
    pub fn run(self, log: Arc<dyn ServeLog>) -> Result<(), ServeError> {
        let archive = self.ready.archive.clone();
        let shared = Arc::new(Shared { content: self.content, catalog: self.catalog, log });
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = server::Threads { workers: cores.min(4), readers: self.readers };
        server::run(self.listener, self.tls, shared, threads).map_err(|source| ServeError::Runtime { archive, source })
    }
}

/// Checks the archive at `path`, builds its views and binds `options.addr`.
pub fn start(path: &Path, options: &ServeOptions, reporter: &dyn Reporter) -> Result<Server, ServeError> {
    if let Some(name) = &options.repo {
        if routes::parse("GET", &format!("/v2/{name}/tags/list"), None).is_err() {
            return Err(ServeError::RepoName { name: name.clone() });
        }
    }
    let tls = options.tls.as_ref().map(load_tls).transpose()?;
    let archive_name = path.display().to_string();
    let (archive, graph, warnings) = check(path, options, reporter)?;
    let views = catalog::build(&graph, options.repo.as_deref());
    let identity = sha256_digest(archive.index_bytes());
    let manifests = graph.manifests.into_values().chain(views.record_manifests);
    let content = Content::new(Arc::new(archive), manifests, views.record_blobs, options.verify == VerifyMode::Eager);

    let listener =
        std::net::TcpListener::bind(options.addr).map_err(|source| ServeError::Bind { addr: options.addr, source })?;
    let address = listener.local_addr().map_err(|source| ServeError::Bind { addr: options.addr, source })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ready = Ready {
        archive: archive_name,
        identity,
        address,
        url: format!("{scheme}://{address}"),
        tls: tls.is_some(),
        verify: options.verify,
        repositories: views.catalog.names(),
    };
    Ok(Server {
        listener,
        tls,
        content: Arc::new(content),
        catalog: views.catalog,
        ready,
        warnings,
        readers: options.workers.max(4),
    })
}

/// The check before serving (SV-3): everything `verify` checks (eager), or the structure and
/// graph with every manifest read and checked (lazy). Any failure refuses to serve.
fn check(
    path: &Path,
    options: &ServeOptions,
    reporter: &dyn Reporter,
) -> Result<(LayoutTarSource, Graph, Vec<String>), ServeError> {
    let archive_name = path.display().to_string();
    let integrity = |failures: Vec<String>| ServeError::Integrity { archive: archive_name.clone(), failures };
    match options.verify {
        VerifyMode::Eager => {
            let verify_options = verify::VerifyOptions { workers: options.workers, volume_digests: false };
            let (mut report, checked) = verify::check_archive(path, &verify_options, reporter)?;
            if let Some(expected) = &options.identity {
                report.expect_identity(expected);
            }
            match checked {
                Some((super::archive::Archive::Layout(archive), graph)) if report.ok => {
                    Ok((archive, graph, report.warnings))
                }
                Some((super::archive::Archive::Imgpkg(_), _)) if report.ok => {
                    Err(ServeError::Imgpkg { archive: archive_name.clone() })
                }
                _ => Err(integrity(report.failures)),
            }
        }
        VerifyMode::Lazy => {
            let archive = match LayoutTarSource::open(path) {
                Ok(archive) => archive,
                Err(err) if err.is_integrity() || matches!(err, StoreError::Invalid { .. }) => {
                    return Err(integrity(vec![err.to_string()]));
                }
                Err(err) => return Err(err.into()),
            };
            let mut failures = BTreeMap::new();
            let mut warnings = Vec::new();
            if let Some(expected) = &options.identity {
                if let Some(mismatch) = verify::identity_mismatch(Some(&sha256_digest(archive.index_bytes())), expected)
                {
                    failures.insert("identity".to_string(), mismatch);
                }
            }
            let stored = archive.blob_entries().map(|(digest, entry)| (digest, entry.size)).collect();
            let unhashed = Unhashed {
                index: archive.index(),
                index_bytes: archive.index_bytes(),
                deviations: archive.deviations(),
                trailer: archive.trailer(),
                imgpkg: false,
            };
            let graph = verify::check_graph(&archive, unhashed, &stored, options.workers, &mut failures, &mut warnings);
            if !failures.is_empty() {
                return Err(integrity(failures.into_values().collect()));
            }
            Ok((archive, graph, warnings))
        }
    }
}

/// Reads the certificate chain and key (PEM) into a TLS acceptor (rustls with ring, HTTP/1.1).
fn load_tls(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| ServeError::Tls(format!("reading the certificate {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("{} holds no PEM certificate", files.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ServeError::Tls(format!("reading the key {}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ServeError::Tls(format!(
                "the key {} does not go with the certificate {}: {e}",
                files.key.display(),
                files.cert.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
