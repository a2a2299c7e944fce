//! What ties a signature, attestation, SBOM or OCI 1.1 referrer to the manifest it is about
//! (spec/archive.md "Referrers"): cosign's tag scheme (`sha256-<hex>.sig|.att|.sbom`), the
//! media and artifact types that say what a referrer is, and the shapes of cosign's signed
//! payloads (simple signing, DSSE envelopes) as far as checking them needs. Pure data.

use serde::Deserialize;

use super::Digest;

/// A cosign signature layer (its blob is the signed payload).
pub const COSIGN_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding a cosign signature (base64) over the layer's payload blob.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The annotation holding a keyless signature's Fulcio certificate (PEM).
pub const COSIGN_CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The annotation holding a keyless signature's Rekor bundle (JSON).
pub const COSIGN_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// A DSSE envelope layer (cosign attestations).
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The layer annotation cosign gives an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// cosign's artifact type for a signature pushed as an OCI 1.1 referrer.
pub const COSIGN_SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The in-toto payload type of a DSSE envelope.
pub const IN_TOTO_PAYLOAD: &str = "application/vnd.in-toto+json";

/// Deepest chain of referrers followed from an artifact (a signature of an attestation of an
/// image is depth 2); deeper ones are not looked for (AR-RF1).
pub const MAX_REFERRER_DEPTH: usize = 3;

/// What a referrer is, for the `--referrers` choice and for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferrerKind {
    Signature,
    Attestation,
    Sbom,
    Other,
}

impl ReferrerKind {
    /// The kind of a cosign tag suffix (`sig`, `att`, `sbom`).
    pub fn of_suffix(suffix: &str) -> Option<ReferrerKind> {
        match suffix {
            "sig" => Some(ReferrerKind::Signature),
            "att" => Some(ReferrerKind::Attestation),
            "sbom" => Some(ReferrerKind::Sbom),
            _ => None,
        }
    }

    /// The kind an OCI 1.1 referrer's artifact type (or config media type) says.
    pub fn of_artifact_type(artifact_type: &str) -> ReferrerKind {
        let lower = artifact_type.to_ascii_lowercase();
        if lower == COSIGN_SIGNATURE_ARTIFACT
            || lower.starts_with("application/vnd.dev.sigstore.bundle")
            || lower.contains("notary") && lower.contains("signature")
            || lower == COSIGN_SIMPLE_SIGNING
        {
            ReferrerKind::Signature
        } else if lower.contains("in-toto") || lower.contains("dsse") || lower.contains("attestation") {
            ReferrerKind::Attestation
        } else if lower.contains("spdx") || lower.contains("cyclonedx") || lower.contains("sbom") {
            ReferrerKind::Sbom
        } else {
            ReferrerKind::Other
        }
    }
}

/// cosign's tag for a referrer of `subject`: `sha256-<hex>.<suffix>`.
pub fn cosign_tag(subject: &Digest, suffix: &str) -> String {
    format!("{}.{suffix}", subject.tag_form())
}

/// The cosign tag suffixes ferry looks for, in order.
pub const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// The subject and kind a cosign tag names: `sha256-<hex>.sig` gives (that digest, Signature).
pub fn parse_cosign_tag(tag: &str) -> Option<(Digest, ReferrerKind)> {
    let (digest, suffix) = tag.rsplit_once('.')?;
    let kind = ReferrerKind::of_suffix(suffix)?;
    let hex = digest.strip_prefix("sha256-")?;
    Some((Digest::from_hex(hex).ok()?, kind))
}

/// The tag of the referrers tag schema (OCI distribution-spec 1.1, for registries without the
/// referrers API): `sha256-<hex>`, pointing at an index of the referrers of that digest.
pub fn schema_tag(subject: &Digest) -> String {
    subject.tag_form()
}

/// The part of a cosign simple-signing payload a check needs:
/// `{"critical":{"image":{"docker-manifest-digest":"sha256:.."},..},..}`.
#[derive(Debug, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
}

#[derive(Debug, Deserialize)]
pub struct Critical {
    pub image: CriticalImage,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub struct CriticalImage {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// A DSSE envelope (`{"payloadType","payload","signatures":[{"keyid","sig"}]}`), payload and
/// signatures base64.
#[derive(Debug, Deserialize)]
pub struct DsseEnvelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<DsseSignature>,
}

#[derive(Debug, Deserialize)]
pub struct DsseSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// The bytes a DSSE signature covers: the pre-authentication encoding
/// `DSSEv1 <len(type)> <type> <len(payload)> <payload>`.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The parts of an in-toto statement a check needs: its subjects' sha256 digests and its
/// predicate type.
#[derive(Debug, Deserialize)]
pub struct InTotoStatement {
    #[serde(default)]
    pub subject: Vec<InTotoSubject>,
    #[serde(rename = "predicateType", default)]
    pub predicate_type: String,
}

#[derive(Debug, Deserialize)]
pub struct InTotoSubject {
    #[serde(default)]
    pub digest: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sha256_digest;

    #[test]
    fn cosign_tags_round_trip() {
        let digest = sha256_digest(b"image");
        let tag = cosign_tag(&digest, "sig");
        assert_eq!(parse_cosign_tag(&tag), Some((digest, ReferrerKind::Signature)));
        assert_eq!(parse_cosign_tag(&format!("{}.imgpkg", digest.tag_form())), None);
        assert_eq!(parse_cosign_tag(&schema_tag(&digest)), None);
    }

    #[test]
    fn artifact_types_are_classified() {
        assert_eq!(ReferrerKind::of_artifact_type(COSIGN_SIGNATURE_ARTIFACT), ReferrerKind::Signature);
        assert_eq!(
            ReferrerKind::of_artifact_type("application/vnd.dev.sigstore.bundle.v0.3+json"),
            ReferrerKind::Signature
        );
        assert_eq!(ReferrerKind::of_artifact_type("application/vnd.in-toto+json"), ReferrerKind::Attestation);
        assert_eq!(ReferrerKind::of_artifact_type("application/spdx+json"), ReferrerKind::Sbom);
        assert_eq!(ReferrerKind::of_artifact_type("application/vnd.example.thing"), ReferrerKind::Other);
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(dsse_pae("t", b"ab"), b"DSSEv1 1 t 2 ab".to_vec());
    }
}
