//! What of a stream is known, while it is still arriving, to be reachable from its `index.json`
//! (spec/cli.md "Streams"): the entries of `index.json`, and everything the manifests kept so far
//! point at, followed as the walk of `ferry verify` follows them (an index's children and a
//! subject are manifests; an image's config and layers are blobs). `import -` uploads a blob as
//! it streams past only when it is already known here as a config or layer, so no blob leaves
//! that the graph check at the end would call unreferenced. Bundle lock entries are not
//! followed: ferry lists every one in `index.json` (AR-3).

use std::collections::{HashMap, HashSet};

use crate::model::layout::LayoutIndex;
use crate::model::{Digest, ManifestKind, RawManifest, media};
use crate::ops::delta::is_delta_entry;

/// How a digest is reached from `index.json`, as far as the stream has told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// By nothing that has arrived (yet).
    Unknown,
    /// As a manifest: an `index.json` entry, an index's child, a subject.
    Manifest,
    /// As a blob: a config, a layer, a delta record (DL-3).
    Blob,
}

/// The digests reachable from `index.json` through the manifests kept so far.
#[derive(Debug, Default)]
pub struct Reachable {
    manifests: HashSet<Digest>,
    blobs: HashSet<Digest>,
    /// Manifests reached whose bytes have not arrived: expanded when they do.
    awaited: HashSet<Digest>,
}

impl Reachable {
    /// Starts from the entries of `index`; `kept` holds the blobs kept so far.
    pub fn new(index: &LayoutIndex, kept: &HashMap<Digest, Vec<u8>>) -> Self {
        let mut reachable = Reachable::default();
        let (records, artifacts): (Vec<_>, Vec<_>) = index.manifests.iter().partition(|d| is_delta_entry(d));
        reachable.blobs.extend(records.into_iter().map(|record| record.digest));
        reachable.reach_manifests(artifacts.into_iter().map(|artifact| artifact.digest).collect(), kept);
        reachable
    }

    /// A blob was kept (it is in `kept`): if it is a manifest already reached, what it points at
    /// is reached too.
    pub fn kept(&mut self, digest: Digest, kept: &HashMap<Digest, Vec<u8>>) {
        if self.awaited.remove(&digest) {
            let children = self.expand(&kept[&digest]);
            self.reach_manifests(children, kept);
        }
    }

    /// How `digest` is reached; a blob reached both ways is a blob (it may be uploaded).
    pub fn reach(&self, digest: &Digest) -> Reach {
        if self.blobs.contains(digest) {
            Reach::Blob
        } else if self.manifests.contains(digest) {
            Reach::Manifest
        } else {
            Reach::Unknown
        }
    }

    /// Reaches `pending` as manifests, expanding each one already kept (no recursion: a
    /// hostile graph may nest deeply, AR-R14; each manifest is expanded once).
    fn reach_manifests(&mut self, mut pending: Vec<Digest>, kept: &HashMap<Digest, Vec<u8>>) {
        while let Some(digest) = pending.pop() {
            if !self.manifests.insert(digest) {
                continue;
            }
            match kept.get(&digest) {
                Some(bytes) => pending.extend(self.expand(bytes)),
                None => {
                    self.awaited.insert(digest);
                }
            }
        }
    }

    /// Records the blobs a manifest points at and returns the manifests it points at. A manifest
    /// that does not parse reaches nothing (the walk at the end names what is wrong with it).
    fn expand(&mut self, bytes: &[u8]) -> Vec<Digest> {
        let Ok(manifest) = RawManifest::parse(bytes.to_vec(), None) else { return Vec::new() };
        let is_index = matches!(manifest.kind(), ManifestKind::Index(_));
        let mut manifests = Vec::new();
        for child in manifest.children() {
            if is_index || media::is_manifest_kind(&child.media_type) {
                manifests.push(child.digest);
            } else {
                self.blobs.insert(child.digest);
            }
        }
        manifests
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Descriptor, sha256_digest};

    fn json(value: serde_json::Value) -> (Digest, Vec<u8>) {
        let bytes = serde_json::to_vec(&value).unwrap();
        (sha256_digest(&bytes), bytes)
    }

    /// An index over an image, kept in either order: the image's config and layer are reached
    /// as blobs once both manifests have arrived, and not before; what nothing names is not.
    #[test]
    fn blobs_are_reached_through_manifests_kept_in_any_order() {
        let config = Descriptor::new(media::OCI_CONFIG, sha256_digest(b"{}"), 2);
        let layer = Descriptor::new(media::OCI_LAYER_GZIP, sha256_digest(b"layer"), 5);
        let (image, image_bytes) = json(serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config, "layers": [layer],
        }));
        let image_descriptor = Descriptor::new(media::OCI_MANIFEST, image, image_bytes.len() as u64);
        let (top, top_bytes) = json(serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [image_descriptor],
        }));
        let index =
            LayoutIndex::new(vec![Descriptor::new(media::OCI_INDEX, top, top_bytes.len() as u64)], BTreeMap::new());
        let arrivals = [
            vec![(top, top_bytes.clone()), (image, image_bytes.clone())],
            vec![(image, image_bytes.clone()), (top, top_bytes.clone())],
        ];
        for order in arrivals {
            let mut kept = HashMap::new();
            let mut reachable = Reachable::new(&index, &kept);
            assert_eq!(reachable.reach(&top), Reach::Manifest);
            assert_eq!(reachable.reach(&layer.digest), Reach::Unknown);
            for (digest, bytes) in order {
                kept.insert(digest, bytes);
                reachable.kept(digest, &kept);
            }
            assert_eq!(reachable.reach(&image), Reach::Manifest);
            assert_eq!(reachable.reach(&config.digest), Reach::Blob);
            assert_eq!(reachable.reach(&layer.digest), Reach::Blob);
            assert_eq!(reachable.reach(&sha256_digest(b"extra")), Reach::Unknown);
        }
    }
}
