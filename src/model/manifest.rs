//! Descriptors and manifests: the exact bytes a registry served plus a parsed view of them.
//!
//! A [`RawManifest`] keeps the bytes it was built from and is identified by their digest; the
//! parsed view is read-only and is never serialised back, so copying a manifest can never change
//! its digest (image-spec `descriptor.md`, "digests"). The views accept OCI and Docker schema 2.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::media;

/// Manifests, indexes and configs larger than this are refused: registries cap manifests at
/// 4 MiB (distribution-spec "pushing manifests"), and anything bigger is an attack on memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// A content descriptor (image-spec `descriptor.md`), the fields ferry uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The platform of an index entry (image-spec `image-index.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, rename = "os.version", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, rename = "os.features", skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_platform(f, &self.os, &self.architecture, self.variant.as_deref())
    }
}

/// `os/architecture[/variant]`, as platforms are written everywhere (docker, skopeo, ferry).
pub(super) fn write_platform(
    f: &mut std::fmt::Formatter<'_>,
    os: &str,
    architecture: &str,
    variant: Option<&str>,
) -> std::fmt::Result {
    write!(f, "{os}/{architecture}")?;
    if let Some(variant) = variant {
        write!(f, "/{variant}")?;
    }
    Ok(())
}

impl Descriptor {
    /// A descriptor with only the three required fields.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// The parsed view of an image manifest.
#[derive(Debug, Clone)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

/// The parsed view of an index or Docker manifest list.
#[derive(Debug, Clone)]
pub struct ImageIndex {
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

/// What a manifest is.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per manifest, never in bulk arrays
pub enum ManifestKind {
    Image(ImageManifest),
    Index(ImageIndex),
}

/// A manifest's exact bytes, its digest, its media type and a parsed view.
#[derive(Debug, Clone)]
pub struct RawManifest {
    bytes: Vec<u8>,
    digest: Digest,
    media_type: String,
    kind: ManifestKind,
}

/// Why bytes are not a manifest ferry can carry.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {digest} is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge { digest: String, size: u64 },
    #[error("manifest {digest} is not valid JSON of an image manifest or index: {reason}")]
    Malformed { digest: Digest, reason: String },
    #[error("manifest {digest} has media type {media_type:?}, which ferry does not carry{hint}")]
    UnsupportedMediaType { digest: Digest, media_type: String, hint: &'static str },
    #[error("manifest {digest} declares media type {inner:?} but its descriptor says {outer:?}")]
    MediaTypeMismatch { digest: Digest, inner: String, outer: String },
}

/// The fields of any manifest or index, read leniently (unknown fields are ignored, as the
/// image-spec requires of readers).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl RawManifest {
    /// Parses manifest bytes. `declared` is the media type from the descriptor or the HTTP
    /// `Content-Type` that led here, if any; the JSON's own `mediaType` must agree with it.
    pub fn parse(bytes: Vec<u8>, declared: Option<&str>) -> Result<Self, ManifestError> {
        let digest = super::sha256_digest(&bytes);
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge { digest: digest.to_string(), size: bytes.len() as u64 });
        }
        let malformed = |reason: String| ManifestError::Malformed { digest, reason };
        let any: AnyManifest = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if any.schema_version != Some(2) {
            let hint = if any.schema_version == Some(1) {
                " (Docker schema 1 is deprecated and cannot be verified)"
            } else {
                ""
            };
            return Err(ManifestError::UnsupportedMediaType {
                digest,
                media_type: format!("schemaVersion {:?}", any.schema_version),
                hint,
            });
        }
        let inner = any.media_type.as_deref();
        let media_type = match (declared, inner) {
            (Some(outer), Some(inner)) if outer != inner && media::is_manifest_kind(outer) => {
                return Err(ManifestError::MediaTypeMismatch { digest, inner: inner.into(), outer: outer.into() });
            }
            (Some(outer), _) if media::is_manifest_kind(outer) => outer.to_string(),
            (_, Some(inner)) => inner.to_string(),
            (_, None) if any.manifests.is_some() => media::OCI_INDEX.to_string(),
            (_, None) => media::OCI_MANIFEST.to_string(),
        };
        let kind = if media::is_index(&media_type) {
            let manifests = any.manifests.ok_or_else(|| malformed("an index needs a \"manifests\" list".into()))?;
            ManifestKind::Index(ImageIndex { manifests, subject: any.subject, annotations: any.annotations })
        } else if media::is_image_manifest(&media_type) {
            let config = any.config.ok_or_else(|| malformed("an image manifest needs a \"config\"".into()))?;
            ManifestKind::Image(ImageManifest {
                config,
                layers: any.layers.unwrap_or_default(),
                subject: any.subject,
                annotations: any.annotations,
            })
        } else {
            let hint = if media_type.starts_with(media::DOCKER_MANIFEST_V1)
                || media_type == media::DOCKER_MANIFEST_V1_SIGNED
            {
                " (Docker schema 1 is deprecated and cannot be verified)"
            } else {
                ""
            };
            return Err(ManifestError::UnsupportedMediaType { digest, media_type, hint });
        };
        Ok(RawManifest { bytes, digest, media_type, kind })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    pub fn kind(&self) -> &ManifestKind {
        &self.kind
    }

    /// A descriptor pointing at this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(&self.media_type, self.digest, self.bytes.len() as u64)
    }

    /// Every descriptor this manifest points at: config and layers, or child manifests, plus
    /// the subject if any.
    pub fn children(&self) -> Vec<&Descriptor> {
        match &self.kind {
            ManifestKind::Image(image) => {
                std::iter::once(&image.config).chain(&image.layers).chain(image.subject.as_ref()).collect()
            }
            ManifestKind::Index(index) => index.manifests.iter().chain(index.subject.as_ref()).collect(),
        }
    }
}

/// The part of an image config ferry reads: its labels (`config.Labels`).
#[derive(Debug, Default, Deserialize)]
pub struct ImageConfigView {
    #[serde(default)]
    pub config: Option<ImageConfigLabels>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ImageConfigLabels {
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// The config label that makes an image an imgpkg bundle (presence counts, not the value).
pub const BUNDLE_LABEL: &str = "dev.carvel.imgpkg.bundle";

impl ImageConfigView {
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.config.as_ref().and_then(|config| config.labels.as_ref())
    }

    /// Whether the config carries the imgpkg bundle label.
    pub fn is_bundle(&self) -> bool {
        self.labels().is_some_and(|labels| labels.contains_key(BUNDLE_LABEL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn docker_manifest() -> Vec<u8> {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{CONFIG}","size":2}},"layers":[{{"mediaType":"{}","digest":"{CONFIG}","size":0,"urls":["x"]}}]}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            media::DOCKER_LAYER_GZIP
        )
        .into_bytes()
    }

    #[test]
    fn keeps_exact_bytes_and_their_digest() {
        let bytes = docker_manifest();
        let manifest = RawManifest::parse(bytes.clone(), None).unwrap();
        assert_eq!(manifest.bytes(), &bytes[..]);
        assert_eq!(manifest.digest(), crate::model::sha256_digest(&bytes));
        assert_eq!(manifest.media_type(), media::DOCKER_MANIFEST);
        assert_eq!(manifest.children().len(), 2);
    }

    #[test]
    fn refuses_a_media_type_that_disagrees_with_its_descriptor() {
        let err = RawManifest::parse(docker_manifest(), Some(media::OCI_MANIFEST)).unwrap_err();
        assert!(matches!(err, ManifestError::MediaTypeMismatch { .. }), "{err}");
    }

    #[test]
    fn refuses_schema1_and_oversize() {
        let err = RawManifest::parse(br#"{"schemaVersion":1}"#.to_vec(), None).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
        let huge = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        assert!(matches!(RawManifest::parse(huge, None), Err(ManifestError::TooLarge { .. })));
    }

    #[test]
    fn detects_the_bundle_label() {
        let config = ImageConfigView::parse(br#"{"config":{"Labels":{"dev.carvel.imgpkg.bundle":""}}}"#).unwrap();
        assert!(config.is_bundle());
        assert!(!ImageConfigView::parse(br#"{"config":{}}"#).unwrap().is_bundle());
    }
}
