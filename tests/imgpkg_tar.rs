//! imgpkg's tarballs as input, and foreign files named (issue 13 items 2 and 3; spec/archive.md
//! "Other archives ferry reads", AR-I1..AR-I6). The tarball is written by the real imgpkg
//! (`../shared/tools/imgpkg copy -b --to-tar`) from a real registry holding a bundle with a
//! nested bundle and a two-platform index; ferry must verify, inspect, describe, pull, import
//! and convert it exactly as it handles `ferry export -b` of the same bundle.

mod cli;
mod seed;
mod support;

include!("seed/fixture_modules.rs");

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cli::{ferry, json_of, tag_digests, text};
use support::{Registry, Variant, imgpkg, run_bounded};

fn run_imgpkg(args: &[&str]) -> Output {
    let mut command = Command::new(imgpkg());
    command.args(args).arg("--registry-insecure");
    let output = run_bounded(&mut command, Duration::from_secs(120));
    assert!(output.status.success(), "imgpkg {args:?}: {}{}", text(&output.stdout), text(&output.stderr));
    output
}

fn run(args: &[&str]) -> Output {
    ferry().args(args).output().unwrap()
}

fn succeed(args: &[&str]) -> Output {
    let output = ferry().args(args).arg("--registry-insecure").output().unwrap();
    assert!(output.status.success(), "ferry {args:?}: {}", text(&output.stderr));
    output
}

/// A registry seeded with the fixture bundle, its imgpkg tarball and ferry's export of it.
struct Sample {
    registry: Registry,
    scratch: tempfile::TempDir,
    root: String,
    imgpkg_tar: PathBuf,
    ferry_tar: PathBuf,
}

fn sample() -> Sample {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let root = seed::seed_bundle(&registry, scratch.path());
    let source = format!("{}/team/bundle:1.0", registry.host());
    let imgpkg_tar = scratch.path().join("imgpkg.tar");
    run_imgpkg(&["copy", "-b", &source, "--to-tar", imgpkg_tar.to_str().unwrap()]);
    let ferry_tar = scratch.path().join("ferry.tar");
    succeed(&["export", "-q", "-b", &source, "-o", ferry_tar.to_str().unwrap()]);
    Sample { registry, scratch, root, imgpkg_tar, ferry_tar }
}

/// Every tag of a repository with its digest, internal tags included.
fn tags(repository: &str) -> BTreeMap<String, String> {
    tag_digests(&succeed(&["tag", "list", repository, "--digests", "--imgpkg-internal-tags", "--json"]))
}

fn identity_of(output: &Output) -> String {
    let printed = text(&output.stdout);
    printed.lines().find_map(|line| line.strip_prefix("identity ")).unwrap_or_default().to_string()
}

/// AR-I5, AR-I6: `imgpkg copy --to-tar` of a bundle (nested bundle, two-platform index) is
/// verified with the identity of ferry's export of the same bundle, listed, described and
/// pulled from the file; converted, it is byte for byte `ferry export -b`; imported, it gives
/// the repository an import of ferry's export gives (digests, tags, ImageLocations records),
/// and the real imgpkg pulls the result with every lock entry relocated.
#[test]
fn an_imgpkg_tarball_reads_converts_and_imports_as_ferrys_archive_of_the_bundle() {
    let sample = sample();
    let (imgpkg_tar, ferry_tar) = (sample.imgpkg_tar.to_str().unwrap(), sample.ferry_tar.to_str().unwrap());
    let host = sample.registry.host();

    let verified = run(&["verify", imgpkg_tar]);
    assert_eq!(verified.status.code(), Some(0), "{}{}", text(&verified.stdout), text(&verified.stderr));
    assert!(text(&verified.stdout).starts_with(&format!("OK {imgpkg_tar}")), "{}", text(&verified.stdout));
    let expected_identity = identity_of(&run(&["verify", ferry_tar]));
    assert!(expected_identity.starts_with("sha256:"));
    assert_eq!(identity_of(&verified), expected_identity, "AR-I5: the identity of ferry's archive of the bundle");

    let inspected = json_of(&run(&["inspect", imgpkg_tar, "--json"]));
    let artifacts = inspected["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 5, "root, nested bundle, app, sidecar, svc index: {inspected}");
    let kinds: Vec<&str> = artifacts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "bundle").count(), 2, "{kinds:?}");
    assert!(kinds.contains(&"index"), "{kinds:?}");
    let root = artifacts.iter().find(|a| a["root"] == true).unwrap();
    assert_eq!(root["digest"], sample.root.as_str());
    assert_eq!(root["name"], format!("{host}/team/bundle:1.0").as_str());
    assert_eq!(root["rootTag"], "1.0");
    assert!(inspected["problems"].as_array().unwrap().is_empty(), "{inspected}");

    let described = run(&["describe", "--tar", imgpkg_tar]);
    assert!(described.status.success(), "{}", text(&described.stderr));
    let printed = text(&described.stdout);
    assert!(printed.starts_with(&format!("bundle {host}/team/bundle:1.0")), "{printed}");
    assert!(printed.contains("[linux/amd64, linux/arm64]") && printed.contains("team/sidecar@"), "{printed}");

    let pulled = sample.scratch.path().join("pulled");
    let bundle_ref = format!("{host}/team/bundle:1.0");
    succeed(&["pull", "--tar", imgpkg_tar, "-b", &bundle_ref, "-o", pulled.to_str().unwrap(), "-r"]);
    assert!(pulled.join(".imgpkg/images.yml").is_file());

    // AR-I6: the conversion is ferry's export of the same bundle, byte for byte.
    let converted = sample.scratch.path().join("converted.tar");
    let output = succeed(&["export", "--imgpkg-tar", imgpkg_tar, "-o", converted.to_str().unwrap()]);
    assert_eq!(identity_of(&output), expected_identity);
    assert!(std::fs::read(&converted).unwrap() == std::fs::read(&sample.ferry_tar).unwrap(), "not byte-identical");

    // Imported, the imgpkg tarball gives what ferry's archive gives.
    let from_imgpkg = format!("{host}/site/from-imgpkg");
    let from_ferry = format!("{host}/site/from-ferry");
    succeed(&["import", imgpkg_tar, "--to-repo", &from_imgpkg, "-q"]);
    succeed(&["import", ferry_tar, "--to-repo", &from_ferry, "-q"]);
    let (imported, reference) = (tags(&from_imgpkg), tags(&from_ferry));
    assert_eq!(imported, reference, "same tags, digests and ImageLocations records");
    assert_eq!(imported.get("1.0"), Some(&sample.root));
    assert_eq!(imported.keys().filter(|tag| tag.ends_with(".image-locations.imgpkg")).count(), 2);
    // `copy --tar` is import.
    let copied = format!("{host}/site/copied");
    succeed(&["copy", "--tar", imgpkg_tar, "--to-repo", &copied, "-q"]);
    assert_eq!(tags(&copied), reference);

    // The real imgpkg pulls what ferry imported from imgpkg's own tarball.
    let out = sample.scratch.path().join("imgpkg-pulled");
    run_imgpkg(&["pull", "-b", &format!("{from_imgpkg}:1.0"), "-o", out.to_str().unwrap(), "-r"]);
    let lock = std::fs::read_to_string(out.join(".imgpkg/images.yml")).unwrap();
    let images: Vec<&str> = lock.lines().filter_map(|line| line.trim().strip_prefix("image: ")).collect();
    assert_eq!(images.len(), 3, "{lock}");
    assert!(images.iter().all(|image| image.starts_with(&format!("{from_imgpkg}@sha256:"))), "{lock}");
}

/// The byte range of the tar entry `name` of the file at `path`.
fn entry_range(path: &Path, name: &str) -> (u64, u64) {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            return (entry.raw_file_position(), entry.size());
        }
    }
    panic!("no entry {name} in {}", path.display())
}

/// AR-I3: every blob of an imgpkg tarball is verified. A flipped byte in a layer file fails
/// `verify` (exit 3) naming the layer and its entry, and `import` pushes nothing; so does a
/// consistent forgery (a layer replaced by other bytes and renamed to their own digest) and a
/// config changed inside `manifest.json`.
#[test]
fn a_changed_blob_of_an_imgpkg_tarball_fails_verify_naming_it() {
    let sample = sample();
    let original = std::fs::read(&sample.imgpkg_tar).unwrap();
    let names: Vec<String> = {
        let mut archive = tar::Archive::new(original.as_slice());
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_str().unwrap().to_string()).collect()
    };
    let layer = names.iter().find(|name| name.starts_with("sha256-")).unwrap().clone();
    let digest = format!("sha256:{}", layer.trim_start_matches("sha256-").trim_end_matches(".tar.gz"));
    let (offset, size) = entry_range(&sample.imgpkg_tar, &layer);

    let flipped = sample.scratch.path().join("flipped.tar");
    let mut bytes = original.clone();
    bytes[(offset + size / 2) as usize] ^= 0x20;
    std::fs::write(&flipped, &bytes).unwrap();
    let verified = run(&["verify", flipped.to_str().unwrap()]);
    assert_eq!(verified.status.code(), Some(3), "{}", text(&verified.stdout));
    let report = text(&verified.stdout);
    assert!(report.contains(&format!("FAIL blob {digest}")) || report.contains(&digest), "{report}");
    assert!(report.contains(&layer), "the entry is named: {report}");
    let repo = format!("{}/site/refused", sample.registry.host());
    let imported = ferry()
        .args(["import", flipped.to_str().unwrap(), "--to-repo", &repo, "--registry-insecure"])
        .output()
        .unwrap();
    assert_eq!(imported.status.code(), Some(3), "{}", text(&imported.stderr));
    let listed = ferry().args(["tag", "list", &repo, "--registry-insecure"]).output().unwrap();
    assert!(text(&listed.stderr).contains("NAME_UNKNOWN"), "nothing pushed: {}", text(&listed.stdout));

    // Consistent forgery: the layer's bytes replaced and the entry renamed to their digest.
    let forged_layer = b"forged layer bytes".to_vec();
    let forged_hex = hex_sha256(&forged_layer);
    let forged = sample.scratch.path().join("forged.tar");
    rewrite_tar(&original, &forged, |name, data| {
        if name == layer {
            Some((format!("sha256-{forged_hex}.tar.gz"), forged_layer.clone()))
        } else {
            Some((name.into(), data))
        }
    });
    let verified = run(&["verify", forged.to_str().unwrap()]);
    assert_eq!(verified.status.code(), Some(3), "{}", text(&verified.stdout));
    assert!(text(&verified.stdout).contains(&digest), "the missing layer is named: {}", text(&verified.stdout));

    // A config inside manifest.json changed: its digest no longer matches.
    let changed = sample.scratch.path().join("config.tar");
    rewrite_tar(&original, &changed, |name, data| {
        let data = if name == "manifest.json" {
            text(&data).replacen("\\\"os\\\":\\\"linux\\\"", "\\\"os\\\":\\\"plan9\\\"", 1).into_bytes()
        } else {
            data
        };
        Some((name.into(), data))
    });
    let verified = run(&["verify", changed.to_str().unwrap()]);
    assert_eq!(verified.status.code(), Some(3), "{}", text(&verified.stdout));
    assert!(text(&verified.stdout).contains("manifest.json"), "{}", text(&verified.stdout));
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Writes the tar `original` again as `to`, each entry through `change` (None drops it).
fn rewrite_tar(original: &[u8], to: &Path, change: impl Fn(&str, Vec<u8>) -> Option<(String, Vec<u8>)>) {
    let mut archive = tar::Archive::new(original);
    let mut builder = tar::Builder::new(std::fs::File::create(to).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_str().unwrap().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if let Some((name, data)) = change(&name, data) {
            append(&mut builder, &name, &data);
        }
    }
    builder.finish().unwrap();
}

fn append<W: Write>(builder: &mut tar::Builder<W>, name: &str, data: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, name, data).unwrap();
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        append(&mut builder, name, data);
    }
    builder.into_inner().unwrap()
}

/// Item 3: a file of another kind is named for what it is, with what to do, and exits 2 (a
/// usage error: the wrong input), never 3 (damage): a `docker save` archive (old and OCI-layout
/// styles), a gzip and a zstd of a tar, a file that is no tar, an empty file. For `verify`,
/// `inspect`, `import`, `describe --tar`, `pull --tar` and `export --imgpkg-tar` alike.
#[test]
fn a_foreign_file_is_named_with_a_usage_exit_never_called_corrupt() {
    let scratch = tempfile::tempdir().unwrap();
    let docker_manifest = br#"[{"Config":"abc.json","RepoTags":["app:1.0"],"Layers":["abc/layer.tar"]}]"#.as_slice();
    let docker_save =
        tar_of(&[("abc.json", b"{}"), ("abc/layer.tar", &[0u8; 1024]), ("manifest.json", docker_manifest)]);
    let docker_oci = tar_of(&[
        ("blobs/sha256/abc", b"{}"),
        ("index.json", br#"{"schemaVersion":2,"manifests":[]}"#),
        ("manifest.json", docker_manifest),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("repositories", b"{}"),
    ]);
    let layout = tar_of(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", br#"{"schemaVersion":2,"manifests":[]}"#),
    ]);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&layout).unwrap();
    let gzip = gzip.finish().unwrap();
    let zstd = zstd::encode_all(layout.as_slice(), 3).unwrap();
    let no_tar: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (gzip_bytes, zstd_bytes, random_bytes) = (gzip.clone(), zstd.clone(), no_tar.clone());
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("docker.tar", docker_save, "`docker save` archive"),
        ("docker-oci.tar", docker_oci, "`docker save` archive"),
        ("bundle.tar.gz", gzip, "gzip-compressed"),
        ("bundle.tar.zst", zstd, "zstd-compressed"),
        ("random.bin", no_tar, "not a tar archive"),
        ("empty.tar", Vec::new(), "an empty file"),
    ];
    for (name, bytes, what) in cases {
        let path = scratch.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let file = path.to_str().unwrap();
        let pulled = scratch.path().join(format!("{name}.pulled"));
        let exported = scratch.path().join(format!("{name}.exported.tar"));
        let (pulled, exported) = (pulled.to_str().unwrap(), exported.to_str().unwrap());
        let commands: [Vec<&str>; 6] = [
            vec!["verify", file],
            vec!["inspect", file],
            vec!["import", file, "--to-repo", "127.0.0.1:9/never/contacted"],
            vec!["describe", "--tar", file],
            vec!["pull", "--tar", file, "-b", "x/y:1", "-o", pulled],
            vec!["export", "--imgpkg-tar", file, "-o", exported],
        ];
        for args in commands {
            let output = run(&args);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}{}", text(&output.stdout));
            assert!(stderr.contains(&format!("{file} is")) && stderr.contains(what), "{args:?}: {stderr}");
            assert!(!text(&output.stdout).contains("FAILED"), "{args:?}: never reported as damage");
            assert!(!Path::new(pulled).exists() && !Path::new(exported).exists(), "{args:?}: nothing written");
        }
    }
    // From a pipe too (verify -, import -): named from the first bytes, exit 2; an imgpkg
    // tarball or a docker save archive (first entry manifest.json) is read only from a file.
    let imgpkg_first = tar_of(&[("manifest.json", b"[]"), ("sha256-00.tar.gz", b"x")]);
    let piped: [(&str, Vec<u8>, &str); 5] = [
        ("gzip", gzip_bytes.clone(), "gzip-compressed"),
        ("zstd", zstd_bytes.clone(), "zstd-compressed"),
        ("random", random_bytes.clone(), "not a tar archive"),
        ("empty", Vec::new(), "empty"),
        ("imgpkg", imgpkg_first, "imgpkg tarball"),
    ];
    for (name, bytes, what) in piped {
        for args in [vec!["verify", "-"], vec!["import", "-", "--to-repo", "127.0.0.1:9/never/contacted"]] {
            let output = ferry().args(&args).write_stdin(bytes.clone()).output().unwrap();
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{name} {args:?}: {stderr}{}", text(&output.stdout));
            assert!(stderr.contains("standard input is") && stderr.contains(what), "{name} {args:?}: {stderr}");
        }
    }
    // A damaged tar is still a tar: damage, exit 3.
    let mut damaged = layout.clone();
    damaged[5] ^= 1;
    let path = scratch.path().join("damaged.tar");
    std::fs::write(&path, damaged).unwrap();
    assert_eq!(run(&["verify", path.to_str().unwrap()]).status.code(), Some(3));
}

/// AR-I7 (AR-4): the non-distributable layer imgpkg leaves out of `copy -i --to-tar` is recorded
/// as left out: `verify` passes with a warning, `import` refuses (exit 1) with the hint, and
/// the conversion is byte for byte `ferry export -i` of the image, which leaves it out too.
#[test]
fn non_distributable_layers_of_an_imgpkg_tarball_follow_ferrys_policy() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts/nondistributable");
    registry.push_layout(&layout, "nondist:1.0", "team/nondist:1.0");
    let image = format!("{}/team/nondist:1.0", registry.host());
    let tarball = scratch.path().join("nondist.tar");
    run_imgpkg(&["copy", "-i", &image, "--to-tar", tarball.to_str().unwrap()]);
    let tarball = tarball.to_str().unwrap();

    let verified = run(&["verify", tarball]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified.stdout));
    assert!(text(&verified.stderr).contains("was left out at export, as recorded"), "{}", text(&verified.stderr));
    let imported = ferry()
        .args(["import", tarball, "--to-repo", &format!("{}/site/nondist", registry.host()), "--registry-insecure"])
        .output()
        .unwrap();
    assert_eq!(imported.status.code(), Some(1), "{}", text(&imported.stderr));
    assert!(text(&imported.stderr).contains("--include-non-distributable-layers"), "{}", text(&imported.stderr));

    let exported = scratch.path().join("exported.tar");
    let converted = scratch.path().join("converted.tar");
    succeed(&["export", "-q", "-i", &image, "-o", exported.to_str().unwrap()]);
    succeed(&["export", "-q", "--imgpkg-tar", tarball, "-o", converted.to_str().unwrap()]);
    assert!(std::fs::read(&exported).unwrap() == std::fs::read(&converted).unwrap(), "not byte-identical");
}

/// Review s8 G1 (AR-RF1, AR-I5): the cosign signatures `imgpkg copy --cosign-signatures` puts
/// in its tarball (each under its tag `sha256-<hex>.sig`) are carried as a registry export
/// carries them: imported, each is tagged again beside its subject (they were dropped, exit 0,
/// no warning); converted, the archive is byte for byte `ferry export -b` of the signed bundle.
#[test]
fn cosign_signatures_in_an_imgpkg_tarball_are_carried() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let host = registry.host().to_string();
    let root = seed::seed_bundle(&registry, scratch.path());
    let app = tags(&format!("{host}/team/app"))["1.0"].clone();
    let sidecar = tags(&format!("{host}/team/sidecar"))["1.0"].clone();
    // Stand-in signatures (any manifest under a cosign tag is one to a copier): one for the
    // bundle, and one manifest under two subjects' tags (imgpkg lists it once, with both).
    let layout = scratch.path().join("signatures");
    for (name, subject, repository) in
        [("sig-root", &root, "team/bundle"), ("sig-app", &app, "team/app"), ("sig-app", &sidecar, "team/sidecar")]
    {
        support::write_image_layout(&layout, name, &[("signature.json", name.as_bytes())]);
        registry.push_layout(&layout, name, &format!("{repository}:{}.sig", subject.replace(':', "-")));
    }
    let signature_of = |repository: &str, subject: &str| {
        let tag = format!("{}.sig", subject.replace(':', "-"));
        (tag.clone(), tags(&format!("{host}/{repository}"))[&tag].clone())
    };
    let expected =
        [signature_of("team/bundle", &root), signature_of("team/app", &app), signature_of("team/sidecar", &sidecar)];
    assert_eq!(expected[1].1, expected[2].1, "one signature manifest under two tags");

    let source = format!("{host}/team/bundle:1.0");
    let imgpkg_tar = scratch.path().join("signed.itar");
    run_imgpkg(&["copy", "-b", &source, "--to-tar", imgpkg_tar.to_str().unwrap(), "--cosign-signatures"]);
    let target = format!("{host}/site/signed");
    succeed(&["import", imgpkg_tar.to_str().unwrap(), "--to-repo", &target, "-q"]);
    let imported = tags(&target);
    for (tag, digest) in &expected {
        assert_eq!(imported.get(tag), Some(digest), "{tag} tagged beside its subject: {imported:?}");
    }

    let converted = scratch.path().join("converted.tar");
    succeed(&["export", "-q", "--imgpkg-tar", imgpkg_tar.to_str().unwrap(), "-o", converted.to_str().unwrap()]);
    let exported = scratch.path().join("exported.tar");
    succeed(&["export", "-q", "-b", &source, "-o", exported.to_str().unwrap()]);
    assert!(std::fs::read(&converted).unwrap() == std::fs::read(&exported).unwrap(), "not byte-identical");
}
