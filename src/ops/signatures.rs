//! Offline signature checks (spec/archive.md AR-RF4), a verify stage after the digests hold:
//! every payload blob read here has already passed its digest, so only the signature over it
//! remains. cosign signatures (simple-signing payload in a `.sig` manifest's layer, signature
//! in its `dev.cosignproject.cosign/signature` annotation) and DSSE attestations are checked
//! against the `--key` public keys with `ring`; keys are PEM `PUBLIC KEY` (SubjectPublicKeyInfo)
//! files read with `x509-parser`. Keyless signatures (a Fulcio certificate) are reported with
//! their identity and issuer, not verified: that needs the Sigstore trust root, the Rekor
//! transparency log's signed entry and the certificate chain, which no small well-kept crate
//! checks offline (spec/archive.md AR-RF5).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde::Serialize;
use x509_parser::prelude::{FromDer, GeneralName, SubjectPublicKeyInfo};

use super::referrers::{is_referrer, kind_of, subject_of};
use crate::engine::{Artifact, Graph};
use crate::model::json_keys::{self, Document};
use crate::model::referrers::{
    COSIGN_CERTIFICATE_ANNOTATION, COSIGN_SIGNATURE_ANNOTATION, COSIGN_SIMPLE_SIGNING, DSSE_ENVELOPE, DsseEnvelope,
    InTotoStatement, PREDICATE_TYPE_ANNOTATION, ReferrerKind, SimpleSigning, dsse_pae,
};
use crate::model::{Descriptor, Digest, ManifestKind};
use crate::store::Source;

/// The algorithms of the keys ferry reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

/// A public key given with `--key`, named by its file.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub name: String,
    algorithm: KeyAlgorithm,
    /// The key as ring wants it: the SubjectPublicKeyInfo's bit string.
    bits: Vec<u8>,
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--key {file}: {reason}")]
pub struct KeyError {
    pub file: String,
    pub reason: String,
}

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const ED25519: &str = "1.3.101.112";
/// DER contents of the named-curve OIDs 1.2.840.10045.3.1.7 (P-256) and 1.3.132.0.34 (P-384).
const P256_CURVE: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_CURVE: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` file (what `cosign generate-key-pair` writes as `cosign.pub`).
    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        let file = path.display().to_string();
        let fail = |reason: String| KeyError { file: file.clone(), reason };
        let text = std::fs::read(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        PublicKey::parse(&file, &text).map_err(fail)
    }

    /// Parses PEM text; `name` names the key in reports.
    pub fn parse(name: &str, pem_text: &[u8]) -> Result<PublicKey, String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text).map_err(|e| format!("is not PEM: {e}"))?;
        if pem.label != "PUBLIC KEY" {
            return Err(format!("holds a {:?} block; a PUBLIC KEY (e.g. cosign.pub) is needed", pem.label));
        }
        let (_, spki) =
            SubjectPublicKeyInfo::from_der(&pem.contents).map_err(|e| format!("is not a SubjectPublicKeyInfo: {e}"))?;
        let oid = spki.algorithm.algorithm.to_id_string();
        let curve = spki.algorithm.parameters.as_ref().map(|any| any.data.to_vec());
        let algorithm = match (oid.as_str(), curve.as_deref()) {
            (EC_PUBLIC_KEY, Some(P256_CURVE)) => KeyAlgorithm::EcdsaP256,
            (EC_PUBLIC_KEY, Some(P384_CURVE)) => KeyAlgorithm::EcdsaP384,
            (ED25519, _) => KeyAlgorithm::Ed25519,
            (RSA_ENCRYPTION, _) => KeyAlgorithm::Rsa,
            (other, _) => {
                return Err(format!(
                    "has a key of algorithm {other}; ferry checks ECDSA P-256/P-384, Ed25519 and RSA keys"
                ));
            }
        };
        Ok(PublicKey { name: name.to_string(), algorithm, bits: spki.subject_public_key.data.to_vec() })
    }

    /// Whether `signature` over `message` verifies with this key, as cosign signs: ECDSA
    /// (ASN.1 DER signature) with SHA-256 (P-256) or SHA-384 (P-384), Ed25519 over the message,
    /// RSA PKCS#1 v1.5 or PSS with SHA-256.
    pub fn verifies(&self, message: &[u8], signature_bytes: &[u8]) -> bool {
        let algorithms: &[&'static dyn VerificationAlgorithm] = match self.algorithm {
            KeyAlgorithm::EcdsaP256 => &[&signature::ECDSA_P256_SHA256_ASN1],
            KeyAlgorithm::EcdsaP384 => &[&signature::ECDSA_P384_SHA384_ASN1],
            KeyAlgorithm::Ed25519 => &[&signature::ED25519],
            KeyAlgorithm::Rsa => &[&signature::RSA_PKCS1_2048_8192_SHA256, &signature::RSA_PSS_2048_8192_SHA256],
        };
        algorithms
            .iter()
            .any(|algorithm| UnparsedPublicKey::new(*algorithm, &self.bits).verify(message, signature_bytes).is_ok())
    }
}

/// A keyless signature's certificate: who it says signed, and where that identity came from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeylessIdentity {
    pub identity: String,
    pub issuer: String,
}

/// What the checks found for one image, index or bundle.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSignatures {
    pub name: String,
    pub digest: Digest,
    /// `signed`, `unsigned` or `bad`.
    pub status: String,
    /// The keys that verify a signature of it.
    pub signed_by: Vec<String>,
    /// Attestations that verify, by predicate type, with the key.
    pub attestations: Vec<String>,
    /// Keyless signatures, reported, not verified (AR-RF5).
    pub keyless: Vec<KeylessIdentity>,
    /// What is wrong with its signatures (bad) or attestations.
    pub problems: Vec<String>,
}

/// The signature stage of a verification.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureReport {
    pub images: Vec<ImageSignatures>,
    /// Every failure, named: bad signatures, and unsigned images under `--require-signatures`.
    pub failures: Vec<String>,
}

/// How to check.
#[derive(Debug, Clone, Default)]
pub struct SignatureOptions {
    pub keys: Vec<PublicKey>,
    /// Any image or bundle without a signature that verifies is a failure.
    pub require_signatures: bool,
}

impl SignatureOptions {
    /// Whether there is anything to check.
    pub fn wanted(&self) -> bool {
        !self.keys.is_empty() || self.require_signatures
    }
}

/// Outcome of one signature layer or envelope.
enum Outcome {
    Verified(String),
    Keyless(KeylessIdentity),
    Bad(String),
}

/// Checks every cosign signature and attestation of the artifacts of `graph` read from
/// `source` (whose blobs have been verified against their digests).
pub fn check_signatures(source: &dyn Source, graph: &Graph, options: &SignatureOptions) -> SignatureReport {
    let mut report = SignatureReport::default();
    let mut seen = BTreeSet::new();
    let subjects: Vec<&Artifact> = graph
        .artifacts
        .iter()
        .filter(|artifact| !is_referrer(artifact) && seen.insert(artifact.descriptor.digest))
        .collect();
    for subject in subjects {
        report.images.push(check_image(source, graph, subject, options));
    }
    for image in &report.images {
        let label = format!("{} ({})", image.name, image.digest);
        match image.status.as_str() {
            "bad" => report.failures.push(format!("bad signature on {label}: {}", image.problems.join("; "))),
            "unsigned" if options.require_signatures => report.failures.push(format!(
                "{label} is unsigned: no signature verifies with {} (--require-signatures){}",
                key_names(&options.keys),
                if image.keyless.is_empty() {
                    String::new()
                } else {
                    " ; its keyless signatures are reported, not verified offline".to_string()
                }
            )),
            _ => {}
        }
        for problem in image.problems.iter().filter(|_| image.status != "bad") {
            report.failures.push(format!("{label}: {problem}"));
        }
    }
    report
}

fn key_names(keys: &[PublicKey]) -> String {
    if keys.is_empty() {
        "no --key given".to_string()
    } else {
        keys.iter().map(|key| key.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

fn check_image(source: &dyn Source, graph: &Graph, image: &Artifact, options: &SignatureOptions) -> ImageSignatures {
    let digest = image.descriptor.digest;
    let mut signed_by = BTreeSet::new();
    let mut keyless = BTreeSet::new();
    let mut bad = Vec::new();
    let mut attestations = BTreeSet::new();
    let mut attestation_problems = Vec::new();
    let mut checked = BTreeSet::new();
    for referrer in graph.artifacts.iter().filter(|artifact| subject_of(artifact) == Some(digest)) {
        if !checked.insert(referrer.descriptor.digest) {
            continue;
        }
        let Some(manifest) = graph.manifests.get(&referrer.descriptor.digest) else { continue };
        let ManifestKind::Image(manifest_view) = manifest.kind() else { continue };
        match kind_of(referrer, Some(manifest)) {
            ReferrerKind::Signature => {
                for layer in manifest_view.layers.iter().filter(|layer| layer.media_type == COSIGN_SIMPLE_SIGNING) {
                    match check_simple_signing(source, layer, &digest, &options.keys) {
                        Outcome::Verified(key) => {
                            signed_by.insert(key);
                        }
                        Outcome::Keyless(identity) => {
                            keyless.insert(identity);
                        }
                        Outcome::Bad(why) => {
                            bad.push(format!("signature {} ({}): {why}", referrer.descriptor.digest, referrer.label()))
                        }
                    }
                }
            }
            ReferrerKind::Attestation if !options.keys.is_empty() => {
                for layer in manifest_view.layers.iter().filter(|layer| layer.media_type == DSSE_ENVELOPE) {
                    let predicate = layer.annotations.get(PREDICATE_TYPE_ANNOTATION).cloned().unwrap_or_default();
                    match check_envelope(source, layer, &digest, &options.keys) {
                        Outcome::Verified(key) => {
                            attestations.insert(format!("{predicate} by {key}"));
                        }
                        Outcome::Keyless(_) => {}
                        Outcome::Bad(why) => attestation_problems
                            .push(format!("attestation {} ({predicate}): {why}", referrer.descriptor.digest)),
                    }
                }
            }
            _ => {}
        }
    }
    // A signature that verifies with a trusted key settles it; with none, any signature that
    // fails is a bad one (tampered, or signed by a key not given), named.
    let status = if !signed_by.is_empty() {
        "signed"
    } else if !bad.is_empty() && !options.keys.is_empty() {
        "bad"
    } else {
        "unsigned"
    };
    let mut problems = if status == "bad" { bad } else { Vec::new() };
    problems.extend(attestation_problems);
    ImageSignatures {
        name: image.label(),
        digest,
        status: status.to_string(),
        signed_by: signed_by.into_iter().collect(),
        attestations: attestations.into_iter().collect(),
        keyless: keyless.into_iter().collect(),
        problems,
    }
}

/// One cosign signature layer: its payload must name `subject`, and its signature verify
/// over the payload blob with one of `keys`.
fn check_simple_signing(source: &dyn Source, layer: &Descriptor, subject: &Digest, keys: &[PublicKey]) -> Outcome {
    let payload = match source.small_blob(layer) {
        Ok(payload) => payload,
        Err(err) => return Outcome::Bad(format!("its payload cannot be read: {err}")),
    };
    if let Some(certificate) = layer.annotations.get(COSIGN_CERTIFICATE_ANNOTATION) {
        return match keyless_identity(certificate) {
            Ok(identity) => Outcome::Keyless(identity),
            Err(why) => Outcome::Bad(format!("its keyless certificate cannot be read: {why}")),
        };
    }
    let Some(encoded) = layer.annotations.get(COSIGN_SIGNATURE_ANNOTATION) else {
        return Outcome::Bad(format!("its payload layer has no {COSIGN_SIGNATURE_ANNOTATION} annotation"));
    };
    let Ok(signature_bytes) = STANDARD.decode(encoded.trim()) else {
        return Outcome::Bad(format!("its {COSIGN_SIGNATURE_ANNOTATION} annotation is not base64"));
    };
    let Some(key) = keys.iter().find(|key| key.verifies(&payload, &signature_bytes)) else {
        return Outcome::Bad(format!(
            "it does not verify with {} (the payload was changed, or another key signed it)",
            key_names(keys)
        ));
    };
    // The signature is good: now what it says must be this image, as cosign reads it too.
    if let Err(problem) = json_keys::check(&payload, Document::SimpleSigning) {
        return Outcome::Bad(format!("its payload is not a simple-signing payload: {problem}"));
    }
    match serde_json::from_slice::<SimpleSigning>(&payload) {
        Ok(signed) if signed.critical.image.docker_manifest_digest == subject.to_string() => {
            Outcome::Verified(key.name.clone())
        }
        Ok(signed) => Outcome::Bad(format!(
            "its payload names {}, not this image",
            signed.critical.image.docker_manifest_digest.chars().take(80).collect::<String>()
        )),
        Err(err) => Outcome::Bad(format!("its payload is not a simple-signing payload: {err}")),
    }
}

/// One DSSE envelope: a signature over its PAE must verify with one of `keys`, and its in-toto
/// statement must name `subject`.
fn check_envelope(source: &dyn Source, layer: &Descriptor, subject: &Digest, keys: &[PublicKey]) -> Outcome {
    let bytes = match source.small_blob(layer) {
        Ok(bytes) => bytes,
        Err(err) => return Outcome::Bad(format!("its envelope cannot be read: {err}")),
    };
    if let Err(problem) = json_keys::check(&bytes, Document::DsseEnvelope) {
        return Outcome::Bad(format!("it is not a DSSE envelope: {problem}"));
    }
    let envelope: DsseEnvelope = match serde_json::from_slice(&bytes) {
        Ok(envelope) => envelope,
        Err(err) => return Outcome::Bad(format!("it is not a DSSE envelope: {err}")),
    };
    let Ok(payload) = STANDARD.decode(envelope.payload.trim()) else {
        return Outcome::Bad("its payload is not base64".into());
    };
    let message = dsse_pae(&envelope.payload_type, &payload);
    let verified = envelope.signatures.iter().find_map(|signed| {
        let signature_bytes = STANDARD.decode(signed.sig.trim()).ok()?;
        keys.iter().find(|key| key.verifies(&message, &signature_bytes))
    });
    let Some(key) = verified else {
        return Outcome::Bad(format!("it does not verify with {}", key_names(keys)));
    };
    if let Err(problem) = json_keys::check(&payload, Document::InTotoStatement) {
        return Outcome::Bad(format!("its payload is not an in-toto statement: {problem}"));
    }
    match serde_json::from_slice::<InTotoStatement>(&payload) {
        Ok(statement)
            if statement
                .subject
                .iter()
                .any(|s| s.digest.get("sha256").map(String::as_str) == Some(subject.hex().as_ref())) =>
        {
            Outcome::Verified(key.name.clone())
        }
        Ok(_) => Outcome::Bad("its statement does not name this image".into()),
        Err(err) => Outcome::Bad(format!("its payload is not an in-toto statement: {err}")),
    }
}

/// Fulcio's issuer extensions: v1 (raw string) and v2 (DER UTF8String).
const FULCIO_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
const FULCIO_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";

/// The identity (SAN e-mail or URI) and OIDC issuer of a keyless signature's certificate.
pub fn keyless_identity(pem_text: &str) -> Result<KeylessIdentity, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    let certificate = pem.parse_x509().map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let identity = certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|name| match name {
                GeneralName::RFC822Name(text) | GeneralName::URI(text) => Some(text.to_string()),
                _ => None,
            })
        })
        .unwrap_or_else(|| "(no e-mail or URI in the certificate)".to_string());
    let mut issuers: BTreeMap<&str, String> = BTreeMap::new();
    for extension in certificate.extensions() {
        let oid = extension.oid.to_id_string();
        if oid == FULCIO_ISSUER_V1 {
            issuers.insert("v1", String::from_utf8_lossy(extension.value).into_owned());
        } else if oid == FULCIO_ISSUER_V2 {
            let value = extension.value;
            let text = if value.len() >= 2 && value[0] == 0x0c { &value[2..] } else { value };
            issuers.insert("v2", String::from_utf8_lossy(text).into_owned());
        }
    }
    let issuer = issuers.remove("v2").or_else(|| issuers.remove("v1")).unwrap_or_else(|| "(unknown)".to_string());
    Ok(KeylessIdentity { identity, issuer })
}
