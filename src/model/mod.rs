//! The pure data model: digests, descriptors, manifests, references, media types, imgpkg lock
//! files, ferry's annotation keys and the key rule for OCI JSON (AR-R16). Nothing here performs I/O; every other layer builds on it.

pub mod annotations;
pub mod delta;
pub mod digest;
pub mod index_rules;
pub mod inventory;
pub mod json_keys;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod media;
pub mod platform;
pub mod reference;
pub mod referrers;
pub mod text;
pub mod volume_table;

pub use digest::{Digest, DigestError};
pub use manifest::{Descriptor, ImageIndex, ImageManifest, ManifestKind, Platform, RawManifest};
pub use reference::{Reference, Repository};

use sha2::{Digest as _, Sha256};

/// The sha256 digest of bytes already in memory (manifests, configs, small files).
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    Digest::from_bytes(Sha256::digest(bytes).into())
}
