//! Writing into one repository (distribution-spec "push"): blobs skipped when present (HEAD),
//! mounted from another repository of the same registry when one is known to hold them,
//! otherwise uploaded streamed (one PUT with Content-Length, or PATCH chunks when configured
//! or when the registry refuses a large PUT); manifests by digest, then tags.
//!
//! A small blob can instead be asked for by opening its upload with a mount from the repository
//! itself ([`RegistrySink::probe_blob`], spec/cli.md "import" IM-3): `201` says the repository
//! holds it, `202` opens the session its upload then uses ([`RegistrySink::put_blob_in`]), so
//! the question costs no request of its own.
//!
//! An upload session the registry has forgotten (`BLOB_UPLOAD_UNKNOWN`, `BLOB_UPLOAD_INVALID`,
//! after a restart) fails with an error the retry policy classifies as "restart the unit"
//! (RF-2): the engine opens the blob again and this sink starts a new session with a new POST.
//!
//! An upload `Location` may name another host (registries backed by object storage do): it is
//! followed, without the registry's credentials, which the client sends only to the registry's
//! own origin (spec/cli.md "Registry flags"; issue 12 item 4).

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ureq::Body;
use ureq::http::{Method, Response};

use super::client::{Operation, RegistryClient, RequestBody};
use super::error::{RegistryError, RegistryErrorKind};
use super::origin::{percent_encode, resolve};
use crate::model::{Descriptor, Digest, RawManifest, Repository};
use crate::store::{BlobReader, Plan, Sink, StoreError};

/// Default chunk for chunked uploads when the registry needs them.
pub const DEFAULT_CHUNK: u64 = 8 * 1024 * 1024;

/// The largest blob asked for by opening its upload (IM-3): a registry that ignores `mount`
/// answers `202` even for a blob it holds, which is then sent again; below this size sending
/// costs about one request, above it a `HEAD` is cheaper than the risk.
pub const UPLOAD_PROBE_MAX: u64 = 256 * 1024;

/// What asking the repository for a blob found ([`RegistrySink::probe_blob`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobProbe {
    Present,
    /// Missing; `upload` is the `Location` of the session the question opened, for
    /// [`RegistrySink::put_blob_in`] (or [`RegistrySink::cancel_upload`] if it is not sent).
    Missing {
        upload: Option<String>,
    },
}

/// How a mount attempt ended.
enum Mount {
    Mounted,
    UploadAt(String),
    NotTried,
}

/// Pushes into `repository`.
pub struct RegistrySink {
    client: Arc<RegistryClient>,
    repository: Repository,
    name: String,
    /// Where in the same registry each blob can be mounted from.
    mount_sources: HashMap<Digest, String>,
    /// Tags to point at manifests once everything is in place.
    tags: Vec<(String, RawManifest)>,
    /// Set after a registry refused a monolithic upload as too large.
    chunked: AtomicBool,
    /// Set after a registry answered a mount from the repository itself with an error: blobs
    /// are asked for with `HEAD` from then on (IM-3).
    upload_probe_refused: AtomicBool,
}

impl RegistrySink {
    pub fn new(client: Arc<RegistryClient>, repository: Repository) -> Self {
        let chunked = client.options().chunk_size.is_some();
        RegistrySink {
            name: repository.to_string(),
            client,
            repository,
            mount_sources: HashMap::new(),
            tags: Vec::new(),
            chunked: AtomicBool::new(chunked),
            upload_probe_refused: AtomicBool::new(false),
        }
    }

    /// Blobs will be mounted from these repositories (paths in the same registry, by digest)
    /// instead of uploaded; a blob the registry cannot mount is uploaded as usual.
    pub fn mount_from(&mut self, repositories: HashMap<Digest, String>) {
        self.mount_sources = repositories;
    }

    /// Tags `manifest` as `tag` in [`Sink::finish`], after every manifest is pushed.
    /// Points `tag` at `manifest`, which is already in the repository (a `PUT` by tag), now;
    /// for a caller that pushes many tags at once rather than in [`Sink::finish`].
    pub fn put_tag(&self, tag: &str, manifest: &RawManifest) -> Result<(), StoreError> {
        put_manifest_at(self, manifest, tag)
    }

    pub fn add_tag(&mut self, tag: String, manifest: RawManifest) {
        self.tags.push((tag, manifest));
    }

    fn operation(&self, what: String, extra_scopes: &[String]) -> Operation {
        let mut scopes = vec![format!("repository:{}:pull,push", self.repository.path)];
        scopes.extend(extra_scopes.iter().cloned());
        Operation { registry: self.repository.registry.clone(), repository: self.repository.path.clone(), what, scopes }
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.client.base_url(&self.repository.registry), self.repository.path)
    }

    /// Turns the `Location` header of the answer to a request to `request_url` into a URL,
    /// resolved against that request (a relative Location from a storage host stays there).
    fn location(op: &Operation, request_url: &str, response: &Response<Body>) -> Result<String, RegistryError> {
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| op.error(RegistryErrorKind::Protocol("the upload answer has no Location".into())))?;
        resolve(request_url, location)
            .ok_or_else(|| op.error(RegistryErrorKind::Protocol("the upload answer's Location is not a URL".into())))
    }

    /// Tries to mount `digest` from the repository known to hold it (distribution-spec
    /// "mounting a blob from another repository").
    fn try_mount(&self, digest: &Digest) -> Result<Mount, RegistryError> {
        let Some(from) = self.mount_sources.get(digest) else { return Ok(Mount::NotTried) };
        if *from == self.repository.path {
            return Ok(Mount::NotTried);
        }
        let op = self.operation(format!("mounting blob {digest} from {from}"), &[format!("repository:{from}:pull")]);
        let url = self.url(&format!("blobs/uploads/?mount={digest}&from={}", percent_encode(from)));
        let response = self.client.send(&op, Method::POST, &url, &[], RequestBody::Empty, false)?;
        if response.status() == 201 {
            return Ok(Mount::Mounted);
        }
        // 202: the registry could not mount and opened an ordinary upload instead.
        Self::location(&op, &url, &response).map(Mount::UploadAt)
    }

    /// Asks whether the repository holds `descriptor` in one request (IM-3): a small blob by
    /// opening its upload with a mount from the repository itself, so that a missing blob's
    /// question is also its upload's first request; a large one (or any, once the registry
    /// refused such a mount) with `HEAD`.
    pub fn probe_blob(&self, descriptor: &Descriptor) -> Result<BlobProbe, StoreError> {
        if descriptor.size > UPLOAD_PROBE_MAX || self.upload_probe_refused.load(Ordering::Relaxed) {
            return self.has_blob(descriptor).map(|present| match present {
                true => BlobProbe::Present,
                false => BlobProbe::Missing { upload: None },
            });
        }
        let digest = &descriptor.digest;
        // `from` is this repository: the token scope already asked (pull,push here) covers it.
        let op = self.operation(format!("asking for blob {digest} by opening its upload"), &[]);
        let from = percent_encode(&self.repository.path);
        let url = self.url(&format!("blobs/uploads/?mount={digest}&from={from}"));
        match self.client.send(&op, Method::POST, &url, &[], RequestBody::Empty, false) {
            Ok(response) if response.status() == 201 => Ok(BlobProbe::Present),
            Ok(response) => {
                let upload = Self::location(&op, &url, &response).map_err(StoreError::from)?;
                Ok(BlobProbe::Missing { upload: Some(upload) })
            }
            // A registry that will not open uploads this way (or not with a mount) still
            // answers HEAD: ask that way, for this blob and every later one.
            Err(err) if err.status().is_some() && !err.is_transient() => {
                self.upload_probe_refused.store(true, Ordering::Relaxed);
                self.probe_blob(descriptor)
            }
            Err(err) => Err(StoreError::from(err)),
        }
    }

    /// Cancels an upload session opened by [`RegistrySink::probe_blob`] and not used (best
    /// effort: a registry also expires forgotten sessions).
    pub fn cancel_upload(&self, location: &str) {
        let op = self.operation("cancelling an unused upload".into(), &[]);
        let _ = self.client.send(&op, Method::DELETE, location, &[], RequestBody::Empty, true);
    }

    /// [`Sink::put_blob`] into the session at `upload` (opened by [`RegistrySink::probe_blob`])
    /// instead of a new one.
    pub fn put_blob_in(
        &self,
        descriptor: &Descriptor,
        reader: &mut BlobReader<'_>,
        upload: String,
    ) -> Result<(), StoreError> {
        self.upload(descriptor, reader, Some(upload))
    }

    fn upload(
        &self,
        descriptor: &Descriptor,
        reader: &mut BlobReader<'_>,
        session: Option<String>,
    ) -> Result<(), StoreError> {
        let op = self.operation(format!("uploading blob {}", descriptor.digest), &[]);
        let location = match session {
            Some(location) => location,
            None => self.start_upload(&op).map_err(StoreError::from)?,
        };
        if self.chunked.load(Ordering::Relaxed) {
            self.upload_chunked(&op, &location, descriptor, reader)
        } else {
            self.upload_monolithic(&op, &location, descriptor, reader)
        }
    }

    fn start_upload(&self, op: &Operation) -> Result<String, RegistryError> {
        let url = self.url("blobs/uploads/");
        let response = self.client.send(op, Method::POST, &url, &[], RequestBody::Empty, false)?;
        Self::location(op, &url, &response)
    }

    fn with_digest(location: &str, digest: &Digest) -> String {
        let separator = if location.contains('?') { '&' } else { '?' };
        format!("{location}{separator}digest={}", percent_encode(&digest.to_string()))
    }

    fn upload_monolithic(
        &self,
        op: &Operation,
        location: &str,
        descriptor: &Descriptor,
        reader: &mut BlobReader<'_>,
    ) -> Result<(), StoreError> {
        let url = Self::with_digest(location, &descriptor.digest);
        let headers = [("Content-Type", "application/octet-stream".to_string())];
        let result =
            self.client.send(op, Method::PUT, &url, &headers, RequestBody::Stream(reader, descriptor.size), false);
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.status() == Some(413) => {
                // Too large for one request: switch to chunks; the engine starts the upload again.
                self.chunked.store(true, Ordering::Relaxed);
                let RegistryErrorKind::Status { code, message, .. } = err.kind else { unreachable!("a status error") };
                Err(StoreError::from(RegistryError {
                    kind: RegistryErrorKind::TooLargeForOneRequest { code, message },
                    ..err
                }))
            }
            // The body is the blob itself: if its bytes failed verification, that is the error.
            Err(err) => Err(reader.verification_failure().map_or(StoreError::from(err), StoreError::Verify)),
        }
    }

    fn upload_chunked(
        &self,
        op: &Operation,
        location: &str,
        descriptor: &Descriptor,
        reader: &mut BlobReader<'_>,
    ) -> Result<(), StoreError> {
        let chunk = self.client.options().chunk_size.unwrap_or(DEFAULT_CHUNK).max(1);
        let mut location = location.to_string();
        let mut offset = 0u64;
        let mut buffer = Vec::with_capacity(chunk.min(descriptor.size.max(1)) as usize);
        while offset < descriptor.size {
            let length = chunk.min(descriptor.size - offset);
            buffer.clear();
            (&mut *reader)
                .take(length)
                .read_to_end(&mut buffer)
                .map_err(|e| StoreError::io(format!("reading blob {} for upload", descriptor.digest), e))?;
            let headers = [
                ("Content-Type", "application/octet-stream".to_string()),
                ("Content-Range", format!("{offset}-{}", offset + buffer.len() as u64 - 1)),
            ];
            let response = self
                .client
                .send(op, Method::PATCH, &location, &headers, RequestBody::Bytes(&buffer), false)
                .map_err(StoreError::from)?;
            location = Self::location(op, &location, &response).map_err(StoreError::from)?;
            offset += buffer.len() as u64;
        }
        // Reading to the end is what verifies the blob before it is committed.
        let mut rest = Vec::new();
        reader
            .read_to_end(&mut rest)
            .map_err(|e| StoreError::io(format!("verifying blob {}", descriptor.digest), e))?;
        let url = Self::with_digest(&location, &descriptor.digest);
        self.client.send(op, Method::PUT, &url, &[], RequestBody::Empty, false).map_err(StoreError::from)?;
        Ok(())
    }
}

impl Sink for RegistrySink {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self, _plan: &Plan) -> Result<(), StoreError> {
        Ok(())
    }

    fn has_blob(&self, descriptor: &Descriptor) -> Result<bool, StoreError> {
        let op = self.operation(format!("checking blob {}", descriptor.digest), &[]);
        let url = self.url(&format!("blobs/{}", descriptor.digest));
        let response =
            self.client.send(&op, Method::HEAD, &url, &[], RequestBody::Empty, true).map_err(StoreError::from)?;
        Ok(response.status() != 404)
    }

    fn link_blob(&self, descriptor: &Descriptor) -> Result<bool, StoreError> {
        match self.try_mount(&descriptor.digest).map_err(StoreError::from)? {
            Mount::Mounted => Ok(true),
            Mount::NotTried => Ok(false),
            Mount::UploadAt(location) => {
                // The registry opened an upload instead; cancel it (best effort) and let
                // put_blob upload the bytes.
                self.cancel_upload(&location);
                Ok(false)
            }
        }
    }

    fn put_blob(&self, descriptor: &Descriptor, reader: &mut BlobReader<'_>) -> Result<(), StoreError> {
        self.upload(descriptor, reader, None)
    }

    fn takes_manifests_concurrently(&self) -> bool {
        true
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<(), StoreError> {
        put_manifest_at(self, manifest, &manifest.digest().to_string())
    }

    fn finish(&mut self, _plan: &Plan) -> Result<(), StoreError> {
        for (tag, manifest) in &self.tags {
            put_manifest_at(self, manifest, tag)?;
        }
        Ok(())
    }
}

/// PUTs a manifest's exact bytes under a digest or a tag, and checks the digest the registry
/// reports back.
fn put_manifest_at(sink: &RegistrySink, manifest: &RawManifest, reference: &str) -> Result<(), StoreError> {
    let op = sink.operation(format!("pushing manifest {} as {reference}", manifest.digest()), &[]);
    let headers = [("Content-Type", manifest.media_type().to_string())];
    let url = sink.url(&format!("manifests/{reference}"));
    let response = sink
        .client
        .send(&op, Method::PUT, &url, &headers, RequestBody::Bytes(manifest.bytes()), false)
        .map_err(StoreError::from)?;
    let reported = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(reported) = reported.filter(|r| *r != manifest.digest().to_string()) {
        return Err(StoreError::from(op.error(RegistryErrorKind::Protocol(format!(
            "the registry stored the manifest as {reported}, not {}",
            manifest.digest()
        )))));
    }
    Ok(())
}
