//! `ferry import` against a real registry (tests/support): the round trip from an archive into
//! one repository with imgpkg's tags and ImageLocations records, idempotent re-runs, fail-closed
//! on damaged archives, and `--lock-output`. Rules cited are from spec/cli.md "import".

mod cli;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use cli::{ferry_at_home, json_of, tag_digests, text};
use serde_json::Value;
use support::{Registry, Variant, write_image_layout};

fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(relative)
}

fn export_fixture(layout: &str, dir: &Path) -> PathBuf {
    let archive = dir.join(format!("{layout}.tar"));
    let output = ferry_at_home(dir)
        .args(["export", "-q", "--oci-layout"])
        .arg(fixture(&format!("layouts/{layout}")))
        .arg("-o")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    archive
}

fn import(archive: &Path, registry: &Registry, repo: &str, home: &Path, extra: &[&str]) -> Output {
    ferry_at_home(home)
        .arg("import")
        .arg(archive)
        .args(["--to-repo", &format!("{}/{repo}", registry.host()), "--json"])
        .args(registry.access_flags())
        .args(extra)
        .output()
        .unwrap()
}

/// Every tag of the repository with its digest, internal tags included.
fn tags(registry: &Registry, repo: &str, home: &Path) -> BTreeMap<String, String> {
    let output = ferry_at_home(home)
        .args(["tag", "list", &format!("{}/{repo}", registry.host()), "--digests", "--imgpkg-internal-tags", "--json"])
        .args(registry.access_flags())
        .output()
        .unwrap();
    if !output.status.success() {
        return BTreeMap::new();
    }
    tag_digests(&output)
}

fn skopeo_raw(registry: &Registry, reference: &str) -> Vec<u8> {
    let output = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(registry.skopeo_flags(""))
        .arg(format!("docker://{}/{reference}", registry.host()))
        .output()
        .unwrap();
    assert!(output.status.success(), "skopeo inspect {reference}: {}", text(&output.stderr));
    output.stdout
}

fn blob(registry: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let output = std::process::Command::new("curl")
        .args(["-sf"])
        .args(registry.curl_args())
        .args(registry.credentials().map(|(u, p)| vec!["-u".to_string(), format!("{u}:{p}")]).unwrap_or_default())
        .arg(format!("{}/v2/{repo}/blobs/{digest}", registry.url()))
        .output()
        .unwrap();
    assert!(output.status.success(), "GET blob {digest}");
    output.stdout
}

/// The round trip: every manifest of the archive lands in one repository with its digest,
/// tagged `sha256-<hex>.imgpkg`; each bundle gets an ImageLocations record whose content is
/// exactly imgpkg's; `--lock-output` writes a BundleLock; a re-import uploads nothing.
#[test]
fn bundle_round_trip_into_one_repository() {
    let registry = Registry::start(Variant::TlsBasicAuth);
    let scratch = tempfile::tempdir().unwrap();
    let archive = export_fixture("bundle", scratch.path());
    let lock = scratch.path().join("bundle.lock.yml");

    let first =
        import(&archive, &registry, "relocated/bundle", scratch.path(), &["--lock-output", lock.to_str().unwrap()]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let summary = json_of(&first);
    assert!(summary["blobsUploaded"].as_u64().unwrap() > 0);
    assert_eq!(summary["locationsRecords"], 2);

    // Every top-level artifact of the archive is tagged sha256-<hex>.imgpkg with its digest.
    let inspect = ferry_at_home(scratch.path()).arg("inspect").arg(&archive).arg("--json").output().unwrap();
    let artifacts = json_of(&inspect)["artifacts"].as_array().unwrap().clone();
    let found: BTreeSet<(String, String)> = tags(&registry, "relocated/bundle", scratch.path()).into_iter().collect();
    for artifact in &artifacts {
        let digest = artifact["digest"].as_str().unwrap();
        let tag = format!("{}.imgpkg", digest.replace(':', "-"));
        assert!(found.contains(&(tag.clone(), digest.to_string())), "missing {tag}: {found:?}");
        // Index children are pushed by digest too.
        for platform_child in skopeo_manifests(&registry, digest) {
            skopeo_raw(&registry, &format!("relocated/bundle@{platform_child}"));
        }
    }

    // The root bundle's ImageLocations record, read back from the registry.
    let root = artifacts.iter().find(|a| a["root"] == true).unwrap();
    let root_digest = root["digest"].as_str().unwrap();
    let record_tag = format!("{}.image-locations.imgpkg", root_digest.replace(':', "-"));
    let record: Value =
        serde_json::from_slice(&skopeo_raw(&registry, &format!("relocated/bundle:{record_tag}"))).unwrap();
    assert_eq!(record["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(record["layers"][0]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip");
    let config: Value =
        serde_json::from_slice(&blob(&registry, "relocated/bundle", record["config"]["digest"].as_str().unwrap()))
            .unwrap();
    assert_eq!(config["config"], serde_json::json!({}));
    let layer = blob(&registry, "relocated/bundle", record["layers"][0]["digest"].as_str().unwrap());
    let yaml = ferry::ops::bundle::locations::read_layer(&layer, "record").expect("image-locations.yml in the layer");
    let mut expected: Vec<(String, bool)> = root["lock"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let image = entry["image"].as_str().unwrap().to_string();
            let is_bundle = artifacts.iter().any(|a| a["name"] == image.as_str() && a["kind"] == "bundle");
            (image, is_bundle)
        })
        .collect();
    expected.sort();
    let mut want = String::from("---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n");
    for (image, is_bundle) in &expected {
        want.push_str(&format!("- image: {image}\n  isBundle: {is_bundle}\n"));
    }
    want.push_str("kind: ImageLocations\n");
    assert_eq!(yaml, want);
    assert!(expected.iter().any(|(_, is_bundle)| *is_bundle), "the nested bundle is marked isBundle: true");

    let lock_text = std::fs::read_to_string(&lock).unwrap();
    assert_eq!(
        lock_text,
        format!(
            "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nbundle:\n  image: {}/relocated/bundle@{root_digest}\nkind: BundleLock\n",
            registry.host()
        )
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777, 0o600);

    let again = import(&archive, &registry, "relocated/bundle", scratch.path(), &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(json_of(&again)["blobsUploaded"], 0, "a re-import uploads nothing");
    let after: BTreeSet<(String, String)> = tags(&registry, "relocated/bundle", scratch.path()).into_iter().collect();
    assert_eq!(after, found, "a re-import changes no tag");
}

/// The digests of an index's children (none for an image manifest).
fn skopeo_manifests(registry: &Registry, digest: &str) -> Vec<String> {
    let raw: Value = serde_json::from_slice(&skopeo_raw(registry, &format!("relocated/bundle@{digest}"))).unwrap();
    raw["manifests"]
        .as_array()
        .map(|list| list.iter().map(|m| m["digest"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Fail closed: no tampered archive pushes anything.
#[test]
fn tampered_archives_push_nothing() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("tampered")).unwrap() {
        let archive = entry.unwrap().path();
        let output = import(&archive, &registry, "tampered/x", scratch.path(), &[]);
        assert_eq!(output.status.code(), Some(3), "{}: {}", archive.display(), text(&output.stderr));
        assert!(
            text(&output.stderr).contains("nothing was pushed") || text(&output.stderr).contains("AR-R"),
            "{}",
            text(&output.stderr)
        );
    }
    assert!(tags(&registry, "tampered/x", scratch.path()).is_empty(), "nothing may be pushed");
    let catalog = std::process::Command::new("curl")
        .args(["-sf"])
        .arg(format!("{}/v2/_catalog", registry.url()))
        .output()
        .unwrap();
    assert_eq!(text(&catalog.stdout).trim(), r#"{"repositories":[]}"#);
}

/// An archive exported without its non-distributable layers cannot be imported offline.
#[test]
fn omitted_non_distributable_layers_are_explained() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let archive = export_fixture("nondistributable", scratch.path());
    let output = import(&archive, &registry, "nd/x", scratch.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("--include-non-distributable-layers"), "{}", text(&output.stderr));
}

/// Registry to archive to another registry: the root keeps its tag, the source registry is
/// stopped before the import (it is never contacted), and an ImagesLock records the new place.
#[test]
fn image_keeps_its_tag_and_never_contacts_the_source() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("app.tar");
    let digest;
    {
        let source = Registry::start(Variant::Plain);
        let layout = scratch.path().join("layout");
        digest = write_image_layout(&layout, "app", &[("a.txt", b"a")]).manifest_digest;
        source.push_layout(&layout, "app", "team/app:1.2.3");
        let output = ferry_at_home(scratch.path())
            .args(["export", "-q", "-i", &format!("{}/team/app:1.2.3", source.host()), "-o"])
            .arg(&archive)
            .args(source.access_flags())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let target = Registry::start(Variant::TlsTokenAuth);
    let lock = scratch.path().join("images.lock.yml");
    let output = import(&archive, &target, "mirror/app", scratch.path(), &["--lock-output", lock.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let found: BTreeSet<(String, String)> = tags(&target, "mirror/app", scratch.path()).into_iter().collect();
    assert!(found.contains(&("1.2.3".to_string(), digest.clone())), "{found:?}");
    assert!(found.contains(&(format!("{}.imgpkg", digest.replace(':', "-")), digest.clone())));
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        format!(
            "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n- image: {}/mirror/app@{digest}\nkind: ImagesLock\n",
            target.host()
        )
    );
}

/// Two small images pushed as `team/one:1` and `team/two:1`; their manifest digests.
fn two_images(registry: &Registry, scratch: &Path) -> (String, String) {
    let layout = scratch.join("layout");
    let one = write_image_layout(&layout, "one", &[("1.txt", b"1")]).manifest_digest;
    let two = write_image_layout(&layout, "two", &[("2.txt", b"2")]).manifest_digest;
    registry.push_layout(&layout, "one", "team/one:1");
    registry.push_layout(&layout, "two", "team/two:1");
    (one, two)
}

/// An ImagesLock goes through export and import (and through `copy --to-repo`) keeping its
/// entries' order and annotations in `--lock-output`, as imgpkg does.
#[test]
fn an_images_lock_keeps_its_order_and_annotations() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let (one, two) = two_images(&registry, scratch.path());
    // The lock lists them in the reverse of digest order, one with annotations, one without.
    let (first, second) = if one > two { (&one, &two) } else { (&two, &one) };
    let host = registry.host();
    let input = scratch.path().join("images.yml");
    std::fs::write(
        &input,
        format!(
            "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n- annotations:\n    kbld.carvel.dev/id: first\n    note: \"kept: yes\"\n  image: {host}/team/{}@{first}\n- image: {host}/team/{}@{second}\nkind: ImagesLock\n",
            if first == &one { "one" } else { "two" },
            if second == &one { "one" } else { "two" },
        ),
    )
    .unwrap();
    let expected = |repo: &str| {
        format!(
            "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n- annotations:\n    kbld.carvel.dev/id: first\n    note: \"kept: yes\"\n  image: {host}/{repo}@{first}\n- image: {host}/{repo}@{second}\nkind: ImagesLock\n"
        )
    };

    let archive = scratch.path().join("images.tar");
    let output = ferry_at_home(scratch.path())
        .args(["export", "-q", "--lock", input.to_str().unwrap(), "-o", archive.to_str().unwrap()])
        .args(registry.access_flags())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lock = scratch.path().join("imported.yml");
    let output =
        import(&archive, &registry, "mirror/images", scratch.path(), &["--lock-output", lock.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), expected("mirror/images"));

    let copied = scratch.path().join("copied.yml");
    let output = ferry_at_home(scratch.path())
        .args(["copy", "--lock", input.to_str().unwrap(), "--to-repo", &format!("{host}/prod/images")])
        .args(["--lock-output", copied.to_str().unwrap()])
        .args(registry.access_flags())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_to_string(&copied).unwrap(), expected("prod/images"));
}

/// An interrupted import, re-run, uploads only what is missing: blobs removed from the target
/// after a first import are exactly what the second one uploads.
#[test]
fn a_rerun_uploads_only_what_is_missing() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let archive = export_fixture("multiarch", scratch.path());
    let first = import(&archive, &registry, "partial/multi", scratch.path(), &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let uploaded = json_of(&first)["blobsUploaded"].as_u64().unwrap();
    assert!(uploaded >= 3);

    // Take two layers away, as if the first run had stopped before them.
    let index: Value =
        serde_json::from_slice(&std::fs::read(fixture("layouts/multiarch/index.json")).unwrap()).unwrap();
    let index_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let index_bytes =
        std::fs::read(fixture(&format!("layouts/multiarch/blobs/sha256/{}", &index_digest[7..]))).unwrap();
    let child: Value = serde_json::from_slice(&index_bytes).unwrap();
    let child_digest = child["manifests"][0]["digest"].as_str().unwrap();
    let child_bytes =
        std::fs::read(fixture(&format!("layouts/multiarch/blobs/sha256/{}", &child_digest[7..]))).unwrap();
    let manifest: Value = serde_json::from_slice(&child_bytes).unwrap();
    let layers: Vec<&str> =
        manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap()).collect();
    for digest in &layers {
        let deleted = std::process::Command::new("curl")
            .args(["-sf", "-X", "DELETE"])
            .arg(format!("{}/v2/partial/multi/blobs/{digest}", registry.url()))
            .status()
            .unwrap();
        assert!(deleted.success(), "delete {digest}");
    }
    let second = import(&archive, &registry, "partial/multi", scratch.path(), &[]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(json_of(&second)["blobsUploaded"].as_u64().unwrap(), layers.len() as u64, "only the missing layers");
}

/// An unauthorised target ends with exit 1 and says how to pass credentials.
#[test]
fn an_unauthorised_target_is_explained() {
    let registry = Registry::start(Variant::TlsBasicAuth);
    let scratch = tempfile::tempdir().unwrap();
    let archive = export_fixture("plain-oci", scratch.path());
    let output = ferry_at_home(scratch.path())
        .arg("import")
        .arg(&archive)
        .args(["--to-repo", &format!("{}/denied/x", registry.host())])
        .args(["--registry-ca-cert-path", registry.ca_cert_path().unwrap().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = text(&output.stderr);
    assert!(message.contains("HTTP 401") && message.contains("--registry-username"), "{message}");
}

/// AR-R17 (review of the change): a lock whose entries `repo:TAG@digest` give two images one
/// tag is refused by export before anything is fetched (it wrote an archive every reader
/// refuses), and by copy before anything is pushed (the tag named whichever went last).
#[test]
fn a_lock_giving_two_images_one_tag_is_refused_before_any_transfer() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let (one, two) = two_images(&registry, scratch.path());
    let host = registry.host();
    let input = scratch.path().join("images.yml");
    let lock = format!(
        "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n- image: {host}/team/one:1@{one}\n- image: {host}/team/two:1@{two}\nkind: ImagesLock\n"
    );
    std::fs::write(&input, lock).unwrap();
    let archive = scratch.path().join("images.tar");
    let exported = ferry_at_home(scratch.path())
        .args(["export", "-q", "--lock", input.to_str().unwrap(), "-o", archive.to_str().unwrap()])
        .args(registry.access_flags())
        .output()
        .unwrap();
    assert_eq!(exported.status.code(), Some(1), "{}", text(&exported.stderr));
    assert!(text(&exported.stderr).contains("tag 1 would name both"), "{}", text(&exported.stderr));
    assert!(!archive.exists() && !scratch.path().join("images.tar.partial").exists(), "nothing was written");
    let copied = ferry_at_home(scratch.path())
        .args(["copy", "--lock", input.to_str().unwrap(), "--to-repo", &format!("{host}/mirror/images")])
        .args(registry.access_flags())
        .output()
        .unwrap();
    assert_eq!(copied.status.code(), Some(1), "{}", text(&copied.stderr));
    assert!(text(&copied.stderr).contains("AR-R17"), "{}", text(&copied.stderr));
    assert!(tags(&registry, "mirror/images", scratch.path()).is_empty(), "nothing was tagged");
}
