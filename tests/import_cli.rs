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

/// spec/imgpkg.md "Import": a reference that names a tag and a digest (`REPO:TAG@DIGEST`) is a
/// digest reference to imgpkg. Checked against the real imgpkg, into repositories side by side:
/// the entries of an ImagesLock and a root named that way get no human tag (so two entries
/// `one:1@..` and `two:1@..` go into one repository; ferry refused that lock, AR-R17, and tagged
/// the root), and a bundle's ImageLocations record lists `REPO@DIGEST` (ferry's kept the tag, so
/// its record had another digest than imgpkg's). A root named by tag alone keeps its tag, and a
/// repository alone means `latest` (ferry gave it no tag, in the target nor in the BundleLock);
/// `--lock-output` is byte for byte imgpkg's; `--repo-based-tags` names the tags as imgpkg's.
#[test]
fn references_with_a_tag_and_a_digest_are_tagged_and_recorded_as_imgpkg_does() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path();
    let (one, two) = two_images(&registry, home);
    let host = registry.host();
    let images = format!(
        "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n- image: {host}/team/one:1@{one}\n- image: {host}/team/two:1@{two}\nkind: ImagesLock\n"
    );
    let lock = home.join("images.yml");
    std::fs::write(&lock, &images).unwrap();
    std::fs::create_dir_all(home.join("bundle/.imgpkg")).unwrap();
    std::fs::write(home.join("bundle/.imgpkg/images.yml"), &images).unwrap();
    // The bundle as team/bundle:v1 and as team/bundle (latest); team/one as latest too.
    for at in ["team/bundle:v1", "team/bundle"] {
        let pushed = ferry_at_home(home)
            .args(["push", "-b", &format!("{host}/{at}"), "-f"])
            .arg(home.join("bundle"))
            .args(registry.access_flags())
            .output()
            .unwrap();
        assert!(pushed.status.success(), "{}", text(&pushed.stderr));
    }
    registry.push_layout(&home.join("layout"), "one", "team/one:latest");
    let bundle = tags(&registry, "team/bundle", home)["v1"].clone();
    let imgpkg = |args: &[&str]| {
        let output = support::run_bounded(
            std::process::Command::new(support::imgpkg())
                .arg("copy")
                .args(args)
                .arg("--registry-insecure")
                .env("HOME", home),
            std::time::Duration::from_secs(120),
        );
        assert!(output.status.success(), "imgpkg {args:?}: {}", text(&output.stderr));
    };
    let ferry_copy = |args: &[&str]| {
        let output = ferry_at_home(home).arg("copy").args(args).args(registry.access_flags()).output().unwrap();
        assert!(output.status.success(), "ferry copy {args:?}: {}", text(&output.stderr));
    };
    let cases = [
        ("lock", vec!["--lock".to_string(), lock.display().to_string()]),
        ("bundle", vec!["-b".to_string(), format!("{host}/team/bundle:v1@{bundle}")]),
        ("image", vec!["-i".to_string(), format!("{host}/team/one:1@{one}")]),
        ("tagged", vec!["-i".to_string(), format!("{host}/team/one:1")]),
        ("bare", vec!["-i".to_string(), format!("{host}/team/one")]),
        ("bare-bundle", vec!["-b".to_string(), format!("{host}/team/bundle")]),
        ("repo-based", vec!["-b".to_string(), format!("{host}/team/bundle:v1")]),
    ];
    for (name, input) in &cases {
        let input: Vec<&str> = input.iter().map(String::as_str).collect();
        // Flags of the copy into a repository (both tools) and of the import.
        let publishing: &[&str] = if *name == "repo-based" { &["--repo-based-tags"] } else { &[] };
        let (to_imgpkg, to_ferry) = (format!("{host}/imgpkg/{name}"), format!("{host}/ferry/{name}"));
        let locks = [home.join(format!("{name}.imgpkg.lock")), home.join(format!("{name}.ferry.lock"))];
        let lock_output = |at: usize| ["--lock-output", locks[at].to_str().unwrap()];
        imgpkg(&[input.as_slice(), &["--to-repo", &to_imgpkg], &lock_output(0), publishing].concat());
        ferry_copy(&[input.as_slice(), &["--to-repo", &to_ferry], &lock_output(1), publishing].concat());
        let written = |at: usize, repo: &str| std::fs::read_to_string(&locks[at]).unwrap().replace(repo, "TARGET");
        assert_eq!(written(1, &to_ferry), written(0, &to_imgpkg), "{name}: --lock-output");
        let expected = without_record(&registry, &format!("imgpkg/{name}"), home);
        assert!(!expected.0.is_empty(), "{name}: imgpkg tagged something");
        assert_eq!(without_record(&registry, &format!("ferry/{name}"), home), expected, "{name}: copy --to-repo");
        // The same through an archive: export, then import.
        let archive = home.join(format!("{name}.tar"));
        let exported = ferry_at_home(home)
            .args(["export", "-q"])
            .args(&input)
            .arg("-o")
            .arg(&archive)
            .args(registry.access_flags())
            .output()
            .unwrap();
        assert!(exported.status.success(), "{name}: {}", text(&exported.stderr));
        let imported = import(&archive, &registry, &format!("imported/{name}"), home, publishing);
        assert!(imported.status.success(), "{name}: {}", text(&imported.stderr));
        assert_eq!(without_record(&registry, &format!("imported/{name}"), home), expected, "{name}: export and import");
    }
    let tagged = tags(&registry, "imgpkg/tagged", home);
    assert_eq!(tagged.get("1"), Some(&one), "a root named by tag alone keeps it: {tagged:?}");
    let bare = tags(&registry, "imgpkg/bare", home);
    assert_eq!(bare.get("latest"), Some(&one), "a repository alone means latest: {bare:?}");
    let repo_based = tags(&registry, "imgpkg/repo-based", home);
    let named = format!("team-one-{}.imgpkg", one.replace(':', "-"));
    assert_eq!(repo_based.get(&named), Some(&one), "--repo-based-tags: {repo_based:?}");
    let (_, record) = without_record(&registry, "imgpkg/bundle", home);
    let record = record.expect("imgpkg wrote the bundle's record");
    assert!(record.contains(&format!("{host}/team/one@{one}")), "{record}");
}

/// A repository's tags with their digests, leaving out the ImageLocations record image (its
/// tags name its own digest, and imgpkg builds the image around the record otherwise: a config
/// with history, a `.` entry in the layer), and the record's `image-locations.yml`, if any.
fn without_record(registry: &Registry, repo: &str, home: &Path) -> (BTreeMap<String, String>, Option<String>) {
    let mut tags = tags(registry, repo, home);
    let Some(record) = tags.iter().find(|(tag, _)| tag.ends_with(".image-locations.imgpkg")).map(|(_, d)| d.clone())
    else {
        return (tags, None);
    };
    tags.retain(|_, digest| *digest != record);
    let manifest: Value = serde_json::from_slice(&skopeo_raw(registry, &format!("{repo}@{record}"))).unwrap();
    let layer = blob(registry, repo, manifest["layers"][0]["digest"].as_str().unwrap());
    (tags, Some(ferry::ops::bundle::locations::read_layer(&layer, "record").expect("image-locations.yml")))
}

/// spec/cli.md "pull" (review s8 F6): `pull --lock` takes the BundleLock an import wrote and
/// pulls its bundle, as imgpkg's `pull --lock` does: the same files as imgpkg's pull of the same
/// lock and as `pull -b` of the bundle. An ImagesLock names no one thing to pull: refused (exit
/// 1), naming the kind.
#[test]
fn pull_takes_a_bundle_lock_as_imgpkg_does() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path();
    let archive = export_fixture("bundle", home);
    let lock = home.join("bundle.lock.yml");
    let imported = import(&archive, &registry, "team/bundle", home, &["--lock-output", lock.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let pull = |args: &[&str], into: &str| {
        let output = ferry_at_home(home)
            .args(["pull", "-q", "-o"])
            .arg(home.join(into))
            .args(args)
            .args(registry.access_flags())
            .output()
            .unwrap();
        assert!(output.status.success(), "pull {args:?}: {}", text(&output.stderr));
    };
    pull(&["--lock", lock.to_str().unwrap()], "by-lock");
    let bundle = std::fs::read_to_string(&lock).unwrap();
    let image = bundle.lines().find_map(|line| line.trim().strip_prefix("image: ")).unwrap().to_string();
    pull(&["-b", &image], "by-reference");
    let by_imgpkg = support::run_bounded(
        std::process::Command::new(support::imgpkg())
            .args(["pull", "--lock", lock.to_str().unwrap(), "-o"])
            .arg(home.join("by-imgpkg"))
            .arg("--registry-insecure")
            .env("HOME", home),
        std::time::Duration::from_secs(120),
    );
    assert!(by_imgpkg.status.success(), "imgpkg pull --lock: {}", text(&by_imgpkg.stderr));
    let files = |into: &str| {
        let root = home.join(into);
        let mut found = BTreeMap::new();
        for entry in walkdir::WalkDir::new(&root).into_iter().map(Result::unwrap).filter(|e| e.file_type().is_file()) {
            let name = entry.path().strip_prefix(&root).unwrap().display().to_string();
            found.insert(name, std::fs::read(entry.path()).unwrap());
        }
        found
    };
    assert!(!files("by-lock").is_empty());
    assert_eq!(files("by-lock"), files("by-reference"), "pull --lock is pull -b of its bundle");
    assert_eq!(files("by-lock"), files("by-imgpkg"), "ferry pull --lock writes what imgpkg pull --lock writes");

    let images = home.join("images.yml");
    std::fs::write(&images, "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages: []\nkind: ImagesLock\n").unwrap();
    let refused = ferry_at_home(home)
        .args(["pull", "--lock", images.to_str().unwrap(), "-o"])
        .arg(home.join("never"))
        .args(registry.access_flags())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("ImagesLock"), "{}", text(&refused.stderr));
    assert!(!home.join("never").exists());
}
