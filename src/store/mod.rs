//! Stores: where images come from and go to. Each store implements [`Source`] and/or [`Sink`]
//! and knows nothing of the others; the engine moves bytes between any pair of them.
//!
//! A source hands out manifests already checked against their digest, and blobs only through a
//! [`VerifyingReader`], so nothing unverified ever leaves a source. A sink is told the whole
//! [`Plan`] before the first byte arrives (the archive sink lays out its file from it) and
//! publishes its result only in [`Sink::finish`].

pub mod imgpkg_tar;
pub mod layout_dir;
pub mod layout_tar;
pub mod memory;
pub mod overlay;
mod plan;
pub mod probe;
pub mod read_ahead;
pub mod referrers;
mod region;
pub mod registry;
pub mod tar;
pub mod user_file;
pub mod volumes;

use std::io::{self, Read};

pub use plan::{BlobRole, Plan, PlannedBlob};

use crate::model::layout::LayoutIndex;
use crate::model::manifest::{MAX_MANIFEST_BYTES, ManifestError};
use crate::model::{Descriptor, Digest, RawManifest, Reference};
use crate::verify::{VerifyError, VerifyingReader, verify_error};

/// A blob's bytes on their way out of a source, checked as they are read.
pub type BlobReader<'a> = VerifyingReader<Box<dyn Read + Send + 'a>>;

/// What went wrong in a store. Every variant names the store and the thing it was doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{store}: {what} not found")]
    NotFound { store: String, what: String },
    #[error("{store}: {reason}")]
    Invalid { store: String, reason: String },
    /// Content that breaks a rule of its format (a hostile or damaged bundle layer): an
    /// integrity failure, unlike [`StoreError::Invalid`].
    #[error("{store}: {reason}")]
    Rejected { store: String, reason: String },
    #[error("{store}: {source}")]
    Manifest { store: String, source: ManifestError },
    #[error(transparent)]
    Archive(#[from] layout_tar::ArchiveError),
    #[error(transparent)]
    Registry(Box<registry::RegistryError>),
    #[error(transparent)]
    ImgpkgTar(#[from] imgpkg_tar::ImgpkgTarError),
    /// A file that is not an archive ferry reads (a `docker save` archive, a compressed tar,
    /// no tar at all): the wrong input, not damage (spec/archive.md "Other archives ferry reads").
    #[error("{0}")]
    Foreign(#[source] probe::ForeignArchive),
}

impl StoreError {
    /// Wraps an I/O error with what was being done; a verification failure carried inside an
    /// `io::Error` (from a [`VerifyingReader`]) comes back out as [`StoreError::Verify`], and a
    /// registry failure in the middle of a body as [`StoreError::Registry`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        if let Some(mismatch) = verify_error(&source) {
            return StoreError::Verify(mismatch.clone());
        }
        match source.get_ref().and_then(|inner| inner.downcast_ref::<registry::RegistryError>()) {
            Some(remote) => StoreError::from(remote.clone()),
            None => StoreError::Io { context: context.into(), source },
        }
    }

    /// Whether the failure is about the content itself (tampering, corruption, a malformed
    /// archive) rather than the environment; such failures get their own exit code.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            StoreError::Verify(_)
                | StoreError::Manifest { .. }
                | StoreError::Archive(_)
                | StoreError::ImgpkgTar(_)
                | StoreError::Rejected { .. }
        )
    }

    /// Whether the input is a kind of file ferry does not read (a usage error, exit 2).
    pub fn is_foreign(&self) -> bool {
        matches!(self, StoreError::Foreign(_))
    }

    /// Whether trying again could help (network trouble); local stores never say so.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Registry(err) => err.is_transient(),
            _ => false,
        }
    }
}

impl From<registry::RegistryError> for StoreError {
    fn from(err: registry::RegistryError) -> Self {
        StoreError::Registry(Box::new(err))
    }
}

/// Where images come from.
pub trait Source: Sync {
    /// A short name for messages: the archive's path, the layout directory, the registry.
    fn name(&self) -> &str;

    /// The descriptor of the manifest a reference names. Layout stores resolve by digest only.
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError>;

    /// [`Source::resolve`], with the manifest itself where reading it costs no more than
    /// resolving: a registry answers a GET of a manifest named by digest in one request, where
    /// resolving and then fetching took two. A manifest given is checked as
    /// [`Source::manifest`] checks it.
    fn resolve_with_manifest(&self, reference: &Reference) -> Result<(Descriptor, Option<RawManifest>), StoreError> {
        Ok((self.resolve(reference)?, None))
    }

    /// A manifest or index, read whole (at most 4 MiB) and checked against its descriptor.
    fn manifest(&self, descriptor: &Descriptor) -> Result<RawManifest, StoreError> {
        let bytes = self.small_blob(descriptor)?;
        RawManifest::parse(bytes, Some(&descriptor.media_type))
            .map_err(|source| StoreError::Manifest { store: self.name().to_string(), source })
    }

    /// How to find the referrers of this store's manifests (signatures, attestations, SBOMs;
    /// spec/archive.md AR-RF1); stores that cannot hold any have none.
    fn referrer_lookup(&self) -> Option<&dyn referrers::ReferrerLookup> {
        None
    }

    /// Opens a blob for streaming through a verifying reader.
    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError>;

    /// Reads a small blob (a config or manifest) whole, verified; refuses anything over 4 MiB.
    /// A store may keep one of at most [`KEPT_BLOB_MAX`] bytes for a later read of it.
    fn small_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, StoreError> {
        read_small_blob(self, descriptor)
    }
}

/// Blobs up to this size that [`Source::small_blob`] read whole may be kept by the store for
/// the next read of the same blob (a registry does: the walk reads configs and bundle layers
/// the archive needs too), so readers that will need one again read it whole.
pub const KEPT_BLOB_MAX: u64 = 64 << 10;

/// [`Source::small_blob`] as every store reads one: through [`Source::blob`], whole, verified,
/// at most 4 MiB. For stores that add to it (a registry keeps what it read).
pub fn read_small_blob<S: Source + ?Sized>(source: &S, descriptor: &Descriptor) -> Result<Vec<u8>, StoreError> {
    if descriptor.size > MAX_MANIFEST_BYTES {
        return Err(StoreError::Manifest {
            store: source.name().to_string(),
            source: ManifestError::TooLarge { digest: descriptor.digest.to_string(), size: descriptor.size },
        });
    }
    let mut reader = source.blob(descriptor)?;
    let mut bytes = Vec::with_capacity(descriptor.size as usize);
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io(format!("{}: reading {}", source.name(), descriptor.digest), e))?;
    Ok(bytes)
}

/// Where images go.
pub trait Sink: Sync {
    fn name(&self) -> &str;

    /// Called once with the whole plan before any blob or manifest is written.
    fn prepare(&mut self, plan: &Plan) -> Result<(), StoreError>;

    /// Whether the sink already holds this blob intact (a resumed or repeated transfer).
    fn has_blob(&self, descriptor: &Descriptor) -> Result<bool, StoreError>;

    /// Takes the blob without its bytes when the sink can (a registry mounting it from another
    /// repository); `false` means it must be sent with [`Sink::put_blob`].
    fn link_blob(&self, _descriptor: &Descriptor) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Stores one blob, reading `reader` to its end (which is what verifies it). Called from
    /// several threads at once.
    fn put_blob(&self, descriptor: &Descriptor, reader: &mut BlobReader<'_>) -> Result<(), StoreError>;

    /// Stores a manifest; called only after every blob and manifest it points at is stored.
    /// Called from several threads at once when [`Sink::takes_manifests_concurrently`].
    fn put_manifest(&self, manifest: &RawManifest) -> Result<(), StoreError>;

    /// Whether manifests that do not point at one another may be stored at the same time (a
    /// registry: one request each). `false`, the default, stores them one at a time in the
    /// plan's order, which is what an archive's bytes depend on.
    fn takes_manifests_concurrently(&self) -> bool {
        false
    }

    /// Publishes the result (the archive's final name, a layout's `index.json`, tags).
    fn finish(&mut self, plan: &Plan) -> Result<(), StoreError>;
}

/// The digest a `blobs/sha256/<hex>` path names, if it is one.
pub fn digest_of_blob_path(path: &str) -> Option<Digest> {
    path.strip_prefix("blobs/sha256/").and_then(|hex| Digest::from_hex(hex).ok())
}

/// Finds a manifest by the digest of `reference` in a layout (archive or directory): its media
/// type comes from an `index.json` descriptor if one names it, else from the manifest's own
/// `mediaType`. `size_of` says how large the layout's blob of that digest is, if it has one.
pub(crate) fn resolve_in_layout(
    source: &dyn Source,
    index: &LayoutIndex,
    reference: &Reference,
    size_of: impl FnOnce(Digest) -> Result<Option<u64>, StoreError>,
) -> Result<Descriptor, StoreError> {
    let digest = reference.digest.ok_or_else(|| StoreError::Invalid {
        store: source.name().to_string(),
        reason: format!("{reference} names no digest; a layout is searched by digest"),
    })?;
    if let Some(listed) = index.manifests.iter().find(|d| d.digest == digest) {
        return Ok(Descriptor::new(&listed.media_type, digest, listed.size));
    }
    let size = size_of(digest)?
        .ok_or_else(|| StoreError::NotFound { store: source.name().to_string(), what: reference.to_string() })?;
    let probe = Descriptor::new("", digest, size);
    let bytes = source.small_blob(&probe)?;
    let manifest = RawManifest::parse(bytes, None)
        .map_err(|e| StoreError::Manifest { store: source.name().to_string(), source: e })?;
    Ok(manifest.descriptor())
}
