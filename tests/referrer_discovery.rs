//! Issue 15, performance: referrer discovery runs beside the manifest walk (spec/archive.md
//! AR-RF1). The fault server (tests/fault) slows chosen answers down, which a real registry
//! will not do on demand; what is checked is the order of requests on the wire and the bytes of
//! the archive, never a wall-clock figure.

mod cli;
mod fault;

use cli::{ferry, json_of, text};
use fault::{Fault, FaultServer, OCI_MANIFEST, Rule, SeededImage};
use std::time::Duration;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const REPO: &str = "team/app";
/// The workers every export here runs with (`--concurrency`).
const WORKERS: usize = 4;

fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest, "size": size})
}

/// An index tagged `v1` over `children` images (each tagged `child-N` too); the images and
/// the index's digest.
fn seed_index(server: &FaultServer, children: usize) -> (Vec<SeededImage>, String) {
    let images: Vec<SeededImage> =
        (0..children).map(|i| server.seed_image(REPO, &format!("child-{i}"), vec![layer(i as u8, 300 + i)])).collect();
    let manifests: Vec<serde_json::Value> =
        images.iter().map(|image| descriptor(OCI_MANIFEST, &image.manifest_digest, image.manifest.len())).collect();
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let digest = server.put_manifest(REPO, OCI_INDEX, serde_json::to_vec(&index).unwrap(), Some("v1"));
    (images, digest)
}

/// An OCI 1.1 referrer (an SBOM) of the manifest `subject` (of `subject_size` bytes and
/// `subject_type`); its digest.
fn put_referrer(server: &FaultServer, subject: &str, subject_type: &str, subject_size: usize, seed: u8) -> String {
    let sbom = format!(r#"{{"spdxVersion":"SPDX-2.3","name":"sbom-{seed}"}}"#).into_bytes();
    let sbom_size = sbom.len();
    let sbom_digest = server.put_blob(REPO, sbom);
    let empty = server.put_blob(REPO, b"{}".to_vec());
    let referrer = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
        "config": descriptor("application/vnd.oci.empty.v1+json", &empty, 2),
        "layers": [descriptor("application/spdx+json", &sbom_digest, sbom_size)],
        "subject": descriptor(subject_type, subject, subject_size),
    });
    server.put_manifest(REPO, OCI_MANIFEST, serde_json::to_vec(&referrer).unwrap(), None)
}

/// A cosign-style signature manifest under the tag `sha256-<hex>.sig` of `subject`.
fn put_cosign_signature(server: &FaultServer, subject: &str) -> String {
    let payload = format!(r#"{{"critical":{{"image":{{"docker-manifest-digest":"{subject}"}}}}}}"#).into_bytes();
    let payload_size = payload.len();
    let payload_digest = server.put_blob(REPO, payload);
    let config = br#"{"architecture":"","os":""}"#.to_vec();
    let config_size = config.len();
    let config_digest = server.put_blob(REPO, config);
    let signature = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config_digest, config_size),
        "layers": [descriptor("application/vnd.dev.cosign.simplesigning.v1+json", &payload_digest, payload_size)],
    });
    let tag = format!("{}.sig", subject.replace(':', "-"));
    server.put_manifest(REPO, OCI_MANIFEST, serde_json::to_vec(&signature).unwrap(), Some(&tag))
}

fn export(server: &FaultServer, archive: &std::path::Path) -> std::process::Output {
    let output = ferry()
        .args(["export", "-i", &format!("{}/{REPO}:v1", server.host()), "--json", "-o"])
        .arg(archive)
        .args(["--registry-insecure", "--concurrency", &WORKERS.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    output
}

/// The requests' places in arrival order, for those with this method whose path contains `path`.
fn arrivals(server: &FaultServer, method: &str, path: &str) -> Vec<usize> {
    let requests = server.requests();
    (0..requests.len()).filter(|&i| requests[i].method == method && requests[i].path.contains(path)).collect()
}

/// Issue 15 ("run them concurrently with the manifest walk"), AR-RF1: the referrers of the index
/// are asked for as soon as the index is known, while its children are still being fetched.
/// The children's manifests answer slowly, so the walk needs several rounds of `WORKERS` of them;
/// a discovery that waited for the walk would ask only after the last child's request.
#[test]
fn issue15_the_referrers_of_an_artifact_are_asked_for_while_the_walk_goes_on() {
    let server = FaultServer::start();
    let (images, index) = seed_index(&server, 3 * WORKERS);
    for image in &images {
        let path = format!("/manifests/{}", image.manifest_digest);
        server.add(Rule::new(Some("GET"), &path, Fault::Delay(Duration::from_millis(200))).times(usize::MAX));
    }
    let scratch = tempfile::tempdir().unwrap();
    export(&server, &scratch.path().join("app.tar"));

    let index_lookup = arrivals(&server, "GET", &format!("/referrers/{index}"));
    assert_eq!(index_lookup.len(), 1, "the index's referrers are asked for once");
    let last_child = images
        .iter()
        .map(|image| *arrivals(&server, "GET", &format!("/manifests/{}", image.manifest_digest)).last().unwrap())
        .max()
        .unwrap();
    assert!(
        index_lookup[0] < last_child,
        "the index's referrers (request {}) were asked for only after the last child manifest (request {last_child})",
        index_lookup[0]
    );
    assert_eq!(server.count(Some("GET"), "/tags/list"), 1, "the repository's tags are listed once");
    for image in &images {
        let path = format!("/referrers/{}", image.manifest_digest);
        assert_eq!(server.count(Some("GET"), &path), 1, "every child's referrers are asked for once");
    }
}

/// AR-RF1, AR-5: the archive does not depend on the order lookups answer in. The same content
/// (OCI 1.1 referrers of the index and of some children, a referrer of a referrer, a cosign
/// signature tag) is exported with every answer fast, then with the first lookups slow and the
/// later ones fast; both archives are byte for byte the same and carry every referrer.
#[test]
fn issue15_the_archive_is_the_same_whether_referrers_answer_slowly_or_fast() {
    let server = FaultServer::start();
    let (images, index) = seed_index(&server, 2 * WORKERS);
    let index_size = server.manifest(REPO, "v1").unwrap().len();
    let of_index = put_referrer(&server, &index, OCI_INDEX, index_size, 100);
    let of_referrer =
        put_referrer(&server, &of_index, OCI_MANIFEST, server.manifest(REPO, &of_index).unwrap().len(), 101);
    for (i, image) in images.iter().enumerate().step_by(3) {
        put_referrer(&server, &image.manifest_digest, OCI_MANIFEST, image.manifest.len(), i as u8);
    }
    put_cosign_signature(&server, &index);
    put_cosign_signature(&server, &images[1].manifest_digest);

    let scratch = tempfile::tempdir().unwrap();
    let fast = scratch.path().join("fast.tar");
    let summary = json_of(&export(&server, &fast));
    assert_eq!(summary["referrers"]["sboms"], 2 + images.len().div_ceil(3), "{summary}");
    assert_eq!(summary["referrers"]["signatures"], 2, "{summary}");
    assert!(server.count(Some("GET"), &format!("/referrers/{of_referrer}")) >= 1, "depth 2 was asked about");

    // Slow for the index and the first children (asked first), fast for the rest.
    let slow_first = [index.clone(), of_index.clone()]
        .into_iter()
        .chain(images.iter().take(WORKERS).map(|image| image.manifest_digest.clone()));
    for (i, digest) in slow_first.enumerate() {
        let pause = Duration::from_millis(100 + 60 * (WORKERS as u64 + 2 - i as u64));
        server.add(Rule::new(Some("GET"), &format!("/referrers/{digest}"), Fault::Delay(pause)).times(usize::MAX));
    }
    let slow = scratch.path().join("slow.tar");
    assert_eq!(json_of(&export(&server, &slow))["referrers"], summary["referrers"]);
    assert!(server.faults_applied() >= WORKERS + 2, "the slow answers were slow");
    let (fast, slow) = (std::fs::read(&fast).unwrap(), std::fs::read(&slow).unwrap());
    assert!(fast == slow, "the archives differ ({} and {} bytes)", fast.len(), slow.len());
}

/// AR-RF1, distribution-spec 1.1: a registry may page the referrers API with
/// `Link: <..>; rel="next"`. Every page is followed (five SBOMs over pages of two: three GETs),
/// and a page that links off the registry fails the export naming the referrers, without a
/// request to that host.
#[test]
fn every_page_of_the_referrers_api_is_followed_on_the_registry_only() {
    let server = FaultServer::start();
    server.limits(|limits| limits.referrers_page = 2);
    let image = server.seed_image(REPO, "v1", vec![layer(9, 300)]);
    for seed in 0..5 {
        put_referrer(&server, &image.manifest_digest, OCI_MANIFEST, image.manifest.len(), 200 + seed);
    }
    let scratch = tempfile::tempdir().unwrap();
    let summary = json_of(&export(&server, &scratch.path().join("paged.tar")));
    assert_eq!(summary["referrers"]["sboms"], 5, "{summary}");
    let path = format!("/referrers/{}", image.manifest_digest);
    assert_eq!(server.count(Some("GET"), &path), 3, "three pages of two");

    let elsewhere = FaultServer::start();
    let link =
        format!(r#"<http://{}/v2/{REPO}/referrers/{}?page=1>; rel="next""#, elsewhere.host(), image.manifest_digest);
    server.add(Rule::new(Some("GET"), &path, Fault::SetHeader("Link".into(), link)).times(usize::MAX));
    let output = ferry()
        .args(["export", "-i", &format!("{}/{REPO}:v1", server.host()), "-o"])
        .arg(scratch.path().join("off.tar"))
        .args(["--registry-insecure"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let said = text(&output.stderr);
    assert!(said.contains("the referrers of") && said.contains("another host than the registry"), "{said}");
    assert_eq!(elsewhere.requests().len(), 0, "the other host is never asked");
}
