//! imgpkg's `manifest.json` (its `imagedesc` types, imgpkg 0.36 to 0.43): a JSON list of
//! `{"Image": ..}` or `{"ImageIndex": ..}` entries, each carrying its raw manifest and, for
//! images, its raw config, so only layers are files of the tarball. Parsed strictly where the
//! content matters (digests, raw bytes), leniently on fields ferry does not read.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One top-level entry.
#[derive(Debug, Deserialize)]
pub struct Entry {
    #[serde(rename = "Image", default)]
    pub image: Option<ImageDescriptor>,
    #[serde(rename = "ImageIndex", default)]
    pub index: Option<IndexDescriptor>,
}

/// An image: its raw manifest and config, and its layers (files of the tarball, except
/// non-distributable ones imgpkg leaves out).
#[derive(Debug, Deserialize)]
pub struct ImageDescriptor {
    #[serde(rename = "Refs", default)]
    pub refs: Vec<String>,
    #[serde(rename = "Layers", default)]
    pub layers: Option<Vec<LayerDescriptor>>,
    #[serde(rename = "Config")]
    pub config: ConfigDescriptor,
    #[serde(rename = "Manifest")]
    pub manifest: ManifestDescriptor,
    #[serde(rename = "Tag", default)]
    pub tag: String,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// An index: its raw bytes and its children, images and indexes.
#[derive(Debug, Deserialize)]
pub struct IndexDescriptor {
    #[serde(rename = "Refs", default)]
    pub refs: Vec<String>,
    #[serde(rename = "Images", default)]
    pub images: Option<Vec<ImageDescriptor>>,
    #[serde(rename = "Indexes", default)]
    pub indexes: Option<Vec<IndexDescriptor>>,
    #[serde(rename = "MediaType")]
    pub media_type: String,
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "Raw")]
    pub raw: String,
    #[serde(rename = "Tag", default)]
    pub tag: String,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
pub struct LayerDescriptor {
    #[serde(rename = "MediaType")]
    pub media_type: String,
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "Size")]
    pub size: i64,
}

#[derive(Debug, Deserialize)]
pub struct ConfigDescriptor {
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "Raw")]
    pub raw: String,
}

#[derive(Debug, Deserialize)]
pub struct ManifestDescriptor {
    #[serde(rename = "MediaType")]
    pub media_type: String,
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "Raw")]
    pub raw: String,
}

/// The label imgpkg puts on the bundle `copy -b` was asked for.
pub const ROOT_BUNDLE_LABEL: &str = "dev.carvel.imgpkg.copy.root-bundle";

/// The name of the metadata file.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Whether an entry name has the shape of an imgpkg blob file, `sha256-<...>.tar.gz` (the
/// probe's loose test: the reader checks the hex and names what is wrong).
pub fn looks_like_blob_file(name: &str) -> bool {
    name.starts_with("sha256-") && name.ends_with(".tar.gz")
}

/// Whether `bytes` (the start of a `manifest.json`) look like imgpkg's: a list whose entries
/// have `Image` or `ImageIndex` keys.
pub fn looks_like_imgpkg(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Keys {
        #[serde(rename = "Image", default)]
        image: Option<serde::de::IgnoredAny>,
        #[serde(rename = "ImageIndex", default)]
        index: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Vec<Keys>>(bytes) {
        Ok(entries) => !entries.is_empty() && entries.iter().all(|e| e.image.is_some() || e.index.is_some()),
        Err(_) => false,
    }
}

/// Whether `bytes` look like a `docker save` `manifest.json`: a list of `{Config, RepoTags,
/// Layers}`.
pub fn looks_like_docker_save(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Keys {
        #[serde(rename = "Config", default)]
        config: Option<serde::de::IgnoredAny>,
        #[serde(rename = "Layers", default)]
        layers: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Vec<Keys>>(bytes) {
        Ok(entries) => !entries.is_empty() && entries.iter().all(|e| e.config.is_some() && e.layers.is_some()),
        Err(_) => false,
    }
}
