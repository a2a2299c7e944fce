//! The plan of a transfer: everything that will be written, known before any blob is read.

use crate::model::layout::LayoutIndex;
use crate::model::{Descriptor, RawManifest};

/// What a blob is to the images that use it; decides its place in an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BlobRole {
    Config,
    Layer,
}

/// One config or layer to carry, once, whatever the number of images sharing it.
#[derive(Debug, Clone)]
pub struct PlannedBlob {
    pub descriptor: Descriptor,
    pub role: BlobRole,
}

/// The deduplicated content of a transfer.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The top-level artifacts and their annotations (an archive's `index.json`).
    pub index: LayoutIndex,
    /// Every manifest and index, children before parents, each once.
    pub manifests: Vec<RawManifest>,
    /// Every config and layer, each once.
    pub blobs: Vec<PlannedBlob>,
    /// Non-distributable layers left out of the transfer.
    pub omitted: Vec<Descriptor>,
}

impl Plan {
    /// Total bytes of configs and layers. The walk a plan is built from refuses sizes that do
    /// not add up within the int64 (spec/archive.md AR-R13), so this is exact for any plan of a
    /// graph without problems; it saturates rather than wrap for any other.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|blob| blob.descriptor.size).fold(0, u64::saturating_add)
    }

    /// Total bytes of manifests (each at most 4 MiB; saturating like [`Plan::blob_bytes`]).
    pub fn manifest_bytes(&self) -> u64 {
        self.manifests.iter().map(|manifest| manifest.bytes().len() as u64).fold(0, u64::saturating_add)
    }
}
