//! Issue 17, the registry client, against the `ferry` binary and the fault server (tests/fault):
//! credentials resolved once per registry (RF-1), one retry policy with `1 + N` attempts in all
//! and errors that show what the registry answered (RF-2), a chunked upload that starts a new
//! session when the registry forgets it, a blob of the wrong length as an integrity failure
//! whether its length is announced or chunked (RF-3), and `import -` telling a registry failure
//! from damage (RF-4). Rules cited are spec/cli.md "Registry flags".

mod cli;
mod fault;

use std::path::{Path, PathBuf};
use std::process::Output;

use cli::{ferry, ferry_at_home, text};
use fault::harness::{PASSWORD, USER, content};
use fault::{Fault, FaultServer, Rule};

const REPO: &str = "team/app";

/// Exports `reference` from the fault server into `archive` with these extra flags.
fn export(reference: &str, archive: &Path, flags: &[&str]) -> Output {
    ferry()
        .args(["export", "-i", reference, "-o"])
        .arg(archive)
        .arg("--registry-insecure")
        .args(flags)
        .output()
        .unwrap()
}

/// An archive of a fresh image with these layers, exported from `server`.
fn archive_of(server: &FaultServer, dir: &Path, layers: Vec<Vec<u8>>) -> PathBuf {
    let image = server.seed_image("source/app", "v1", layers);
    let archive = dir.join("app.tar");
    let output = export(&image.reference, &archive, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    archive
}

// ---------------------------------------------------------------------------------------------
// RF-2: one retry policy

/// A blob that always answers 503: `--registry-retry-count N` makes exactly `1 + N` GETs in all
/// (not N per layer: the client, the resumable body and the engine used to multiply theirs), and
/// the error shows the registry's own status.
#[test]
fn a_blob_that_always_fails_gets_exactly_one_plus_n_attempts() {
    for (retries, expected) in [(0, 1), (2, 3)] {
        let server = FaultServer::start();
        let image = server.seed_image(REPO, "v1", vec![content(1, 2000)]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &format!("/blobs/{digest}"), Fault::Status(503)).times(1000));
        let scratch = tempfile::tempdir().unwrap();
        let output =
            export(&image.reference, &scratch.path().join("a.tar"), &["--registry-retry-count", &retries.to_string()]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(
            server.count(Some("GET"), &format!("/blobs/{digest}")),
            expected,
            "--registry-retry-count {retries}: {stderr}"
        );
        assert!(stderr.contains("HTTP 503 FAULT"), "{stderr}");
    }
}

/// Refusals are not retried, and print as the registry sent them: a 403 is a 403 (once), a
/// 404 is a 404; nothing is turned into a 503.
#[test]
fn refusals_are_not_retried_and_keep_their_status() {
    for status in [403u16, 400] {
        let server = FaultServer::start();
        let image = server.seed_image(REPO, "v1", vec![content(2, 2000)]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &format!("/blobs/{digest}"), Fault::Status(status)).times(1000));
        let scratch = tempfile::tempdir().unwrap();
        let output = export(&image.reference, &scratch.path().join("a.tar"), &["--registry-retry-count", "3"]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(server.count(Some("GET"), &format!("/blobs/{digest}")), 1, "{status} is final: {stderr}");
        assert!(stderr.contains(&format!("HTTP {status} FAULT")), "{stderr}");
        assert!(!stderr.contains("HTTP 503"), "{stderr}");
    }
}

/// A monolithic PUT refused with 413 says 413 (not "503 SIZE_INVALID"), and the next attempt
/// goes in chunks.
#[test]
fn a_413_on_a_whole_upload_says_413_and_the_next_attempt_is_chunked() {
    let server = FaultServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let archive = archive_of(&server, scratch.path(), vec![content(3, 3 << 20)]);
    server.add(Rule::new(Some("PUT"), "/blobs/uploads/", Fault::StatusWithCode(413, "SIZE_INVALID".into())));
    let target = format!("{}/{REPO}", server.host());
    let output = ferry()
        .arg("import")
        .arg(&archive)
        .args(["--to-repo", &target, "--registry-insecure", "--registry-retry-count", "2"])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("HTTP 413 SIZE_INVALID"), "the warning shows the real status: {stderr}");
    assert!(!stderr.contains("503"), "{stderr}");
    assert!(server.count(Some("PATCH"), "/blobs/uploads/") >= 1, "the second attempt is chunked");
}

// ---------------------------------------------------------------------------------------------
// RF-3 (issue 17 defect 3): a forgotten upload session is started again

/// A registry restarted mid-upload answers the next PATCH with 404 BLOB_UPLOAD_UNKNOWN: the
/// chunked upload starts a new session (a new POST) and the import succeeds, as a monolithic
/// upload does.
#[test]
fn a_chunked_upload_whose_session_is_forgotten_starts_a_new_one() {
    let server = FaultServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let layer = content(4, 3 << 20);
    let archive = archive_of(&server, scratch.path(), vec![layer.clone()]);
    server.add(
        Rule::new(Some("PATCH"), "/blobs/uploads/", Fault::StatusWithCode(404, "BLOB_UPLOAD_UNKNOWN".into())).after(1),
    );
    let posts_before = server.count(Some("POST"), &format!("/v2/{REPO}/blobs/uploads/"));
    let target = format!("{}/{REPO}", server.host());
    let output = ferry()
        .arg("import")
        .arg(&archive)
        .args(["--to-repo", &target, "--registry-insecure", "--registry-chunk-size", "1MiB"])
        .args(["--registry-retry-count", "2"])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(server.faults_applied(), 1, "{stderr}");
    assert!(stderr.contains("BLOB_UPLOAD_UNKNOWN"), "the restart is reported: {stderr}");
    let digest = fault::digest_of(&layer);
    assert!(server.blob(REPO, &digest).is_some_and(|b| b == layer), "the blob committed whole");
    let posts = server.count(Some("POST"), &format!("/v2/{REPO}/blobs/uploads/")) - posts_before;
    assert!(posts >= 3, "the config, the layer, and the layer again in a new session: {posts}");
}

// ---------------------------------------------------------------------------------------------
// Small truths: a blob of the wrong length is an integrity failure either way

/// A registry serving a layer one byte short, with `Content-Length` saying so or with chunked
/// coding ending it, fails the export as an integrity failure (exit 3), without retrying.
#[test]
fn a_blob_of_the_wrong_length_exits_3_whether_its_length_is_announced_or_chunked() {
    for chunked in [false, true] {
        let server = FaultServer::start();
        let layer = content(5, 200_000);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        let short = layer[..layer.len() - 1].to_vec();
        let fault = if chunked { Fault::Chunked(Some(short)) } else { Fault::ReplaceBody(short) };
        server.add(Rule::new(Some("GET"), &format!("/blobs/{digest}"), fault).times(1000));
        let scratch = tempfile::tempdir().unwrap();
        let output = export(&image.reference, &scratch.path().join("a.tar"), &["--registry-retry-count", "2"]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "chunked={chunked}: {stderr}");
        assert!(stderr.contains("expected 200000 bytes"), "chunked={chunked}: {stderr}");
        assert_eq!(server.count(Some("GET"), &format!("/blobs/{digest}")), 1, "chunked={chunked}: not retried");
    }
}

// ---------------------------------------------------------------------------------------------
// RF-4 (issue 17 defect 4): `import -` tells a registry failure from damage

/// A 500 on the upload of a large blob in the middle of `import -` exits 1 (not 3), does not
/// call the intact stream damaged, and says how many blobs had been uploaded before.
#[test]
fn a_registry_failure_during_import_from_a_stream_is_not_called_damage() {
    let server = FaultServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let first = content(6, 6 << 20);
    let second = content(7, 5 << 20);
    let archive = archive_of(&server, scratch.path(), vec![first.clone(), second.clone()]);
    // The second large blob's PUT fails; the first has gone up by then (ferry writes blobs
    // largest first, so the 6 MiB layer streams past first).
    server.add(Rule::new(Some("PUT"), "/blobs/uploads/", Fault::Status(500)).after(1).times(1000));
    let target = format!("{}/{REPO}", server.host());
    let output = ferry()
        .args(["import", "-", "--to-repo", &target, "--registry-insecure", "--registry-retry-count", "1"])
        .pipe_stdin(&archive)
        .unwrap()
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("failed verification"), "{stderr}");
    assert!(stderr.contains("HTTP 500"), "{stderr}");
    assert!(stderr.contains("1 blob(s) (6291456 bytes) had been uploaded before the failure"), "{stderr}");
    assert!(server.blob(REPO, &fault::digest_of(&first)).is_some());
}

// ---------------------------------------------------------------------------------------------
// RF-1 (issue 17 defect 1): credentials resolved once per registry

/// Writes a `docker-credential-count` helper into `bin` that records each call in `log` and
/// answers the fault server's credentials.
fn counting_helper(bin: &Path, log: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin).unwrap();
    let helper = bin.join("docker-credential-count");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho \"$1\" >> '{}'\nprintf '{{\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Docker's `credsStore` helper is run once per registry for a whole multi-blob export and a
/// whole import (with their token fetches and retries), not once per request.
#[test]
fn the_credential_helper_runs_once_per_registry() {
    let server = FaultServer::start_with_auth(USER, PASSWORD);
    let home = tempfile::tempdir().unwrap();
    let docker = home.path().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(docker.join("config.json"), r#"{"credsStore":"count"}"#).unwrap();
    let bin = home.path().join("bin");
    let log = home.path().join("helper-calls");
    counting_helper(&bin, &log);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let calls = || std::fs::read_to_string(&log).unwrap_or_default().lines().count();

    let layers = (0..5).map(|i| content(10 + i, 50_000)).collect();
    let image = server.seed_image(REPO, "v1", layers);
    // One layer fails once: the retry must not resolve the credentials again.
    server.add(Rule::new(Some("GET"), &format!("/blobs/{}", image.layers[0].0), Fault::Status(503)));
    let archive = home.path().join("app.tar");
    let output = ferry_at_home(home.path())
        .env("PATH", &path)
        .args(["export", "-i", &image.reference, "-o"])
        .arg(&archive)
        .args(["--registry-insecure", "--registry-retry-count", "2"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(server.token_requests() >= 1, "the registry asked for credentials");
    assert_eq!(calls(), 1, "one helper call for the export's registry");

    let output = ferry_at_home(home.path())
        .env("PATH", &path)
        .arg("import")
        .arg(&archive)
        .args(["--to-repo", &format!("{}/copy/app", server.host()), "--registry-insecure"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(calls(), 2, "one more for the import's run");
}
