//! `ferry export` against the fault-injection registry (tests/fault): a blob served with the
//! wrong bytes fails the export with an integrity error naming the blob, and never leaves an
//! archive under the final name; a reset in the middle of a layer is resumed and the archive
//! still verifies.

mod cli;
mod fault;
mod support;

use cli::ferry;
use fault::{Fault, FaultServer, Rule};
use support::layout::{gzip, tar_of};

fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn a_corrupt_blob_from_the_registry_leaves_no_archive() {
    let server = FaultServer::start();
    let image = server.seed_image("team/app", "v1", vec![layer(1, 300_000), layer(2, 200_000)]);
    let (bad_digest, _) = &image.layers[0];
    server.add(Rule::new(Some("GET"), &format!("/blobs/{bad_digest}"), Fault::WrongBody));
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("app.tar");
    let output = ferry()
        .args(["export", "-i", &image.reference, "-o"])
        .arg(&archive)
        .args(["--registry-insecure", "--registry-retry-count", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(bad_digest.as_str()) && stderr.contains("hashes to"), "{stderr}");
    assert!(!archive.exists(), "no archive under the final name");
    assert_eq!(server.count(Some("GET"), &format!("/blobs/{bad_digest}")), 1, "a digest mismatch is not retried");
}

#[test]
fn a_reset_mid_layer_is_resumed_and_the_archive_verifies() {
    let server = FaultServer::start();
    let image = server.seed_image("team/app", "v1", vec![layer(3, 3_000_000)]);
    let (digest, _) = &image.layers[0];
    server.add(Rule::new(Some("GET"), &format!("/blobs/{digest}"), Fault::ResetAfter(1_000_000)).times(1));
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("app.tar");
    let output = ferry()
        .args(["export", "-i", &image.reference, "-o"])
        .arg(&archive)
        .arg("--registry-insecure")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("resuming"), "the retry is reported: {stderr}");
    ferry().arg("verify").arg(&archive).assert().success();
}

/// Issue 15 item 1, AR-RF1: a registry with the referrers API answers it with a real index for
/// the image: the referrer (with `subject`) is carried and counted; a lookup that fails with
/// another status than 404 fails the export naming it, never a silent "none found".
#[test]
fn issue15_referrers_from_the_api_are_carried_and_a_failing_lookup_is_an_error() {
    let server = FaultServer::start();
    let image = server.seed_image("team/app", "v1", vec![layer(5, 1000)]);
    let sbom = server.put_blob("team/app", br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec());
    let empty = server.put_blob("team/app", b"{}".to_vec());
    let referrer = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom, "size": 26}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.manifest_digest,
                    "size": image.manifest.len()},
    });
    let referrer_digest = server.put_manifest(
        "team/app",
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&referrer).unwrap(),
        None,
    );
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("app.tar");
    let output = ferry()
        .args(["export", "-i", &image.reference, "--json", "-o"])
        .arg(&archive)
        .arg("--registry-insecure")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["referrers"]["sboms"], 1, "{summary}");
    let path = format!("/referrers/{}", image.manifest_digest);
    assert_eq!(server.count(Some("GET"), &path), 1, "the API was asked once for the image");
    let inspected = ferry().arg("inspect").arg(&archive).arg("--json").output().unwrap();
    let listing: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let found = listing["artifacts"].as_array().unwrap().iter().any(|a| a["digest"] == referrer_digest.as_str());
    assert!(found, "{listing}");

    server.add(Rule::new(Some("GET"), &path, Fault::Status(500)));
    let failed = ferry()
        .args(["export", "-i", &image.reference, "-o"])
        .arg(scratch.path().join("failed.tar"))
        .args(["--registry-insecure", "--registry-retry-count", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("referrers") && stderr.contains("500"), "{stderr}");
}

/// A bundle's lock entries are pinned by digest: the walk reads each one's manifest with one GET
/// (checked against the digest), never a HEAD and then a GET, and each image's config once,
/// though both the walk and the archive need it (issue 18: the walk of the bench bundle spent 19
/// HEADs and 19 GETs on its images, and the transfer read 19 configs again).
#[test]
fn a_lock_entrys_manifest_is_read_with_one_request() {
    let server = FaultServer::start();
    let images: Vec<_> =
        (0..3u8).map(|i| server.seed_image(&format!("team/img-{i}"), "v1", vec![layer(10 + i, 1000)])).collect();
    let references: Vec<String> = images
        .iter()
        .enumerate()
        .map(|(i, image)| format!("{}/team/img-{i}@{}", server.host(), image.manifest_digest))
        .collect();
    seed_bundle(&server, "team/bundle", &references);

    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("bundle.tar");
    let output = ferry()
        .args(["export", "-b", &format!("{}/team/bundle:v1", server.host()), "-o"])
        .arg(&archive)
        .arg("--registry-insecure")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for (i, image) in images.iter().enumerate() {
        let path = format!("/team/img-{i}/manifests/{}", image.manifest_digest);
        assert_eq!(server.count(Some("GET"), &path), 1, "{path}: read once");
        assert_eq!(server.count(Some("HEAD"), &path), 0, "{path}: not resolved before it is read");
    }
    // The config the walk reads (is it a bundle?) is the one the archive gets, and the three
    // images share it: it is read once in all.
    let manifest: serde_json::Value = serde_json::from_slice(&images[0].manifest).unwrap();
    let config = format!("/blobs/{}", manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(server.count(Some("GET"), &config), 1, "{config}: read once");
    ferry().arg("verify").arg(&archive).assert().success();
}

/// Puts a bundle (Docker media types) into `repository` as `v1`, whose lock lists `references`;
/// returns its manifest's and its layer's digests.
fn seed_bundle(server: &FaultServer, repository: &str, references: &[String]) -> (String, String) {
    let mut lock = String::from("apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages:\n");
    for reference in references {
        lock.push_str(&format!("- image: {reference}\n"));
    }
    let bundle_layer = gzip(&tar_of(&[(".imgpkg/images.yml", lock.as_bytes())]));
    let config = br#"{"architecture":"","os":"","config":{"Labels":{"dev.carvel.imgpkg.bundle":"true"}}}"#.to_vec();
    let (config_size, layer_size) = (config.len(), bundle_layer.len());
    let config_digest = server.put_blob(repository, config);
    let layer_digest = server.put_blob(repository, bundle_layer);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let digest = server.put_manifest(repository, docker, manifest.into_bytes(), Some("v1"));
    (digest, layer_digest)
}

/// Issue 18, the walk's requests: a bundle is read once (its manifest, its layer) though the
/// relocation check reads it before the walk and the archive needs its layer too; images a
/// nested bundle lists again are not asked for again; and the check of whether the bundle's
/// repository holds its images (spec/cli.md PL-2, spec/imgpkg.md "Where a bundle is read from")
/// stops at the first one it does not (the bench bundle's walk made 91 requests, 25 of them
/// these).
#[test]
fn a_bundle_and_what_its_nested_bundle_lists_again_are_read_once() {
    let server = FaultServer::start();
    let images: Vec<String> = (0..10u8)
        .map(|i| {
            let image = server.seed_image(&format!("team/img-{i}"), "v1", vec![layer(20 + i, 1000)]);
            format!("{}/team/img-{i}@{}", server.host(), image.manifest_digest)
        })
        .collect();
    let (inner, inner_layer) = seed_bundle(&server, "team/inner", &images[..4]);
    let mut outer_lists = images.clone();
    outer_lists.push(format!("{}/team/inner@{inner}", server.host()));
    let (outer, outer_layer) = seed_bundle(&server, "team/bundle", &outer_lists);

    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("bundle.tar");
    let output = ferry()
        .args(["export", "-b", &format!("{}/team/bundle:v1", server.host()), "-o"])
        .arg(&archive)
        .args(["--registry-insecure", "--concurrency", "2"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for path in [format!("/team/bundle/manifests/{outer}"), format!("/team/inner/manifests/{inner}")] {
        assert_eq!(server.count(Some("GET"), &path), 1, "{path}: read once");
    }
    for path in [format!("/team/bundle/blobs/{outer_layer}"), format!("/team/inner/blobs/{inner_layer}")] {
        assert_eq!(server.count(Some("GET"), &path), 1, "{path}: the bundle layer is read once, walk and archive");
    }
    for (i, image) in images.iter().enumerate() {
        let digest = image.rsplit('@').next().unwrap();
        let path = format!("/team/img-{i}/manifests/{digest}");
        assert_eq!(server.count(Some("GET"), &path), 1, "{path}: read once, though two bundles list it");
    }
    // None of the eleven entries is in team/bundle: with two at a time, the first answers settle it.
    let asked = server.count(Some("HEAD"), "/team/bundle/manifests/sha256:");
    assert!(asked <= 3, "{asked} of 11 entries looked up in the bundle's repository");
    ferry().arg("verify").arg(&archive).assert().success();
}
