//! `ferry export -b/-i/--lock` against a real registry (tests/support): a bundle with a nested
//! bundle, a two-platform index and layers shared between images, pushed to a test registry
//! with its lock pointing there (built by the fixture generator's own code, below); the archive
//! holds every blob once, verifies, is the same at any concurrency, and imports back.

mod cli;
mod seed;
mod support;

include!("seed/fixture_modules.rs");

use std::path::{Path, PathBuf};
use std::process::Output;

use cli::{ferry, json_of, text};
use seed::seed_bundle;
use serde_json::Value;
use support::{Registry, Variant};

fn export(args: &[&str], out: &Path) -> Output {
    ferry().arg("export").args(args).arg("-o").arg(out).arg("--registry-insecure").arg("--json").output().unwrap()
}

/// Nested bundles, a two-platform index, shared layers: one archive, each blob once,
/// byte-identical at concurrency 1 and 8, and it verifies.
#[test]
fn exports_a_nested_bundle_from_a_registry() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let root = seed_bundle(&registry, scratch.path());
    let reference = format!("{}/team/bundle:1.0", registry.host());

    let one = scratch.path().join("one.tar");
    let eight = scratch.path().join("eight.tar");
    let first = export(&["-b", &reference, "--concurrency", "1"], &one);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let second = export(&["-b", &reference, "--concurrency", "8"], &eight);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(std::fs::read(&one).unwrap() == std::fs::read(&eight).unwrap(), "AR-W6: byte-identical at any concurrency");

    let summary = json_of(&first);
    assert_eq!(summary["bundles"], 2);
    assert!(summary["dedupSavedBytes"].as_u64().unwrap() > 0, "the shared base layer is stored once");

    let verified = ferry().arg("verify").arg(&one).arg("--json").output().unwrap();
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    let inspected = json_of(&ferry().arg("inspect").arg(&one).arg("--json").output().unwrap());
    let artifacts = inspected["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 5, "root, nested bundle, app, svc index and sidecar: {inspected}");
    let root_entry = artifacts.iter().find(|a| a["root"] == true).unwrap();
    assert_eq!(root_entry["digest"], root.as_str());
    assert_eq!(root_entry["rootTag"], "1.0");
    let index = artifacts.iter().find(|a| a["kind"] == "index").unwrap();
    assert_eq!(index["platforms"].as_array().unwrap().len(), 2);
    let names: Vec<&str> = artifacts.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert!(names.iter().all(|n| n.starts_with(registry.host())), "{names:?}");
}

/// `-i INDEX --platform`: the archive holds only that platform's image, under its own digest
/// (as the index lists it), verifies, and imports; a platform the index lacks is named with
/// what it offers; `--platform` with `-b` is a usage error.
#[test]
fn exports_one_platform_of_an_index() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    seed_bundle(&registry, scratch.path());
    let whole = scratch.path().join("whole.tar");
    assert!(export(&["-b", &format!("{}/team/bundle:1.0", registry.host())], &whole).status.success());
    let inspected = json_of(&ferry().arg("inspect").arg(&whole).arg("--json").output().unwrap());
    let index = inspected["artifacts"].as_array().unwrap().iter().find(|a| a["kind"] == "index").unwrap().clone();
    let index_ref = index["name"].as_str().unwrap().to_string();
    let index_hex = index["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let index_json = std::process::Command::new("tar")
        .arg("-xOf")
        .arg(&whole)
        .arg(format!("blobs/sha256/{index_hex}"))
        .output()
        .unwrap();
    let index_manifest: Value = serde_json::from_slice(&index_json.stdout).unwrap();
    let arm64 = index_manifest["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|child| child["platform"]["architecture"] == "arm64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let one = scratch.path().join("arm64.tar");
    let output = export(&["-i", &index_ref, "--platform", "linux/arm64"], &one);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(json_of(&output)["images"], 1);
    let verified = ferry().arg("verify").arg(&one).output().unwrap();
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    let inspected = json_of(&ferry().arg("inspect").arg(&one).arg("--json").output().unwrap());
    let artifacts = inspected["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{inspected}");
    assert_eq!(artifacts[0]["kind"], "image");
    assert_eq!(artifacts[0]["digest"], arm64.as_str());
    assert!(std::fs::metadata(&one).unwrap().len() < std::fs::metadata(&whole).unwrap().len());
    let imported = ferry()
        .arg("import")
        .arg(&one)
        .args(["--to-repo", &format!("{}/mirror/svc", registry.host()), "--registry-insecure", "--json"])
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    // copy (registry to registry) takes the same filter.
    let copied = ferry()
        .args(["copy", "-i", &index_ref, "--platform", "linux/arm64"])
        .args(["--to-repo", &format!("{}/mirror/svc-arm64", registry.host()), "--registry-insecure"])
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", text(&copied.stderr));
    let tags = ferry()
        .args(["tag", "list", &format!("{}/mirror/svc-arm64", registry.host()), "--imgpkg-internal-tags"])
        .arg("--registry-insecure")
        .output()
        .unwrap();
    let arm64_tag = format!("{}.imgpkg", arm64.replace(':', "-"));
    assert_eq!(text(&tags.stdout).trim(), arm64_tag, "{}", text(&tags.stderr));

    let missing = export(&["-i", &index_ref, "--platform", "linux/s390x"], &scratch.path().join("x.tar"));
    assert_eq!(missing.status.code(), Some(1));
    let message = text(&missing.stderr);
    assert!(message.contains("no image for linux/s390x") && message.contains("linux/amd64"), "{message}");
    let refused = export(
        &["-b", &format!("{}/team/bundle:1.0", registry.host()), "--platform", "linux/arm64"],
        &scratch.path().join("y.tar"),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
}

/// `--lock` with a BundleLock exports the bundle and keeps its tag; `-i` of a bundle is refused.
#[test]
fn exports_from_a_bundle_lock_and_refuses_i_for_bundles() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let root = seed_bundle(&registry, scratch.path());
    let lock: PathBuf = scratch.path().join("bundle.lock.yml");
    std::fs::write(
        &lock,
        format!(
            "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nbundle:\n  image: {}/team/bundle@{root}\n  tag: \"1.0\"\nkind: BundleLock\n",
            registry.host()
        ),
    )
    .unwrap();
    let archive = scratch.path().join("lock.tar");
    let output = export(&["--lock", lock.to_str().unwrap()], &archive);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(json_of(&output)["bundles"], 2);

    let refused = export(&["-i", &format!("{}/team/bundle:1.0", registry.host())], &scratch.path().join("x.tar"));
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("is a bundle; use -b"), "{}", text(&refused.stderr));
}

/// A lock entry missing from its registry stops the export with its name, and nothing is
/// written under the final name.
#[test]
fn a_missing_lock_entry_is_named() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    seed_bundle(&registry, scratch.path());
    // Delete the app image from the registry (deletes are enabled in the harness).
    let app = format!("{}/v2/team/app/manifests/", registry.url());
    let head = std::process::Command::new("curl")
        .args(["-sfI", "-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .arg(format!("{app}1.0"))
        .output()
        .unwrap();
    let digest = text(&head.stdout)
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("docker-content-digest: ").map(|d| d.trim().to_string()))
        .expect("the app image's digest");
    let deleted = std::process::Command::new("curl")
        .args(["-sf", "-X", "DELETE"])
        .arg(format!("{app}{digest}"))
        .status()
        .unwrap();
    assert!(deleted.success());

    let archive = scratch.path().join("missing.tar");
    let output = export(&["-b", &format!("{}/team/bundle:1.0", registry.host())], &archive);
    assert_eq!(output.status.code(), Some(1));
    let message = text(&output.stderr);
    assert!(message.contains(&format!("{}/team/app@{digest}", registry.host())), "{message}");
    assert!(!archive.exists());
}

/// imgpkg's spelling: `copy -b REF --to-tar FILE` writes the same archive as `export`, and
/// `copy --tar FILE --to-repo REPO` imports it.
#[test]
fn copy_keeps_imgpkg_spelling() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    seed_bundle(&registry, scratch.path());
    let reference = format!("{}/team/bundle:1.0", registry.host());
    let exported = scratch.path().join("export.tar");
    let copied = scratch.path().join("copy.tar");
    assert!(export(&["-b", &reference], &exported).status.success());
    let output =
        ferry().args(["copy", "-b", &reference, "--to-tar"]).arg(&copied).arg("--registry-insecure").output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(std::fs::read(&exported).unwrap() == std::fs::read(&copied).unwrap());

    let imported = ferry()
        .args(["copy", "--tar"])
        .arg(&copied)
        .args(["--to-repo", &format!("{}/mirror/bundle", registry.host()), "--registry-insecure", "--json"])
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert_eq!(json_of(&imported)["locationsRecords"], 2);
}
