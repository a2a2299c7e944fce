//! End-to-end tests of `ferry export --oci-layout`, `verify` and `inspect` on the committed
//! fixtures (fixtures/README.md), with skopeo and umoci as independent readers. Each test cites
//! the rule of spec/archive.md or spec/cli.md it holds.

mod cli;

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use cli::{ferry, json_of};
use serde_json::Value;

fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(relative)
}

fn export(layout: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    ferry()
        .args(["export", "--oci-layout"])
        .arg(fixture(&format!("layouts/{layout}")))
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn export_ok(layout: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{layout}.tar"));
    let result = export(layout, &out, &[]);
    assert!(result.status.success(), "export {layout}: {}", String::from_utf8_lossy(&result.stderr));
    out
}

fn verify_json(archive: &Path) -> (i32, Value) {
    let output = ferry().arg("verify").arg(archive).arg("--json").output().unwrap();
    (output.status.code().unwrap(), json_of(&output))
}

const LAYOUTS: [&str; 5] = ["plain-oci", "docker-schema2", "multiarch", "bundle", "nondistributable"];

/// AR-1, AR-V1..V3: what ferry writes, ferry verifies.
#[test]
fn every_fixture_exports_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    for layout in LAYOUTS {
        let archive = export_ok(layout, dir.path());
        let (code, report) = verify_json(&archive);
        assert_eq!(code, 0, "{layout}: {report}");
        assert_eq!(report["ok"], true);
        assert!(report["identity"].as_str().unwrap().starts_with("sha256:"));
        assert!(!dir.path().join(format!("{layout}.tar.partial")).exists(), "AR-W2: no partial file left");
    }
}

/// AR-W6: the same input with any concurrency gives a byte-identical archive.
#[test]
fn export_is_deterministic_across_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.tar");
    let eight = dir.path().join("eight.tar");
    assert!(export("bundle", &one, &["--concurrency", "1"]).status.success());
    assert!(export("bundle", &eight, &["--concurrency", "8"]).status.success());
    assert!(std::fs::read(&one).unwrap() == std::fs::read(&eight).unwrap(), "archives differ");
}

/// AR-W1, AR-W4: entry order and fixed header fields, as GNU tar lists them.
#[test]
fn archive_entries_are_ordered_with_fixed_headers() {
    let dir = tempfile::tempdir().unwrap();
    let archive = export_ok("plain-oci", dir.path());
    let listing = Process::new("tar").arg("tvf").arg(&archive).output().unwrap();
    let text = String::from_utf8(listing.stdout).unwrap();
    let names: Vec<&str> = text.lines().map(|line| line.rsplit(' ').next().unwrap()).collect();
    assert_eq!(&names[..4], ["oci-layout", "index.json", "blobs/", "blobs/sha256/"]);
    for line in text.lines() {
        assert!(line.contains(" 0/0 "), "uid/gid 0: {line}");
        assert!(line.contains("1970-01-01 00:00"), "mtime 0: {line}");
        assert!(line.starts_with("-rw-r--r--") || line.starts_with("drwxr-xr-x"), "modes: {line}");
    }
}

/// AR-3, AR-6 and spec/cli.md "inspect": bundles, nesting, lock entries, platforms.
#[test]
fn inspect_shows_bundles_lock_entries_and_platforms() {
    let dir = tempfile::tempdir().unwrap();
    let archive = export_ok("bundle", dir.path());
    let output = ferry().arg("inspect").arg(&archive).arg("--json").output().unwrap();
    assert!(output.status.success());
    let report = json_of(&output);
    let artifacts = report["artifacts"].as_array().unwrap();
    let bundles: Vec<&Value> = artifacts.iter().filter(|a| a["kind"] == "bundle").collect();
    assert_eq!(bundles.len(), 2, "root and nested bundle: {report}");
    let root = bundles.iter().find(|a| a["root"] == true).expect("a root bundle");
    assert_eq!(root["lock"].as_array().unwrap().len(), 3);
    assert_eq!(root["annotations"]["dev.ferry.bundle"], "true");
    let index = artifacts.iter().find(|a| a["kind"] == "index").expect("the 2-platform index");
    assert_eq!(index["platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]));
    assert!(index["originalRef"].as_str().unwrap().contains("@sha256:"));
    assert!(
        report["totalBytes"].as_u64().unwrap() > report["uniqueBytes"].as_u64().unwrap(),
        "shared layers are deduplicated"
    );

    let human = ferry().arg("inspect").arg(&archive).output().unwrap();
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("bundle  bundle:1.0  [root]"), "{text}");
    assert!(text.contains("kbld.carvel.dev/id"), "{text}");
}

/// spec/cli.md "export": a bundle whose lock entries are not all in the layout is refused, and
/// the missing entry is named; nothing is written.
#[test]
fn export_names_missing_lock_entries() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("missing.tar");
    let result = export("bundle-missing-entry", &out, &[]);
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("does not hold") && stderr.contains("@sha256:"), "{stderr}");
    assert!(!out.exists());
}

/// AR-4: non-distributable layers are left out (and recorded) unless asked for.
#[test]
fn non_distributable_layers_are_left_out_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nd.tar");
    let result = export("nondistributable", &out, &["--json"]);
    assert!(result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("non-distributable layer"));
    let summary = json_of(&result);
    assert_eq!(summary["omittedLayers"].as_array().unwrap().len(), 1);
    let (code, report) = verify_json(&out);
    assert_eq!(code, 0, "{report}");
    assert!(report["warnings"].to_string().contains("left out at export"));

    let full = dir.path().join("nd-full.tar");
    let result = export("nondistributable", &full, &["--include-non-distributable-layers", "--json"]);
    assert!(result.status.success());
    assert!(json_of(&result)["omittedLayers"].as_array().unwrap().is_empty());
    assert!(std::fs::metadata(&full).unwrap().len() > std::fs::metadata(&out).unwrap().len());
}

/// AR-R1..R9, AR-V1..V3: each tampered archive fails verify with exit 3 and its own message.
#[test]
fn tampered_archives_fail_verify_with_a_clear_message() {
    let cases = [
        ("flipped-layer-byte", "content hashes to"),
        ("truncated", "truncated"),
        ("wrong-size-descriptor", "AR-R9"),
        ("missing-blob", "missing from the archive"),
        ("symlink-entry", "symbolic link"),
        ("dotdot-entry", "contains '..'"),
        ("absolute-path", "absolute path"),
        ("duplicate-entry", "more than once"),
        ("missing-manifest", "not found"),
        ("malformed-digest", "sha256:XYZ"),
        ("oversize-manifest", "limit"),
    ];
    for (name, expected) in cases {
        let archive = fixture(&format!("tampered/{name}.tar"));
        assert!(archive.exists(), "fixture {name} is missing; run make fixtures");
        let output = ferry().arg("verify").arg(&archive).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{name}: stdout {stdout} stderr {stderr}");
        assert!(stdout.contains(expected), "{name}: expected {expected:?} in {stdout}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let (code, report) = verify_json(&archive);
        assert_eq!(code, 3);
        assert_eq!(report["ok"], false);
    }
}

/// spec/cli.md "exit codes": a missing file is a failure (1), a bad flag is usage (2).
#[test]
fn exit_codes_distinguish_failure_and_usage() {
    ferry().args(["verify", "/nonexistent/archive.tar"]).assert().code(1);
    ferry().args(["verify", "--no-such-flag"]).assert().code(2);
}

/// AR-R4, AR-R5: an archive of a layout made by GNU tar (with `./` prefixes) reads fine.
#[test]
fn reads_layouts_archived_by_gnu_tar() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("gnu.tar");
    let status = Process::new("tar")
        .arg("-C")
        .arg(fixture("layouts/multiarch"))
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let (code, report) = verify_json(&archive);
    assert_eq!(code, 0, "{report}");
}

/// AR-R11, AR-R12 hold ferry's own archives to what ferry writes; an archive another tool wrote
/// (here skopeo's oci-archive; GNU tar's is read above) is held to the OCI rules alone, from a
/// file and from a pipe.
#[test]
fn archives_other_tools_wrote_verify() {
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("skopeo.tar");
    let layout = fixture("layouts/plain-oci");
    let name =
        index_entries(&layout)[0]["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap().to_string();
    let copied = Process::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{}:{name}", layout.display()))
        .arg(format!("oci-archive:{}:app", written.display()))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let (code, report) = verify_json(&written);
    assert_eq!(code, 0, "{report}");
    let piped = ferry().args(["verify", "-", "--json"]).write_stdin(std::fs::read(&written).unwrap()).output().unwrap();
    assert_eq!(piped.status.code(), Some(0), "{}", String::from_utf8_lossy(&piped.stdout));
}

fn index_entries(path: &Path) -> Vec<Value> {
    let index: Value = serde_json::from_slice(&std::fs::read(path.join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array().unwrap().clone()
}

/// AR-1, AR-2: skopeo reads the archive by name and copies it to a layout keeping every digest.
#[test]
fn skopeo_reads_the_archive_and_keeps_every_digest() {
    let dir = tempfile::tempdir().unwrap();
    for layout in ["plain-oci", "docker-schema2", "multiarch"] {
        let archive = export_ok(layout, dir.path());
        let extracted = dir.path().join(format!("{layout}-x"));
        std::fs::create_dir(&extracted).unwrap();
        assert!(Process::new("tar").arg("-C").arg(&extracted).arg("-xf").arg(&archive).status().unwrap().success());
        let entry = &index_entries(&extracted)[0];
        let name = entry["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap();
        let digest = entry["digest"].as_str().unwrap();
        // containers/image (skopeo 1.9) selects by name only entries with OCI media types; a
        // Docker schema 2 entry is read as the archive's only entry (spec/archive.md AR-1).
        let source = if entry["mediaType"].as_str().unwrap().contains("docker") {
            format!("oci-archive:{}", archive.display())
        } else {
            format!("oci-archive:{}:{name}", archive.display())
        };

        let raw = Process::new("skopeo").args(["inspect", "--raw"]).arg(&source).output().unwrap();
        assert!(raw.status.success(), "{layout}: {}", String::from_utf8_lossy(&raw.stderr));
        let raw_digest = format!("sha256:{}", sha256_hex(&raw.stdout));
        assert_eq!(raw_digest, digest, "{layout}: skopeo sees the same manifest bytes");

        let copy = dir.path().join(format!("{layout}-copy"));
        let copied = Process::new("skopeo")
            .args(["copy", "--all", "--preserve-digests", "--quiet"])
            .arg(&source)
            .arg(format!("oci:{}:{name}", copy.display()))
            .output()
            .unwrap();
        assert!(copied.status.success(), "{layout}: {}", String::from_utf8_lossy(&copied.stderr));
        assert_eq!(index_entries(&copy)[0]["digest"], digest, "{layout}: digest kept through skopeo copy");
        for blob in std::fs::read_dir(copy.join("blobs/sha256")).unwrap() {
            let blob = blob.unwrap();
            assert!(extracted.join("blobs/sha256").join(blob.file_name()).exists(), "{layout}: skopeo made a new blob");
        }
    }
}

/// AR-1: umoci accepts the extracted layout.
#[test]
fn umoci_accepts_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let archive = export_ok("plain-oci", dir.path());
    let extracted = dir.path().join("x");
    std::fs::create_dir(&extracted).unwrap();
    assert!(Process::new("tar").arg("-C").arg(&extracted).arg("-xf").arg(&archive).status().unwrap().success());
    let stat = Process::new("umoci")
        .arg("stat")
        .arg("--image")
        .arg(format!("{}:plain:1.0", extracted.display()))
        .output()
        .unwrap();
    assert!(stat.status.success(), "{}", String::from_utf8_lossy(&stat.stderr));
    let list = Process::new("umoci").arg("ls").arg("--layout").arg(&extracted).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("plain:1.0"));
}

fn sha256_hex(bytes: &[u8]) -> String {
    ferry::model::sha256_digest(bytes).hex()
}
