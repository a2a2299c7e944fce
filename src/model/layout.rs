//! The two metadata files of an OCI image layout (image-spec `image-layout.md`): `oci-layout`
//! and `index.json`, and the canonical JSON ferry writes them in. `index.json` is held to the key
//! rule of every OCI document (AR-R16) before it is parsed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::json_keys::{self, Document, JsonKeyError};
use super::manifest::Descriptor;
use super::media;

pub const OCI_LAYOUT_FILE: &str = "oci-layout";
pub const INDEX_FILE: &str = "index.json";
pub const BLOBS_DIR: &str = "blobs";
pub const SHA256_DIR: &str = "blobs/sha256";
pub const LAYOUT_VERSION: &str = "1.0.0";
/// `index.json` is read whole into memory, so it is bounded; it lists every lock entry, at about
/// 450-670 bytes each, so the bound holds 100,000 entries (spec/archive.md AR-R7).
pub const MAX_INDEX_BYTES: u64 = 64 << 20;
/// `oci-layout` holds one short field.
pub const MAX_OCI_LAYOUT_BYTES: u64 = 4096;

/// The layout's top-level index: every artifact a reader can name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Why layout metadata cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

impl LayoutIndex {
    pub fn new(manifests: Vec<Descriptor>, annotations: BTreeMap<String, String>) -> Self {
        LayoutIndex { schema_version: 2, media_type: Some(media::OCI_INDEX.to_string()), manifests, annotations }
    }

    /// Parses `index.json`; descriptors with malformed digests or sizes outside the OCI int64
    /// (AR-R13) are refused here, by name, and so are an index listing nothing (AR-R15) and a
    /// key another OCI reader would read as another field (AR-R16).
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, LayoutError> {
        let invalid = |reason: String| LayoutError::Invalid { what: what.to_string(), reason };
        if bytes.len() as u64 > MAX_INDEX_BYTES {
            return Err(invalid(format!("{} bytes, over the {MAX_INDEX_BYTES}-byte limit", bytes.len())));
        }
        json_keys::check(bytes, Document::Manifest).map_err(|problem| match problem {
            JsonKeyError::Malformed(reason) => invalid(format!("not a valid OCI index: {reason}")),
            problem => invalid(problem.to_string()),
        })?;
        let index: LayoutIndex =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not a valid OCI index: {e}")))?;
        if index.schema_version != 2 {
            return Err(invalid(format!("schemaVersion is {}, expected 2", index.schema_version)));
        }
        if index.manifests.is_empty() {
            // An empty index would verify as "OK: 0 artifacts" and import nothing (issue 12).
            return Err(invalid("lists no artifact (AR-R15: a layout carries at least one)".to_string()));
        }
        Ok(index)
    }

    /// The non-distributable layers an export left out, as recorded in the index annotation
    /// `dev.ferry.omitted-layers` (spec/archive.md AR-4); empty when none were.
    pub fn omitted_layers(&self) -> Vec<String> {
        self.annotations
            .get(super::annotations::OMITTED_LAYERS)
            .map(|list| list.split(',').filter(|digest| !digest.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Canonical JSON: keys sorted, no insignificant whitespace.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        canonical_json(self)
    }
}

/// Serialises through `serde_json::Value`, whose maps are sorted, so every key at every level
/// comes out in byte order with no whitespace: the same value always gives the same bytes.
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("ferry's own types always serialise");
    serde_json::to_vec(&value).expect("a JSON value always serialises")
}

/// The content of `oci-layout`.
pub fn oci_layout_bytes() -> Vec<u8> {
    canonical_json(&serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION }))
}

/// Checks an `oci-layout` file's content.
pub fn check_oci_layout(bytes: &[u8], what: &str) -> Result<(), LayoutError> {
    #[derive(Deserialize)]
    struct OciLayout {
        #[serde(rename = "imageLayoutVersion")]
        image_layout_version: String,
    }
    let invalid = |reason: String| LayoutError::Invalid { what: what.to_string(), reason };
    let parsed: OciLayout =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not a valid oci-layout file: {e}")))?;
    if parsed.image_layout_version != LAYOUT_VERSION {
        return Err(invalid(format!(
            "imageLayoutVersion is {:?}, expected {LAYOUT_VERSION:?}",
            parsed.image_layout_version
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sha256_digest;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let mut descriptor = Descriptor::new(media::OCI_MANIFEST, sha256_digest(b"x"), 1);
        descriptor.annotations.insert("z".into(), "1".into());
        descriptor.annotations.insert("a".into(), "2".into());
        let json = String::from_utf8(LayoutIndex::new(vec![descriptor], BTreeMap::new()).to_canonical_json()).unwrap();
        assert!(json.starts_with(r#"{"manifests":[{"annotations":{"a":"2","z":"1"},"digest":"sha256:"#), "{json}");
        assert!(!json.contains(' '));
        assert_eq!(oci_layout_bytes(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    }

    #[test]
    fn index_with_a_malformed_digest_is_refused() {
        let err = LayoutIndex::parse(
            br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:XYZ","size":1}]}"#,
            "index.json",
        )
        .unwrap_err();
        assert!(err.to_string().contains("sha256:XYZ"), "{err}");
    }

    /// AR-R13, AR-R15: sizes outside the int64 and an index listing nothing are refused, naming
    /// the descriptor.
    #[test]
    fn index_with_an_impossible_size_or_no_artifact_is_refused() {
        let digest = sha256_digest(b"x");
        for (size, expected) in [
            ("18446744073709551615", "over the OCI maximum"),
            ("9223372036854775808", "over the OCI maximum"),
            ("100000000000000000000000000", "over the OCI maximum"),
            ("-1", "negative"),
        ] {
            let json =
                format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"x","digest":"{digest}","size":{size}}}]}}"#);
            let err = LayoutIndex::parse(json.as_bytes(), "index.json").unwrap_err().to_string();
            assert!(err.contains(expected) && err.contains(&digest.to_string()) && err.contains("AR-R13"), "{err}");
        }
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"x","digest":"{digest}","size":9223372036854775807}}]}}"#
        );
        assert_eq!(LayoutIndex::parse(json.as_bytes(), "index.json").unwrap().manifests[0].size, i64::MAX as u64);
        let err = LayoutIndex::parse(br#"{"schemaVersion":2,"manifests":[]}"#, "index.json").unwrap_err();
        assert!(err.to_string().contains("AR-R15"), "{err}");
    }

    /// AR-R16: `index.json` is held to the key rule: a `"Digest"` beside an entry's `"digest"`,
    /// or a `"Manifests"` after the `"manifests"` (Go would read an empty list), is refused
    /// naming the object and the key.
    #[test]
    fn index_with_a_case_variant_key_is_refused() {
        let digest = sha256_digest(b"x");
        let other = sha256_digest(b"y");
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"x","digest":"{digest}","size":1,"Digest":"{other}"}}]}}"#
        );
        let err = LayoutIndex::parse(json.as_bytes(), "index.json").unwrap_err().to_string();
        assert!(err.starts_with(r#"index.json: in manifests[0], the key "Digest" differs only in case"#), "{err}");
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"x","digest":"{digest}","size":1}}],"Manifests":[]}}"#
        );
        let err = LayoutIndex::parse(json.as_bytes(), "index.json").unwrap_err().to_string();
        assert!(err.contains(r#"the key "Manifests" differs only in case from the key "manifests""#), "{err}");
        let err = LayoutIndex::parse(b"{", "index.json").unwrap_err().to_string();
        assert!(err.starts_with("index.json: not a valid OCI index: "), "{err}");
    }
}
