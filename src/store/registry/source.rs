//! Reading from registries (distribution-spec "pull"): resolving tags and digests, fetching
//! manifests (capped, checked against the digest asked for and `Docker-Content-Digest`), and
//! streaming blobs through the verifying reader, resuming an interrupted body with `Range`.
//!
//! A descriptor alone does not say which repository holds a blob, so the source remembers
//! where it found each manifest and files its children under the same repository: the engine
//! always fetches parents before children.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use ureq::http::{Method, Response};
use ureq::{Body, BodyReader};

use super::client::{Operation, RegistryClient, RequestBody};
use super::error::{RegistryError, RegistryErrorKind};
use crate::model::manifest::MAX_MANIFEST_BYTES;
use crate::model::media::MANIFEST_ACCEPT;
use crate::model::{Descriptor, Digest, RawManifest, Reference, Repository};
use crate::store::read_ahead::ReadAhead;
use crate::store::{BlobReader, KEPT_BLOB_MAX, Source, StoreError};
use crate::verify::{Chunk, ChunkSource, VerifyError};

use crate::verify::VerifyingReader;

/// Chunks a blob body is received ahead of the consumer (of 1 MiB each), beside the one being
/// received, the one hashed and the one written: four buffers per blob in flight. A second
/// chunk ahead bought no speed (issue 18: the bench set and one 2 GiB layer took the same time
/// in interleaved rounds) and cost four workers 4 MiB.
const READ_AHEAD_DEPTH: usize = 1;

/// Small blobs read whole (configs the walk reads to find bundles) are kept, up to
/// [`KEPT_BLOB_MAX`] each and this in all, until the transfer asks for them: one GET each, not
/// two.
const KEPT_TOTAL: usize = 4 << 20;

/// Reads images from any registry the references name.
pub struct RegistrySource {
    client: Arc<RegistryClient>,
    locations: Mutex<HashMap<Digest, Repository>>,
    /// Small blobs already read and verified, kept for the one later read of each.
    kept: Mutex<KeptBlobs>,
    /// Manifests a caller read before the walk (a root it looked at) and handed back with
    /// [`RegistrySource::keep_manifest`], for the walk's one read of each.
    kept_manifests: Mutex<HashMap<Digest, RawManifest>>,
    /// A relocated bundle's repository: references by digest are looked up there, never at
    /// the origin they name (imgpkg's rule for a relocated bundle).
    relocated_to: Option<Repository>,
}

impl RegistrySource {
    pub fn new(client: Arc<RegistryClient>) -> Self {
        RegistrySource {
            client,
            locations: Mutex::new(HashMap::new()),
            kept: Mutex::default(),
            kept_manifests: Mutex::default(),
            relocated_to: None,
        }
    }

    /// A source that resolves every reference carrying a digest in `repository` instead of
    /// where it names (a bundle relocated there with its images).
    pub fn relocated_to(client: Arc<RegistryClient>, repository: Repository) -> Self {
        RegistrySource { relocated_to: Some(repository), ..RegistrySource::new(client) }
    }

    /// Where `reference` is looked up: itself, or its digest in the relocation repository.
    pub fn locate(&self, reference: &Reference) -> Reference {
        match (&self.relocated_to, reference.digest) {
            (Some(repository), Some(digest)) => repository.at_digest(digest),
            _ => reference.clone(),
        }
    }

    /// Keeps `manifest` (read through this source, so verified) for the next
    /// [`Source::manifest`] of its digest, which then makes no request.
    pub fn keep_manifest(&self, manifest: RawManifest) {
        self.kept_manifests.lock().expect("kept manifests lock").insert(manifest.digest(), manifest);
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Records that `repository` holds `digest` (the walk does this itself from manifests;
    /// callers that fetch a bare blob say where it is).
    pub fn remember(&self, digest: Digest, repository: &Repository) {
        self.locations.lock().expect("locations lock").entry(digest).or_insert_with(|| repository.clone());
    }

    fn location(&self, digest: &Digest) -> Result<Repository, StoreError> {
        self.locations.lock().expect("locations lock").get(digest).cloned().ok_or_else(|| StoreError::Invalid {
            store: "registry".into(),
            reason: format!("no repository is known to hold {digest}; resolve its parent first"),
        })
    }

    fn operation(&self, repository: &Repository, what: String) -> Operation {
        Operation {
            registry: repository.registry.clone(),
            repository: repository.path.clone(),
            what,
            scopes: vec![format!("repository:{}:pull", repository.path)],
        }
    }

    fn manifest_url(&self, repository: &Repository, reference: &str) -> String {
        format!("{}/v2/{}/manifests/{reference}", self.client.base_url(&repository.registry), repository.path)
    }
}

fn not_found(err: RegistryError, what: String) -> StoreError {
    if err.is_not_found() {
        StoreError::NotFound { store: format!("{}/{}", err.registry, err.repository), what }
    } else {
        StoreError::from(err)
    }
}

fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
}

/// The body of a manifest answer (at most [`MAX_MANIFEST_BYTES`]), parsed with the media type
/// `declared` for it; errors name `repository`.
pub(super) fn read_manifest(
    response: &mut Response<Body>,
    declared: Option<&str>,
    repository: &Repository,
    op: &Operation,
) -> Result<RawManifest, StoreError> {
    let bytes = super::answer::read_whole(response, MAX_MANIFEST_BYTES)
        .map_err(|e| StoreError::from(op.error(super::agent::transport_kind(e))))?;
    RawManifest::parse(bytes, declared).map_err(|source| StoreError::Manifest { store: repository.to_string(), source })
}

impl Source for RegistrySource {
    fn name(&self) -> &str {
        "registry"
    }

    /// HEAD with every manifest type accepted; a GET when the registry gives no digest.
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        let located = self.locate(reference);
        let reference = &located;
        let repository = &reference.repository;
        let target = match (&reference.digest, &reference.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        };
        let what = if reference.digest.is_some() { "manifest" } else { "tag" };
        let op = self.operation(repository, format!("resolving {what} {target}"));
        let accept = MANIFEST_ACCEPT.join(", ");
        let url = self.manifest_url(repository, &target);
        let response = self
            .client
            .send(&op, Method::HEAD, &url, &[("Accept", accept.clone())], RequestBody::Empty, true)
            .map_err(StoreError::from)?;
        if response.status() == 404 {
            let what = match (&reference.digest, &reference.tag) {
                (Some(digest), _) => format!("manifest {digest}"),
                (None, tag) => format!("tag {}", tag.as_deref().unwrap_or("latest")),
            };
            return Err(StoreError::NotFound { store: repository.to_string(), what });
        }
        let digest = header(&response, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok());
        let media_type = header(&response, "content-type");
        let size = header(&response, "content-length").and_then(|s| s.parse::<u64>().ok());
        let descriptor = match (digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) if reference.digest.is_none_or(|d| d == digest) => {
                Descriptor::new(&media_type, digest, size)
            }
            _ => {
                let manifest = self.fetch_manifest(repository, &target, reference.digest, &op)?;
                manifest.descriptor()
            }
        };
        self.remember(descriptor.digest, repository);
        Ok(descriptor)
    }

    /// A reference by digest: one GET of the manifest (checked against the digest), not a
    /// HEAD and then a GET. A tag is resolved as [`Source::resolve`] resolves it.
    fn resolve_with_manifest(&self, reference: &Reference) -> Result<(Descriptor, Option<RawManifest>), StoreError> {
        let located = self.locate(reference);
        let Some(digest) = located.digest else { return Ok((self.resolve(reference)?, None)) };
        let manifest = self.manifest_by_digest(&located.repository, digest)?;
        self.remember(digest, &located.repository);
        Ok((manifest.descriptor(), Some(manifest)))
    }

    fn referrer_lookup(&self) -> Option<&dyn crate::store::referrers::ReferrerLookup> {
        Some(self)
    }

    fn manifest(&self, descriptor: &Descriptor) -> Result<RawManifest, StoreError> {
        if let Some(manifest) = self.kept_manifests.lock().expect("kept manifests lock").remove(&descriptor.digest) {
            return Ok(manifest);
        }
        self.manifest_by_digest(&self.location(&descriptor.digest)?, descriptor.digest)
    }

    /// Read once and kept (when small) for the transfer's read of the same blob.
    fn small_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, StoreError> {
        if let Some(bytes) = self.kept.lock().expect("kept blobs lock").blobs.get(&descriptor.digest) {
            return Ok(bytes.clone());
        }
        let bytes = crate::store::read_small_blob(self, descriptor)?;
        if descriptor.size <= KEPT_BLOB_MAX {
            self.kept.lock().expect("kept blobs lock").keep(descriptor.digest, &bytes);
        }
        Ok(bytes)
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError> {
        let kept = self.kept.lock().expect("kept blobs lock").take(&descriptor.digest);
        if let Some(bytes) = kept {
            // Verified when it was read; verified again as it is handed on, as one chunk of its
            // own size (a reader of its own would take a read-ahead-sized buffer per blob).
            let origin = format!("{} (read earlier)", self.name());
            let chunks = KeptChunk(Some(Chunk::owned(&bytes)));
            return Ok(VerifyingReader::from_chunks(Box::new(chunks), descriptor.digest, descriptor.size, origin));
        }
        let repository = self.location(&descriptor.digest)?;
        let op = self.operation(&repository, format!("fetching blob {}", descriptor.digest));
        let url = format!(
            "{}/v2/{}/blobs/{}",
            self.client.base_url(&repository.registry),
            repository.path,
            descriptor.digest
        );
        let origin = format!("{}/{}", repository.registry, repository.path);
        let body = ResumableBody::open(Arc::clone(&self.client), op, url, descriptor, origin.clone())?;
        if descriptor.size <= KEPT_BLOB_MAX {
            // A config or small layer: read by the consumer itself into one buffer its size (a
            // thread and a 1 MiB buffer of its own would cost more than the read).
            let reader = VerifyingReader::new(
                Box::new(body) as Box<dyn Read + Send>,
                descriptor.digest,
                descriptor.size,
                origin,
            );
            return Ok(reader.with_chunks(1, descriptor.size.max(1) as usize));
        }
        // Network reads run ahead on their own thread, straight into the buffers the consumer
        // then hashes and writes (no copy between them), while it hashes and writes.
        let body = ReadAhead::new(body, READ_AHEAD_DEPTH);
        Ok(VerifyingReader::from_chunks(Box::new(body), descriptor.digest, descriptor.size, origin))
    }
}

impl RegistrySource {
    /// GETs manifest `digest` in `repository` (checked against the digest) and remembers that
    /// its children are there.
    fn manifest_by_digest(&self, repository: &Repository, digest: Digest) -> Result<RawManifest, StoreError> {
        let op = self.operation(repository, format!("fetching manifest {digest}"));
        let manifest = self.fetch_manifest(repository, &digest.to_string(), Some(digest), &op)?;
        for child in manifest.children() {
            self.remember(child.digest, repository);
        }
        Ok(manifest)
    }

    /// GETs a manifest (at most 4 MiB), checks it against the digest asked for and the
    /// registry's `Docker-Content-Digest`, and parses it with the served media type.
    fn fetch_manifest(
        &self,
        repository: &Repository,
        target: &str,
        expected: Option<Digest>,
        op: &Operation,
    ) -> Result<RawManifest, StoreError> {
        let url = self.manifest_url(repository, target);
        let accept = MANIFEST_ACCEPT.join(", ");
        let mut response = self
            .client
            .send(op, Method::GET, &url, &[("Accept", accept)], RequestBody::Empty, true)
            .map_err(StoreError::from)?;
        if response.status() == 404 {
            return Err(StoreError::NotFound { store: repository.to_string(), what: format!("manifest {target}") });
        }
        let media_type = header(&response, "content-type");
        let served_digest = header(&response, "docker-content-digest");
        let manifest = read_manifest(&mut response, media_type.as_deref(), repository, op)?;
        if let Some(expected) = expected {
            if manifest.digest() != expected {
                return Err(StoreError::Verify(crate::verify::VerifyError::Digest {
                    origin: repository.to_string(),
                    expected,
                    actual: manifest.digest(),
                }));
            }
        }
        if let Some(served) = served_digest.and_then(|d| d.parse::<Digest>().ok()) {
            if served != manifest.digest() {
                return Err(StoreError::from(op.error(RegistryErrorKind::Protocol(format!(
                    "the registry says the manifest is {served} but its bytes hash to {}",
                    manifest.digest()
                )))));
            }
        }
        Ok(manifest)
    }
}

/// A blob body that, when the connection breaks part-way, asks for the rest with `Range` and
/// carries on. The first request and every resume share one budget of attempts (RF-2), and the
/// error that ends the body says how many were spent, so the engine does not add its own on top.
/// A registry that answers a `Range` request whole cannot resume: that is its own error
/// ([`RegistryErrorKind::RangeIgnored`]), and the engine fetches the blob again whole if attempts
/// remain. A body of another length than the descriptor's, announced by `Content-Length` or
/// ended by the registry's own chunked framing, is an integrity failure (RF-3), not retried.
struct ResumableBody {
    client: Arc<RegistryClient>,
    op: Operation,
    url: String,
    digest: Digest,
    /// `registry/repository`, for verification errors.
    origin: String,
    size: u64,
    position: u64,
    attempts: u32,
    reader: Option<BodyReader<'static>>,
    /// The current answer has no length and no chunked framing: it ends when the connection
    /// closes, so an early end may be a broken connection.
    close_delimited: bool,
}

/// Why a body request failed: the registry, or a length that cannot be the blob's.
enum BodyFailure {
    Registry(RegistryError),
    Length(VerifyError),
}

impl BodyFailure {
    fn into_store(self, what: String) -> StoreError {
        match self {
            BodyFailure::Registry(err) => not_found(err, what),
            BodyFailure::Length(err) => StoreError::Verify(err),
        }
    }

    fn into_io(self) -> io::Error {
        match self {
            BodyFailure::Registry(err) => io::Error::other(err),
            BodyFailure::Length(err) => io::Error::new(io::ErrorKind::InvalidData, err),
        }
    }
}

impl ResumableBody {
    fn open(
        client: Arc<RegistryClient>,
        op: Operation,
        url: String,
        descriptor: &Descriptor,
        origin: String,
    ) -> Result<Self, StoreError> {
        let mut body = ResumableBody {
            client,
            op,
            url,
            digest: descriptor.digest,
            origin,
            size: descriptor.size,
            position: 0,
            attempts: 0,
            reader: None,
            close_delimited: false,
        };
        body.reader = Some(body.request(None).map_err(|e| e.into_store(format!("blob {}", body.url)))?);
        Ok(body)
    }

    fn request(&mut self, from: Option<u64>) -> Result<BodyReader<'static>, BodyFailure> {
        let headers: Vec<(&str, String)> =
            from.map(|offset| ("Range", format!("bytes={offset}-"))).into_iter().collect();
        let response = self
            .client
            .get_body_within(&self.op, &self.url, &headers, &mut self.attempts)
            .map_err(BodyFailure::Registry)?;
        let status = response.status().as_u16();
        if let Some(offset) = from.filter(|_| status != 206) {
            let error = self.op.error(RegistryErrorKind::RangeIgnored { status, offset });
            return Err(BodyFailure::Registry(RegistryError { attempts: self.attempts, ..error }));
        }
        let length = header(&response, "content-length").and_then(|s| s.parse::<u64>().ok());
        let start = from.unwrap_or(0);
        if let Some(length) = length.filter(|&l| l != self.size - start) {
            return Err(BodyFailure::Length(VerifyError::Size {
                origin: self.origin.clone(),
                digest: self.digest,
                expected: self.size,
                actual: start + length,
                hint: " (the registry serves a blob of another length than its descriptor says)",
            }));
        }
        let chunked = header(&response, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        self.close_delimited = length.is_none() && !chunked;
        Ok(response.into_body().into_reader())
    }
}

impl Read for ResumableBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let reader = self.reader.as_mut().expect("a reader is open between reads");
            let interruption = match reader.read(buf) {
                Ok(n) if n > 0 || buf.is_empty() || self.position >= self.size => {
                    self.position += n as u64;
                    return Ok(n);
                }
                // The registry ended the body itself (chunked framing): the blob it serves is
                // short, which the verifying reader reports as an integrity failure (RF-3).
                Ok(_) if !self.close_delimited => return Ok(0),
                Ok(_) => "the connection closed early".to_string(),
                Err(err) => err.to_string(),
            };
            let kind =
                RegistryErrorKind::Transport(format!("reading the body at byte {}: {interruption}", self.position));
            let error = RegistryError { attempts: self.attempts, ..self.op.error(kind) };
            let policy = self.client.retry_policy();
            if !policy.allows(self.attempts, error.verdict()) {
                return Err(io::Error::other(error));
            }
            if let Some(observer) = &self.client.options().on_retry {
                observer(&format!(
                    "resuming {} at byte {} of {} after: {interruption} (attempt {} of {})",
                    self.op.what,
                    self.position,
                    self.size,
                    self.attempts + 1,
                    policy.max_attempts()
                ));
            }
            std::thread::sleep(policy.delay(self.attempts, None));
            self.reader = Some(self.request(Some(self.position)).map_err(BodyFailure::into_io)?);
        }
    }
}

/// A kept blob handed on as its one chunk.
struct KeptChunk(Option<Chunk>);

impl ChunkSource for KeptChunk {
    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        Ok(self.0.take())
    }
}

/// Small blobs kept after a whole read, within [`KEPT_TOTAL`] bytes.
#[derive(Default)]
struct KeptBlobs {
    blobs: HashMap<Digest, Vec<u8>>,
    bytes: usize,
}

impl KeptBlobs {
    fn keep(&mut self, digest: Digest, bytes: &[u8]) {
        if self.bytes + bytes.len() <= KEPT_TOTAL && !self.blobs.contains_key(&digest) {
            self.bytes += bytes.len();
            self.blobs.insert(digest, bytes.to_vec());
        }
    }

    /// The blob, given up: a blob streamed is read once.
    fn take(&mut self, digest: &Digest) -> Option<Vec<u8>> {
        let bytes = self.blobs.remove(digest)?;
        self.bytes -= bytes.len();
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sha256_digest;

    #[test]
    fn kept_blobs_stay_within_their_bound_and_are_handed_on_once() {
        let mut kept = KeptBlobs::default();
        let (big, small) = (sha256_digest(b"big"), sha256_digest(b"small"));
        kept.keep(big, &vec![1; KEPT_TOTAL - 10]);
        kept.keep(small, &[2; 11]);
        assert!(kept.blobs.contains_key(&big) && !kept.blobs.contains_key(&small), "past the total: not kept");
        assert_eq!(kept.take(&big).map(|bytes| bytes.len()), Some(KEPT_TOTAL - 10));
        assert!(kept.take(&big).is_none(), "handed on once");
        assert_eq!(kept.bytes, 0);
    }

    #[test]
    fn a_kept_blob_is_handed_on_verified_in_a_buffer_of_its_own_size() {
        let bytes = vec![7u8; 1500];
        let chunks = KeptChunk(Some(Chunk::owned(&bytes)));
        let mut reader = VerifyingReader::from_chunks(Box::new(chunks), sha256_digest(&bytes), 1500, "kept");
        let mut chunk = reader.next_chunk().unwrap().expect("the blob");
        assert_eq!(chunk.len(), 1500);
        assert!(chunk.buffer_mut().len() <= 4096, "a page, not a read-ahead buffer per blob");
        assert!(reader.next_chunk().unwrap().is_none());
    }
}
