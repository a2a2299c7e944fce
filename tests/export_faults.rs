//! `ferry export` against the fault-injection registry (tests/fault): a blob served with the
//! wrong bytes fails the export with an integrity error naming the blob, and never leaves an
//! archive under the final name; a reset in the middle of a layer is resumed and the archive
//! still verifies.

mod cli;
mod fault;

use cli::ferry;
use fault::{Fault, FaultServer, Rule};

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
