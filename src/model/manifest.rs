//! Descriptors and manifests: the exact bytes a registry served plus a parsed view of them.
//!
//! A [`RawManifest`] keeps the bytes it was built from and is identified by their digest; the
//! parsed view is read-only and is never serialised back, so copying a manifest can never change
//! its digest (image-spec `descriptor.md`, "digests"). The views accept OCI and Docker schema 2.
//! Bytes are parsed only after [`json_keys::check`] has found no key another OCI reader would
//! read as another field (spec/archive.md AR-R16), so the view is what every reader sees.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::json_keys::{self, Document, JsonKeyError};
use super::media;

/// Manifests, indexes and configs larger than this are refused: registries cap manifests at
/// 4 MiB (distribution-spec "pushing manifests"), and anything bigger is an attack on memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The deepest a manifest may be nested: an `index.json` entry is at depth 1, each manifest an
/// index (or a `subject`) points at one deeper, and likewise each bundle a bundle's lock lists.
/// Real images nest an index in an index two or three deep; a deeper graph is a hostile one, made
/// to exhaust a reader's stack or time (spec/archive.md AR-R14).
pub const MAX_NESTING_DEPTH: usize = 16;

/// The largest size a descriptor may declare: image-spec `descriptor.md` makes `size` an int64,
/// and a bigger one is a forgery meant to wrap sums and offsets (spec/archive.md AR-R13).
pub const MAX_BLOB_SIZE: u64 = i64::MAX as u64;

/// A content descriptor (image-spec `descriptor.md`), the fields ferry uses. Parsing refuses a
/// `size` outside `0..=MAX_BLOB_SIZE`, naming the descriptor (AR-R13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "DescriptorJson")]
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

/// A descriptor as JSON has it, before its size is checked: `size` is read wide enough that a
/// negative or oversize value is seen as such, not as a serde type error without the digest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson {
    media_type: String,
    digest: Digest,
    size: i128,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl TryFrom<DescriptorJson> for Descriptor {
    type Error = String;

    fn try_from(json: DescriptorJson) -> Result<Self, String> {
        let size = u64::try_from(json.size).ok().filter(|&size| size <= MAX_BLOB_SIZE).ok_or_else(|| {
            format!("descriptor {} declares {} bytes, {}", json.digest, json.size, size_rule(json.size))
        })?;
        Ok(Descriptor {
            media_type: json.media_type,
            digest: json.digest,
            size,
            platform: json.platform,
            artifact_type: json.artifact_type,
            annotations: json.annotations,
        })
    }
}

fn size_rule(size: i128) -> String {
    if size < 0 {
        "a negative size (AR-R13)".to_string()
    } else {
        format!("over the OCI maximum of {MAX_BLOB_SIZE} (an int64; AR-R13)")
    }
}

/// Sizes that do not add up within [`MAX_BLOB_SIZE`]: the sum would wrap, or describes more
/// than any store holds (AR-R13).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the sizes of {what} add up past {MAX_BLOB_SIZE} bytes at {at} (AR-R13: a forged size)")]
pub struct SizeOverflow {
    /// What was being added up ("artifact registry.example.com/app@sha256:..").
    pub what: String,
    /// The item whose size made the sum overflow (a digest, an entry name).
    pub at: String,
}

/// Adds up `(name, size)` items with checked arithmetic; the total must stay within
/// [`MAX_BLOB_SIZE`]. The error names `what` and the item at which the sum overflowed.
pub fn checked_total<N: std::fmt::Display>(
    what: &dyn Fn() -> String,
    items: impl IntoIterator<Item = (N, u64)>,
) -> Result<u64, SizeOverflow> {
    let mut total: u64 = 0;
    for (name, size) in items {
        total = total
            .checked_add(size)
            .filter(|&total| total <= MAX_BLOB_SIZE)
            .ok_or_else(|| SizeOverflow { what: what(), at: name.to_string() })?;
    }
    Ok(total)
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
    /// A key other OCI readers would read as another field than ferry does (AR-R16); boxed,
    /// as it is rare and every store error carries this type.
    #[error("manifest {digest}: {problem}")]
    AmbiguousKey { digest: Digest, problem: Box<JsonKeyError> },
}

/// The fields of any manifest or index, read leniently (unknown fields are ignored, as the
/// image-spec requires of readers), once their keys have passed AR-R16.
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
        json_keys::check(&bytes, Document::Manifest).map_err(|problem| match problem {
            JsonKeyError::Malformed(reason) => malformed(reason),
            problem => ManifestError::AmbiguousKey { digest, problem: Box::new(problem) },
        })?;
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

/// The part of an image config ferry reads: its labels (`config.Labels`), whose keys other
/// readers (imgpkg) must read as ferry does (AR-R16).
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
    /// Parses a config. A config that is not JSON of a config is [`JsonKeyError::Malformed`];
    /// one whose keys break AR-R16 (`"labels"` beside `"Labels"`) is the other errors.
    pub fn parse(bytes: &[u8]) -> Result<Self, JsonKeyError> {
        json_keys::check(bytes, Document::ImageConfig)?;
        serde_json::from_slice(bytes).map_err(|e| JsonKeyError::Malformed(e.to_string()))
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

    /// AR-R13: a manifest whose layer declares a size outside the int64 is refused, naming the
    /// layer; sums are checked.
    #[test]
    fn refuses_sizes_outside_the_int64() {
        for size in ["18446744073709551615", "9223372036854775808", "-5", "1e3", "1.5"] {
            let bytes =
                String::from_utf8(docker_manifest()).unwrap().replace("\"size\":0", &format!("\"size\":{size}"));
            let err = RawManifest::parse(bytes.into_bytes(), None).unwrap_err().to_string();
            let named = err.contains(&format!("descriptor {CONFIG} declares {size} bytes"));
            assert!(named || size.contains(['e', '.']), "{size}: {err}");
        }
        let what = || "artifact x".to_string();
        assert_eq!(checked_total(&what, [("a", 1), ("b", MAX_BLOB_SIZE - 1)]), Ok(MAX_BLOB_SIZE));
        let err = checked_total(&what, [("a", MAX_BLOB_SIZE - 1), ("b", MAX_BLOB_SIZE - 1), ("c", 9)]).unwrap_err();
        assert_eq!(err.at, "b");
        assert!(err.to_string().contains("artifact x"), "{err}");
    }

    #[test]
    fn detects_the_bundle_label() {
        let config = ImageConfigView::parse(br#"{"config":{"Labels":{"dev.carvel.imgpkg.bundle":""}}}"#).unwrap();
        assert!(config.is_bundle());
        assert!(!ImageConfigView::parse(br#"{"config":{}}"#).unwrap().is_bundle());
        assert!(ImageConfigView::parse(b"not json").unwrap_err().is_malformed());
    }

    /// AR-R16: imgpkg reads `"labels"` as `Labels`, so a config with both, or with `"labels"`
    /// alone, could be a bundle to one and not the other: refused, not read either way.
    #[test]
    fn refuses_label_keys_imgpkg_would_read_otherwise() {
        for config in [
            &br#"{"config":{"Labels":{},"labels":{"dev.carvel.imgpkg.bundle":""}}}"#[..],
            br#"{"config":{"labels":{"dev.carvel.imgpkg.bundle":""}}}"#,
            br#"{"Config":{"Labels":{"dev.carvel.imgpkg.bundle":""}},"config":{}}"#,
        ] {
            let err = ImageConfigView::parse(config).unwrap_err();
            assert!(!err.is_malformed() && err.to_string().contains("AR-R16"), "{err}");
        }
    }

    const OTHER: &str = "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

    /// AR-R16: `"Digest"` beside a layer's `"digest"` is the other blob to Go's encoding/json;
    /// the manifest is refused, naming it, the layer and the key.
    #[test]
    fn refuses_a_case_variant_of_a_descriptor_key() {
        let bytes = String::from_utf8(docker_manifest())
            .unwrap()
            .replace(r#""size":0,"#, &format!(r#""size":0,"Digest":"{OTHER}","#))
            .into_bytes();
        let digest = crate::model::sha256_digest(&bytes);
        let err = RawManifest::parse(bytes, None).unwrap_err();
        assert!(matches!(err, ManifestError::AmbiguousKey { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                r#"manifest {digest}: in layers[0], the key "Digest" differs only in case from the key "digest""#
            )),
            "{message}"
        );
    }

    /// AR-R16: a lone `"Layers"` (ferry would see no layer, Go two), an `ſ` for an `s` and a key
    /// given twice are refused; annotation keys are not folded.
    #[test]
    fn refuses_lone_case_variants_and_repeated_keys() {
        let manifest = String::from_utf8(docker_manifest()).unwrap();
        for (from, to, expected) in [
            (r#""layers":"#, r#""Layers":"#, r#"the key "Layers" differs only in case from "layers""#),
            (r#""size":2"#, r#""ſize":2"#, r#"in config, the key "ſize" differs only in case from "size""#),
            (r#""size":2"#, r#""size":2,"size":2"#, r#"in config, the key "size" is given twice"#),
        ] {
            let err = RawManifest::parse(manifest.replacen(from, to, 1).into_bytes(), None).unwrap_err();
            assert!(err.to_string().contains(expected) && err.to_string().contains("AR-R16"), "{err}");
        }
        let annotated = manifest.replace(r#""urls":["x"]"#, r#""annotations":{"a":"1","A":"2","Digest":"x"}"#);
        let parsed = RawManifest::parse(annotated.into_bytes(), None).unwrap();
        let ManifestKind::Image(image) = parsed.kind() else { panic!("an image") };
        assert_eq!(image.layers[0].annotations.len(), 3);
    }
}
