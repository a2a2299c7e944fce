//! Issue 15: signatures, attestations, SBOMs and OCI 1.1 referrers travel with the images and
//! are checked offline (spec/archive.md AR-RF1..AR-RF5). Everything is made here exactly as
//! cosign makes it (simple-signing payload, `dev.cosignproject.cosign/signature` annotation,
//! DSSE envelopes, media types; keys generated in the test) and pushed to a real registry
//! (distribution 2.8, which has no referrers API): by cosign's tag scheme, and as referrers with
//! `subject` listed in the referrers tag-schema index, as oras and cosign do against it.

mod cli;
mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cli::{ferry, json_of, text};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use support::{Registry, Variant};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A cosign key pair made in the test: `cosign.pub` as cosign writes it (PEM SubjectPublicKeyInfo).
struct Key {
    pair: EcdsaKeyPair,
    public_pem: String,
}

impl Key {
    fn generate() -> Key {
        let generated = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &generated.serialize_der(), &SystemRandom::new())
                .unwrap();
        Key { pair, public_pem: generated.public_key_pem() }
    }

    /// cosign's signature: ECDSA P-256, SHA-256, ASN.1 DER, base64.
    fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.pair.sign(&SystemRandom::new(), message).unwrap().as_ref())
    }

    fn write(&self, path: &std::path::Path) {
        std::fs::write(path, &self.public_pem).unwrap();
    }
}

/// Pushes blobs and manifests to a plain-HTTP registry, as any client does.
struct Pusher {
    base: String,
}

impl Pusher {
    fn blob(&self, repo: &str, bytes: &[u8]) -> Value {
        let digest = digest_of(bytes);
        let started = ureq::post(&format!("{}/v2/{repo}/blobs/uploads/", self.base)).send_empty().unwrap();
        let location = started.headers().get("location").unwrap().to_str().unwrap().to_string();
        let location = if location.starts_with('/') { format!("{}{location}", self.base) } else { location };
        let separator = if location.contains('?') { '&' } else { '?' };
        ureq::put(&format!("{location}{separator}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .send(bytes)
            .unwrap();
        json!({"digest": digest, "size": bytes.len()})
    }

    fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
        ureq::put(&format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("Content-Type", media_type)
            .send(bytes)
            .unwrap();
        digest_of(bytes)
    }

    /// The body of a GET of `path` under /v2/, or `None` unless the registry answers 200.
    fn get_if_found(&self, path: &str, accept: &str) -> Option<Vec<u8>> {
        let response = ureq::get(&format!("{}/v2/{path}", self.base))
            .header("Accept", accept)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        (response.status() == 200).then(|| response.into_body().read_to_vec().unwrap())
    }

    /// A manifest's digest in `repo` by tag, or `None`.
    fn resolve(&self, repo: &str, reference: &str) -> Option<String> {
        let accept = [OCI_MANIFEST, OCI_INDEX, "application/vnd.docker.distribution.manifest.v2+json"].join(",");
        self.get_if_found(&format!("{repo}/manifests/{reference}"), &accept).map(|bytes| digest_of(&bytes))
    }

    fn get_json(&self, repo: &str, reference: &str) -> Value {
        let response = ureq::get(&format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("Accept", OCI_INDEX)
            .call()
            .unwrap();
        serde_json::from_slice(&response.into_body().read_to_vec().unwrap()).unwrap()
    }

    fn tags(&self, repo: &str) -> Vec<String> {
        let Some(bytes) = self.get_if_found(&format!("{repo}/tags/list"), "application/json") else {
            return Vec::new();
        };
        let listing: Value = serde_json::from_slice(&bytes).unwrap();
        listing["tags"]
            .as_array()
            .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }

    /// An OCI image manifest over a config and layers (each `(media type, bytes, annotations)`),
    /// with optional `artifactType` and `subject`; returns (digest, bytes).
    fn image(
        &self,
        repo: &str,
        tag: Option<&str>,
        config: (&str, &[u8]),
        layers: &[(&str, Vec<u8>, Value)],
        artifact_type: Option<&str>,
        subject: Option<Value>,
    ) -> (String, Vec<u8>) {
        let mut config_descriptor = self.blob(repo, config.1);
        config_descriptor["mediaType"] = json!(config.0);
        let layers: Vec<Value> = layers
            .iter()
            .map(|(media_type, bytes, annotations)| {
                let mut descriptor = self.blob(repo, bytes);
                descriptor["mediaType"] = json!(media_type);
                if annotations.as_object().is_some_and(|a| !a.is_empty()) {
                    descriptor["annotations"] = annotations.clone();
                }
                descriptor
            })
            .collect();
        let mut manifest =
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_descriptor, "layers": layers});
        if let Some(artifact_type) = artifact_type {
            manifest["artifactType"] = json!(artifact_type);
        }
        if let Some(subject) = subject {
            manifest["subject"] = subject;
        }
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = self.manifest(repo, tag.unwrap_or(&digest_of(&bytes)), OCI_MANIFEST, &bytes);
        (digest, bytes)
    }
}

/// cosign's simple-signing payload for `digest` in `repo`.
fn payload(host: &str, repo: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": format!("{host}/{repo}")},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap()
}

/// cosign's config for a signature image over `payload`.
fn signature_config(payload: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
        "rootfs": {"type": "layers", "diff_ids": [digest_of(payload)]}
    }))
    .unwrap()
}

/// What a signed image in the registry is made of.
struct Seeded {
    image: String,
    sig: Option<String>,
    att: Option<String>,
    referrers: Vec<String>,
}

/// An image in `repo:1.0` with, as asked: a cosign `.sig` (signed by `key`, over `signed`
/// payload bytes while `stored` ones are pushed, to forge a tampered payload), a DSSE `.att`,
/// and two OCI 1.1 referrers with `subject` (a cosign signature and an SPDX SBOM) listed in the
/// tag-schema index.
fn seed(pusher: &Pusher, host: &str, repo: &str, key: Option<&Key>, tamper: bool, extras: bool) -> Seeded {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer: Vec<u8> = (0..4096u32).map(|i| (i * 7 + repo.len() as u32) as u8).collect();
    let (image, image_bytes) = pusher.image(
        repo,
        Some("1.0"),
        (OCI_CONFIG, config),
        &[("application/vnd.oci.image.layer.v1.tar+gzip", layer, json!({}))],
        None,
        None,
    );
    let hex = image.trim_start_matches("sha256:").to_string();
    let mut seeded = Seeded { image: image.clone(), sig: None, att: None, referrers: Vec::new() };
    let Some(key) = key else { return seeded };

    let signed = payload(host, repo, &image);
    let stored = if tamper { payload(host, repo, &digest_of(b"another image")) } else { signed.clone() };
    let signature = key.sign(&signed);
    let (sig, _) = pusher.image(
        repo,
        Some(&format!("sha256-{hex}.sig")),
        (OCI_CONFIG, &signature_config(&stored)),
        &[(SIMPLE_SIGNING, stored.clone(), json!({"dev.cosignproject.cosign/signature": signature}))],
        None,
        None,
    );
    seeded.sig = Some(sig);
    if !extras {
        return seeded;
    }

    // cosign attest: a DSSE envelope over an in-toto statement naming the image.
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": format!("{host}/{repo}"), "digest": {"sha256": hex}}], "predicate": {}
    }))
    .unwrap();
    let pae = [
        format!("DSSEv1 {} application/vnd.in-toto+json {} ", "application/vnd.in-toto+json".len(), statement.len())
            .into_bytes(),
        statement.clone(),
    ]
    .concat();
    let envelope = serde_json::to_vec(&json!({
        "payloadType": "application/vnd.in-toto+json", "payload": STANDARD.encode(&statement),
        "signatures": [{"keyid": "", "sig": key.sign(&pae)}]
    }))
    .unwrap();
    let (att, _) = pusher.image(
        repo,
        Some(&format!("sha256-{hex}.att")),
        (OCI_CONFIG, &signature_config(&envelope)),
        &[(
            "application/vnd.dsse.envelope.v1+json",
            envelope,
            json!({"predicateType": "https://slsa.dev/provenance/v0.2"}),
        )],
        None,
        None,
    );
    seeded.att = Some(att);

    // OCI 1.1 referrers with `subject`, and the tag-schema index that lists them.
    let subject = json!({"mediaType": OCI_MANIFEST, "digest": image, "size": image_bytes.len()});
    let empty = b"{}";
    let cosign_artifact = "application/vnd.dev.cosign.artifact.sig.v1+json";
    let (referrer_sig, referrer_sig_bytes) = pusher.image(
        repo,
        None,
        ("application/vnd.oci.empty.v1+json", empty),
        &[(SIMPLE_SIGNING, signed.clone(), json!({"dev.cosignproject.cosign/signature": key.sign(&signed)}))],
        Some(cosign_artifact),
        Some(subject.clone()),
    );
    let spdx = br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#.to_vec();
    let (sbom, sbom_bytes) = pusher.image(
        repo,
        None,
        ("application/vnd.oci.empty.v1+json", empty),
        &[("application/spdx+json", spdx, json!({}))],
        Some("application/spdx+json"),
        Some(subject),
    );
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": referrer_sig, "size": referrer_sig_bytes.len(), "artifactType": cosign_artifact},
        {"mediaType": OCI_MANIFEST, "digest": sbom, "size": sbom_bytes.len(), "artifactType": "application/spdx+json"},
    ]}))
    .unwrap();
    pusher.manifest(repo, &format!("sha256-{hex}"), OCI_INDEX, &index);
    seeded.referrers = vec![referrer_sig, sbom];
    seeded
}

fn export(reference: &str, archive: &std::path::Path, extra: &[&str]) -> std::process::Output {
    ferry()
        .args(["export", "-i", reference, "-o"])
        .arg(archive)
        .args(["--registry-insecure", "--json"])
        .args(extra)
        .output()
        .unwrap()
}

/// Items 1, 2, 4 and 5: export finds the `.sig`, the `.att` and both referrers of the
/// tag-schema index and counts them; `verify --key` says signed by the key; import pushes every
/// one into the target with the same digests, the cosign tags recreated and the tag-schema
/// index listing both referrers (merged with what the target listed before, never replacing it).
#[test]
fn issue15_signatures_and_referrers_round_trip_and_verify_offline() {
    let registry = Registry::start(Variant::Plain);
    let pusher = Pusher { base: registry.url() };
    let key = Key::generate();
    let scratch = tempfile::tempdir().unwrap();
    let key_file = scratch.path().join("cosign.pub");
    key.write(&key_file);
    let seeded = seed(&pusher, registry.host(), "team/app", Some(&key), false, true);

    let archive = scratch.path().join("app.tar");
    let exported = export(&format!("{}/team/app:1.0", registry.host()), &archive, &[]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let summary = json_of(&exported);
    assert_eq!(summary["images"], 1, "{summary}");
    assert_eq!(summary["referrers"]["signatures"], 2, "{summary}");
    assert_eq!(summary["referrers"]["attestations"], 1, "{summary}");
    assert_eq!(summary["referrers"]["sboms"], 1, "{summary}");

    // Without discovery: the archive holds the image alone.
    let bare = scratch.path().join("bare.tar");
    let none = export(&format!("{}/team/app:1.0", registry.host()), &bare, &["--referrers", "none"]);
    assert!(none.status.success(), "{}", text(&none.stderr));
    assert_eq!(json_of(&none)["referrers"]["signatures"], 0);
    let only = export(&format!("{}/team/app:1.0", registry.host()), &bare, &["--referrers", "signatures"]);
    assert_eq!(json_of(&only)["referrers"]["sboms"], 0);
    assert_eq!(json_of(&only)["referrers"]["signatures"], 2);

    let verified = ferry().arg("verify").arg(&archive).arg("--key").arg(&key_file).arg("--json").output().unwrap();
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    let report = json_of(&verified);
    let image = &report["signatures"]["images"][0];
    assert_eq!(image["status"], "signed", "{report}");
    assert_eq!(image["digest"], seeded.image.as_str());
    assert!(image["attestations"][0].as_str().unwrap().contains("slsa.dev/provenance"), "{report}");
    let human = ferry().arg("verify").arg(&archive).arg("--key").arg(&key_file).output().unwrap();
    assert!(text(&human.stdout).contains("signed by"), "{}", text(&human.stdout));

    // The target already lists a referrer of its own under the schema tag: it is kept.
    let hex = seeded.image.trim_start_matches("sha256:");
    let theirs = seed(&pusher, registry.host(), "prod/app", None, false, false);
    let (own, own_bytes) = pusher.image(
        "prod/app",
        None,
        ("application/vnd.oci.empty.v1+json", b"{}"),
        &[("text/plain", b"theirs".to_vec(), json!({}))],
        Some("text/plain"),
        Some(json!({"mediaType": OCI_MANIFEST, "digest": theirs.image, "size": 1})),
    );
    let listed = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": own, "size": own_bytes.len(), "artifactType": "text/plain"}]}))
    .unwrap();
    pusher.manifest("prod/app", &format!("sha256-{hex}"), OCI_INDEX, &listed);
    // The target's own `.sig` for the image points elsewhere: the import moves it, and says so.
    pusher.manifest("prod/app", &format!("sha256-{hex}.sig"), OCI_MANIFEST, &own_bytes);

    let imported = ferry()
        .arg("import")
        .arg(&archive)
        .args(["--to-repo", &format!("{}/prod/app", registry.host()), "--registry-insecure", "--json"])
        .arg("--key")
        .arg(&key_file)
        .arg("--require-signatures")
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let said = text(&imported.stderr);
    assert!(
        said.contains(&format!("sha256-{hex}.sig pointed at {own}")) && said.contains("no longer tagged"),
        "{said}"
    );
    let replaced = &json_of(&imported)["replacedTags"];
    assert_eq!(replaced.as_array().map(Vec::len), Some(1), "{replaced}");
    assert_eq!(replaced[0]["previous"], own.as_str(), "{replaced}");
    assert_eq!(replaced[0]["now"], seeded.sig.as_deref().unwrap(), "{replaced}");
    assert_eq!(pusher.resolve("prod/app", &format!("sha256-{hex}.sig")), seeded.sig);
    assert_eq!(pusher.resolve("prod/app", &format!("sha256-{hex}.att")), seeded.att);
    for referrer in &seeded.referrers {
        assert_eq!(pusher.resolve("prod/app", referrer).as_ref(), Some(referrer), "referrer {referrer} pushed");
    }
    let index = pusher.get_json("prod/app", &format!("sha256-{hex}"));
    let digests: Vec<&str> =
        index["manifests"].as_array().unwrap().iter().map(|d| d["digest"].as_str().unwrap()).collect();
    assert_eq!(digests[0], own, "what the target listed is kept, first: {index}");
    for referrer in &seeded.referrers {
        assert!(digests.contains(&referrer.as_str()), "{referrer} listed: {index}");
    }
    assert!(!pusher.tags("prod/app").iter().any(|tag| tag.ends_with(".sig.imgpkg")), "no imgpkg tag on a signature");

    // inspect shows them per image.
    let inspected = json_of(&ferry().arg("inspect").arg(&archive).arg("--json").output().unwrap());
    let app = inspected["artifacts"].as_array().unwrap().iter().find(|a| a["digest"] == seeded.image.as_str()).unwrap();
    let kinds: Vec<&str> = app["referrers"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "signature").count(), 2, "{inspected}");
    assert!(kinds.contains(&"attestation") && kinds.contains(&"sbom"), "{inspected}");
}

/// Item 4/5: a tampered payload (re-hashed, so every digest holds), a key that did not sign,
/// and an unsigned image under `--require-signatures` are each named, exit 3, and `import`
/// pushes nothing.
#[test]
fn issue15_bad_and_missing_signatures_fail_verify_and_import_pushes_nothing() {
    let registry = Registry::start(Variant::Plain);
    let pusher = Pusher { base: registry.url() };
    let key = Key::generate();
    let other = Key::generate();
    let scratch = tempfile::tempdir().unwrap();
    let key_file = scratch.path().join("cosign.pub");
    key.write(&key_file);
    let other_file = scratch.path().join("other.pub");
    other.write(&other_file);
    let good = seed(&pusher, registry.host(), "team/good", Some(&key), false, false);
    let tampered = seed(&pusher, registry.host(), "team/tampered", Some(&key), true, false);
    let unsigned = seed(&pusher, registry.host(), "team/unsigned", None, false, false);

    let cases = [
        ("tampered", "team/tampered", &key_file, tampered.image.clone(), vec![], "bad signature"),
        ("wrong key", "team/good", &other_file, good.image.clone(), vec![], "bad signature"),
        ("unsigned", "team/unsigned", &key_file, unsigned.image.clone(), vec!["--require-signatures"], "is unsigned"),
    ];
    for (what, repo, key_path, digest, extra, expected) in cases {
        let archive = scratch.path().join(format!("{}.tar", repo.replace('/', "-")));
        let exported = export(&format!("{}/{repo}:1.0", registry.host()), &archive, &[]);
        assert!(exported.status.success(), "{what}: {}", text(&exported.stderr));
        let verified = ferry().arg("verify").arg(&archive).arg("--key").arg(key_path).args(&extra).output().unwrap();
        let out = text(&verified.stdout);
        assert_eq!(verified.status.code(), Some(3), "{what}: {out}");
        assert!(out.contains(expected) && out.contains(&digest), "{what}: {out}");

        let target = format!("prod/{}", repo.replace('/', "-"));
        let imported = ferry()
            .arg("import")
            .arg(&archive)
            .args(["--to-repo", &format!("{}/{target}", registry.host()), "--registry-insecure"])
            .arg("--key")
            .arg(key_path)
            .args(&extra)
            .output()
            .unwrap();
        let err = text(&imported.stderr);
        assert_eq!(imported.status.code(), Some(3), "{what}: {err}");
        assert!(err.contains(expected) && err.contains("nothing was pushed"), "{what}: {err}");
        assert!(pusher.tags(&target).is_empty(), "{what}: nothing pushed");
        assert_eq!(pusher.resolve(&target, &digest), None, "{what}: nothing pushed");
    }

    // The same archives without --key verify: the checks are asked for, never imposed.
    let archive = scratch.path().join("team-tampered.tar");
    ferry().arg("verify").arg(&archive).assert().success();
}
