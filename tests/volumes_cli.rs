//! Archives split into volumes (spec/archive.md AR-S1..AR-S3): the volumes concatenate to the
//! single-file archive, are read in place by verify, inspect and import (given the table, any
//! volume or the name), resume across volumes, and every kind of damage is named by volume with
//! nothing pushed to a real registry (tests/support). Also archives read from a pipe (spec/cli.md
//! "Streams"): a volume set joined, a cut or corrupt stream, and streams out of ferry's order.

mod cli;
mod forgery;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use cli::{ferry, json_of, tag_digests, text};
use ferry::model::sha256_digest;
use forgery::Entries;
use serde_json::Value;
use support::{Registry, Variant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts").join(name)
}

/// Exports a fixture layout to `out` (in volumes of `volume_size` when given).
fn export(layout: &str, out: &Path, volume_size: Option<&str>) -> Output {
    let mut command = ferry();
    command.args(["export", "--json", "--oci-layout"]).arg(fixture(layout)).arg("-o").arg(out);
    if let Some(size) = volume_size {
        command.args(["--volume-size", size]);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    output
}

fn volumes_of(dir: &Path, archive: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.strip_prefix(&format!("{archive}."))
                .is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    found.sort();
    found
}

fn verify(path: &Path, extra: &[&str]) -> Output {
    ferry().arg("verify").arg(path).args(extra).output().unwrap()
}

fn import(path: &Path, registry: &Registry, repo: &str) -> Output {
    import_with(path, registry, repo, &[])
}

fn import_with(path: &Path, registry: &Registry, repo: &str, extra: &[&str]) -> Output {
    ferry()
        .arg("import")
        .arg(path)
        .args(["--to-repo", &format!("{}/{repo}", registry.host()), "--registry-insecure", "--json"])
        .args(extra)
        .output()
        .unwrap()
}

/// Every tag of `repo` with its digest (empty when the repository does not exist).
fn tags(registry: &Registry, repo: &str) -> BTreeMap<String, String> {
    let output = ferry()
        .args(["tag", "list", &format!("{}/{repo}", registry.host()), "--digests", "--imgpkg-internal-tags", "--json"])
        .arg("--registry-insecure")
        .output()
        .unwrap();
    if !output.status.success() {
        return BTreeMap::new();
    }
    tag_digests(&output)
}

/// The volumes are the single-file archive cut in pieces; verify, inspect and import read them
/// from the table, from any volume or from the name, and import the same digests and tags.
#[test]
fn volumes_round_trip_like_the_single_file() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let single = scratch.path().join("single.tar");
    export("bundle", &single, None);
    let split = scratch.path().join("split.tar");
    let summary = json_of(&export("bundle", &split, Some("8KiB")));
    let volumes = volumes_of(scratch.path(), "split.tar");
    assert!(volumes.len() >= 3, "{volumes:?}");
    assert_eq!(summary["volumes"], volumes.len());
    assert!(!split.exists(), "no single file is written");
    let joined: Vec<u8> = volumes.iter().flat_map(|v| std::fs::read(v).unwrap()).collect();
    assert!(joined == std::fs::read(&single).unwrap(), "AR-S1: the volumes concatenate to the archive");
    for volume in &volumes[..volumes.len() - 1] {
        assert_eq!(std::fs::metadata(volume).unwrap().len(), 8192);
    }
    let table: Value =
        serde_json::from_slice(&std::fs::read(scratch.path().join("split.tar.volumes.json")).unwrap()).unwrap();
    assert_eq!(table["volumes"].as_array().unwrap().len(), volumes.len());
    let sha = std::process::Command::new("sha256sum").arg(&volumes[1]).output().unwrap();
    assert_eq!(table["volumes"][1]["digest"], format!("sha256:{}", &text(&sha.stdout)[..64]), "sha256sum agrees");

    let table_path = scratch.path().join("split.tar.volumes.json");
    for given in [&table_path, &volumes[1], &split] {
        let output = verify(given, &["--volume-digests", "--json"]);
        assert!(output.status.success(), "{}: {}", given.display(), text(&output.stdout));
        assert_eq!(json_of(&output)["volumes"], volumes.len());
    }
    // Progress (plain lines, stderr is not a terminal) counts volumes as volumes.
    let output = verify(&table_path, &["--volume-digests"]);
    let progress = text(&output.stderr);
    assert!(progress.contains(&format!("hashing volumes: {} volumes,", volumes.len())), "{progress}");
    assert!(progress.contains("hashing: "), "{progress}");
    let inspected = ferry().arg("inspect").arg(&volumes[0]).arg("--json").output().unwrap();
    assert!(inspected.status.success(), "{}", text(&inspected.stderr));
    assert_eq!(json_of(&inspected)["identity"], table["identity"]);

    let from_file = import(&single, &registry, "from/file");
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    let from_volumes = import(&table_path, &registry, "from/volumes");
    assert!(from_volumes.status.success(), "{}", text(&from_volumes.stderr));
    assert_eq!(json_of(&from_volumes)["identity"], json_of(&from_file)["identity"]);
    assert_eq!(tags(&registry, "from/volumes"), tags(&registry, "from/file"));
}

/// Each kind of damage fails verify (exit 3) naming the volume, and import pushes nothing.
#[test]
fn every_damaged_volume_set_is_named_and_pushes_nothing() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let other = scratch.path().join("other");
    std::fs::create_dir(&other).unwrap();
    export("multiarch", &other.join("split.tar"), Some("8KiB"));

    type Damage = fn(&Path, &[PathBuf], &Path);
    let cases: Vec<(&str, Damage, &str)> = vec![
        ("missing", |_, v, _| std::fs::remove_file(&v[2]).unwrap(), "split.tar.003, is missing"),
        (
            "swapped",
            |_, v, _| {
                let (one, two) = (std::fs::read(&v[1]).unwrap(), std::fs::read(&v[2]).unwrap());
                std::fs::write(&v[1], two).unwrap();
                std::fs::write(&v[2], one).unwrap();
            },
            "out of order",
        ),
        (
            "truncated",
            |_, v, _| {
                let last = v.last().unwrap();
                let len = std::fs::metadata(last).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(last).unwrap().set_len(len - 100).unwrap();
            },
            "(truncated: copy it again)",
        ),
        (
            "flipped",
            |_, v, _| {
                let mut bytes = std::fs::read(&v[1]).unwrap();
                let at = bytes.len() / 2;
                bytes[at] ^= 0x01;
                std::fs::write(&v[1], bytes).unwrap();
            },
            "split.tar.002",
        ),
        (
            "extra",
            |dir, v, _| {
                std::fs::copy(&v[0], dir.join(format!("split.tar.{:03}", v.len() + 1))).unwrap();
            },
            "is not in their table",
        ),
        (
            "linked",
            |dir, v, _| {
                let elsewhere = dir.join("elsewhere");
                std::fs::rename(&v[1], &elsewhere).unwrap();
                std::os::unix::fs::symlink(&elsewhere, &v[1]).unwrap();
            },
            "split.tar.002, is a symbolic link",
        ),
        (
            "foreign table",
            |dir, _, other| {
                std::fs::copy(other.join("split.tar.volumes.json"), dir.join("split.tar.volumes.json")).unwrap();
            },
            "split.tar.",
        ),
    ];
    for (number, (name, damage, expected)) in cases.into_iter().enumerate() {
        let dir = scratch.path().join(format!("case-{number}"));
        std::fs::create_dir(&dir).unwrap();
        export("bundle", &dir.join("split.tar"), Some("8KiB"));
        let volumes = volumes_of(&dir, "split.tar");
        assert!(volumes.len() >= 4, "{name}: {volumes:?}");
        damage(&dir, &volumes, &other);
        let table = dir.join("split.tar.volumes.json");
        let output = verify(&table, &[]);
        assert_eq!(output.status.code(), Some(3), "{name}: {}", text(&output.stdout));
        assert!(text(&output.stdout).contains(expected), "{name}: {expected:?} not in {}", text(&output.stdout));

        let repo = format!("damaged/{number}");
        let imported = import(&table, &registry, &repo);
        assert_eq!(imported.status.code(), Some(3), "{name}: {}", text(&imported.stderr));
        assert!(tags(&registry, &repo).is_empty(), "{name}: nothing may be pushed");
    }
    // A table speaks only for the archive it is named after: `week2.tar.volumes.json` saying
    // `"archive": "split.tar"` does not make split.tar's volumes week2's (review s7 L10).
    let renamed = other.join("week2.tar.volumes.json");
    std::fs::copy(other.join("split.tar.volumes.json"), &renamed).unwrap();
    let output = verify(&renamed, &[]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("a table is named after its archive"), "{}", text(&output.stdout));
}

/// AR-S1 (review s7 L9): a volume size that would give more than 1,000 volumes (a table no
/// reader opens, more files than a process keeps open) fails before anything is written.
#[test]
fn a_volume_size_giving_too_many_volumes_is_refused_before_writing() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("tiny.tar");
    let output = ferry()
        .args(["export", "--oci-layout"])
        .arg(fixture("plain-oci"))
        .arg("-o")
        .arg(&out)
        .args(["--volume-size", "8"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("over the 1000 a reader opens"), "{}", text(&output.stderr));
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "nothing is written: {left:?}");
}

/// An export interrupted with its volumes written resumes across them: damaged blobs are
/// fetched again, intact ones kept, and the result is byte-identical.
#[test]
fn resume_works_across_volumes() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("split.tar");
    export("bundle", &archive, Some("8KiB"));
    let volumes = volumes_of(scratch.path(), "split.tar");
    let originals: Vec<Vec<u8>> = volumes.iter().map(|v| std::fs::read(v).unwrap()).collect();
    // Back to the state of an interrupted export: partial volumes, no table, one volume hit.
    std::fs::remove_file(scratch.path().join("split.tar.volumes.json")).unwrap();
    for volume in &volumes {
        let mut partial = volume.clone().into_os_string();
        partial.push(".partial");
        std::fs::rename(volume, &partial).unwrap();
    }
    // Damage the largest blob where it lies, so it alone is fetched again.
    let largest = std::fs::read_dir(fixture("bundle").join("blobs/sha256"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .max_by_key(Vec::len)
        .unwrap();
    let joined: Vec<u8> = originals.concat();
    let start =
        joined.windows(largest.len()).position(|w| w == largest.as_slice()).expect("the blob is in the archive");
    let at = start + largest.len() / 2;
    let (volume, within) = (at / 8192, at % 8192);
    let partial = format!("{}.partial", volumes[volume].display());
    let mut damaged = std::fs::read(&partial).unwrap();
    damaged[within] ^= 0xff;
    std::fs::write(&partial, damaged).unwrap();

    let output = ferry()
        .args(["export", "--json", "--resume", "--volume-size", "8KiB", "--oci-layout"])
        .arg(fixture("bundle"))
        .arg("-o")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = json_of(&output);
    assert_eq!(summary["reusedBlobs"].as_u64().unwrap(), summary["blobs"].as_u64().unwrap() - 1, "{summary}");
    let again: Vec<Vec<u8>> = volumes.iter().map(|v| std::fs::read(v).unwrap()).collect();
    assert!(again == originals, "byte-identical to the uninterrupted export");
    assert!(verify(&archive, &["--volume-digests"]).status.success());
}

/// Incompressible bytes, so a layer is as large as its file.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

fn import_stdin(bytes: Vec<u8>, registry: &Registry, repo: &str) -> Output {
    import_stdin_with(bytes, registry, repo, &[])
}

fn import_stdin_with(bytes: Vec<u8>, registry: &Registry, repo: &str, extra: &[&str]) -> Output {
    ferry()
        .args(["import", "-", "--to-repo", &format!("{}/{repo}", registry.host()), "--registry-insecure", "--json"])
        .args(extra)
        .write_stdin(bytes)
        .output()
        .unwrap()
}

/// Whether the registry holds blob `digest` in `repo`.
fn has_blob(registry: &Registry, repo: &str, digest: &str) -> bool {
    let status = std::process::Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "-I"])
        .args(registry.curl_args())
        .arg(format!("{}/v2/{repo}/blobs/{digest}", registry.url()))
        .status()
        .unwrap();
    status.success()
}

/// A one-image layout with a 6 MiB incompressible layer (`seed` picks its bytes) in
/// `dir/layout`, exported to `dir/big.tar`: the image, the archive and export's JSON summary.
fn export_big_image(dir: &Path, seed: u64) -> (support::LayoutImage, PathBuf, Value) {
    let layout = dir.join("layout");
    let image = support::write_image_layout(&layout, "big", &[("big.bin", &noise(6 << 20, seed))]);
    let archive = dir.join("big.tar");
    let output =
        ferry().args(["export", "--json", "--oci-layout"]).arg(&layout).arg("-o").arg(&archive).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    (image, archive, json_of(&output))
}

/// An archive through a pipe (its volumes concatenated) verifies and imports the same digests
/// and tags as the file; a 6 MiB layer is uploaded as it streams past.
#[test]
fn a_pipe_imports_like_the_file() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let (image, single, _) = export_big_image(scratch.path(), 3);
    let layout = scratch.path().join("layout");
    let split = scratch.path().join("split.tar");
    let output = ferry()
        .args(["export", "-q", "--volume-size", "2MiB", "--oci-layout"])
        .arg(&layout)
        .arg("-o")
        .arg(&split)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let joined: Vec<u8> =
        volumes_of(scratch.path(), "split.tar").iter().flat_map(|v| std::fs::read(v).unwrap()).collect();

    let verified = ferry().args(["verify", "-", "--json"]).write_stdin(joined.clone()).output().unwrap();
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    let piped = import_stdin(joined, &registry, "piped/big");
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    assert!(json_of(&piped)["bytesUploaded"].as_u64().unwrap() >= 6 << 20);
    let file = import(&single, &registry, "file/big");
    assert!(file.status.success(), "{}", text(&file.stderr));
    assert_eq!(tags(&registry, "piped/big"), tags(&registry, "file/big"));
    assert!(tags(&registry, "piped/big").iter().any(|(_, digest)| *digest == image.manifest_digest));
}

/// A stream cut in the middle, or with a flipped byte in its large layer, pushes no manifest
/// and no tag, says what had arrived, and the damaged layer never lands in the registry.
#[test]
fn a_cut_or_corrupt_stream_pushes_nothing() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let (image, archive, _) = export_big_image(scratch.path(), 5);
    let bytes = std::fs::read(&archive).unwrap();

    let cut = import_stdin(bytes[..bytes.len() / 2].to_vec(), &registry, "cut/big");
    assert_eq!(cut.status.code(), Some(3), "{}", text(&cut.stderr));
    let message = text(&cut.stderr);
    assert!(message.contains("the stream was cut") && message.contains("had arrived verified"), "{message}");
    assert!(tags(&registry, "cut/big").is_empty());
    let cut_verify = ferry().args(["verify", "-"]).write_stdin(bytes[..bytes.len() / 2].to_vec()).output().unwrap();
    assert_eq!(cut_verify.status.code(), Some(3));

    let mut flipped = bytes.clone();
    let at = flipped.len() - 3 * (1 << 20);
    flipped[at] ^= 0x01;
    let corrupt = import_stdin(flipped, &registry, "corrupt/big");
    assert_eq!(corrupt.status.code(), Some(3), "{}", text(&corrupt.stderr));
    assert!(text(&corrupt.stderr).contains(&image.layer_digest), "{}", text(&corrupt.stderr));
    assert!(tags(&registry, "corrupt/big").is_empty());
    assert!(!has_blob(&registry, "corrupt/big", &image.layer_digest), "a damaged layer is never committed");
}

/// `--identity` (AR-6): verify and import of a file or a pipe refuse an archive whose
/// index.json is not the one exported, before anything is uploaded; the right identity passes.
#[test]
fn identity_pins_the_exported_archive() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let (image, archive, exported) = export_big_image(scratch.path(), 7);
    let identity = exported["identity"].as_str().unwrap().to_string();
    let other = format!("sha256:{}", "0".repeat(64));
    let bytes = std::fs::read(&archive).unwrap();

    assert!(verify(&archive, &["--identity", &identity]).status.success());
    let wrong = verify(&archive, &["--identity", &other]);
    assert_eq!(wrong.status.code(), Some(3));
    assert!(text(&wrong.stdout).contains(&format!("not the expected {other}")), "{}", text(&wrong.stdout));
    let piped = ferry().args(["verify", "-", "--identity", &other]).write_stdin(bytes.clone()).output().unwrap();
    assert_eq!(piped.status.code(), Some(3), "{}", text(&piped.stdout));

    let refused = import_with(&archive, &registry, "file/big", &["--identity", &other]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("not the expected"), "{}", text(&refused.stderr));
    let refused = ferry()
        .args(["import", "-", "--to-repo", &format!("{}/pipe/big", registry.host()), "--registry-insecure"])
        .args(["--identity", &other])
        .write_stdin(bytes)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(tags(&registry, "file/big").is_empty() && tags(&registry, "pipe/big").is_empty());
    assert!(!has_blob(&registry, "pipe/big", &image.layer_digest), "refused before any upload");

    let accepted = import_with(&archive, &registry, "file/big", &["--identity", &identity]);
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
}

/// A FIFO under a volume's name, or under the table's, is refused as not a regular file at
/// once (security review: opening it waited for a writer, so `verify` hung).
#[test]
fn a_fifo_volume_or_table_is_refused_without_hanging() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("split.tar");
    export("multiarch", &archive, Some("8KiB"));
    let volumes = volumes_of(scratch.path(), "split.tar");
    let mkfifo = |path: &Path| {
        std::fs::remove_file(path).unwrap();
        let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
    };
    mkfifo(&volumes[1]);
    let table = scratch.path().join("split.tar.volumes.json");
    for (what, path) in [("a volume", table.clone()), ("the table", volumes[0].clone())] {
        if what == "the table" {
            mkfifo(&table);
        }
        let output = ferry().timeout(std::time::Duration::from_secs(30)).arg("verify").arg(&path).output().unwrap();
        let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert_ne!(output.status.code(), Some(0), "{what}: {printed}");
        assert!(printed.contains("not a regular file"), "{what}: {printed}");
    }
}

/// The blobs of the image `export_big_image` made (its manifest is not a blob of the
/// repository: the registry answers HEAD on it with 404; `tags` shows whether it was pushed).
fn blobs_of(image: &support::LayoutImage) -> [&str; 2] {
    [&image.config_digest, &image.layer_digest]
}

/// Asserts that `repo` holds no tag and none of `digests`.
fn holds_nothing(registry: &Registry, repo: &str, digests: &[&str]) {
    assert!(tags(registry, repo).is_empty(), "{repo}: no tag");
    for digest in digests {
        assert!(!has_blob(registry, repo, digest), "{repo}: blob {digest} was uploaded");
    }
}

/// `entries` as another tool's layout would hold them: `index.json` without ferry's annotations
/// (so AR-R11 and AR-R12 do not apply), its entries keeping their ref names.
fn without_ferrys_annotations(entries: &Entries) -> Entries {
    let mut index: Value = serde_json::from_slice(entries.get("index.json")).unwrap();
    index.as_object_mut().unwrap().remove("annotations");
    for entry in index["manifests"].as_array_mut().unwrap() {
        entry["annotations"].as_object_mut().unwrap().retain(|key, _| !key.starts_with("dev.ferry."));
    }
    let mut foreign = entries.clone();
    foreign.set("index.json", serde_json::to_vec(&index).unwrap());
    foreign
}

/// Moves the entry `name` to the front of the archive.
fn first(entries: &Entries, name: &str) -> Entries {
    let mut moved = entries.clone();
    let at = moved.0.iter().position(|(n, _)| n == name).unwrap();
    let entry = moved.0.remove(at);
    moved.0.insert(0, entry);
    moved
}

/// Streams (review a04): a 5 MiB blob before `index.json` is refused before anything is
/// uploaded, with no `--identity`, a wrong one or the right one, and with no `index.json` at all;
/// nothing lands in the repository. Another tool's layout with a layer before `index.json` is
/// refused from a pipe with the hint to import the file, and imports from the file.
#[test]
fn a_blob_before_index_json_in_a_stream_uploads_nothing() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let (image, archive, exported) = export_big_image(scratch.path(), 11);
    let identity = exported["identity"].as_str().unwrap().to_string();
    let other = format!("sha256:{}", "0".repeat(64));
    let valid = Entries::read(&std::fs::read(&archive).unwrap());
    let extra = noise(5 << 20, 12);
    let extra_digest = sha256_digest(&extra);
    let mut with_extra = valid.clone();
    with_extra.0.push((extra_digest.blob_path(), Some(extra)));
    let extra_first = first(&with_extra, &extra_digest.blob_path());
    let named = extra_digest.to_string();
    let mut every = blobs_of(&image).to_vec();
    every.push(&named);

    for (repo, flags) in [
        ("first/none", vec![]),
        ("first/wrong", vec!["--identity", &other]),
        ("first/right", vec!["--identity", &identity]),
    ] {
        let output = import_stdin_with(extra_first.write(), &registry, repo, &flags);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{repo}: {stderr}");
        assert!(stderr.contains(&format!("blob {named} comes before oci-layout and index.json")), "{repo}: {stderr}");
        assert!(stderr.contains("Import the archive from a file instead"), "{repo}: {stderr}");
        holds_nothing(&registry, repo, &every);
    }
    let mut no_index = extra_first.clone();
    no_index.0.retain(|(name, _)| name != "index.json");
    let output = import_stdin(no_index.write(), &registry, "first/noindex");
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    holds_nothing(&registry, "first/noindex", &every);

    let foreign = without_ferrys_annotations(&valid);
    let layer_path = format!("blobs/sha256/{}", image.layer_digest.trim_start_matches("sha256:"));
    let layer_first = first(&foreign, &layer_path);
    let output = import_stdin(layer_first.write(), &registry, "foreign/piped");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("blob {} comes before oci-layout and index.json", image.layer_digest)),
        "{stderr}"
    );
    holds_nothing(&registry, "foreign/piped", &blobs_of(&image));
    let file = scratch.path().join("layer-first.tar");
    std::fs::write(&file, layer_first.write()).unwrap();
    let imported = import(&file, &registry, "foreign/file");
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(tags(&registry, "foreign/file").values().any(|digest| *digest == image.manifest_digest));
}

/// Streams (review a04): a 5 MiB blob after `index.json` that no manifest before it reaches is
/// never uploaded. In a ferry archive it is a failure (AR-R11) of verify and of import from a
/// pipe; in another tool's layout the pipe refuses it with the hint to import the file, which
/// imports the image and leaves the blob out; an honest export still imports from a pipe.
#[test]
fn a_blob_nothing_reaches_is_never_uploaded_from_a_stream() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let (image, archive, _) = export_big_image(scratch.path(), 13);
    let valid = Entries::read(&std::fs::read(&archive).unwrap());
    let extra = noise(5 << 20, 14);
    let extra_digest = sha256_digest(&extra);
    let named = extra_digest.to_string();

    let mut added = valid.clone();
    added.0.push((extra_digest.blob_path(), Some(extra.clone())));
    let output = import_stdin(added.write(), &registry, "added/ferry");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("blob {named} (5242880 bytes) is reached by nothing")), "{stderr}");
    assert!(!has_blob(&registry, "added/ferry", &named), "the unreferenced blob is never uploaded");
    assert!(tags(&registry, "added/ferry").is_empty());
    let verified = ferry().args(["verify", "-"]).write_stdin(added.write()).output().unwrap();
    assert_eq!(verified.status.code(), Some(3), "{}", text(&verified.stdout));
    assert!(text(&verified.stdout).contains("AR-R11"), "{}", text(&verified.stdout));

    let mut foreign = without_ferrys_annotations(&valid);
    foreign.0.push((extra_digest.blob_path(), Some(extra)));
    let output = import_stdin(foreign.write(), &registry, "added/piped");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("must be imported from a file instead"), "{stderr}");
    assert!(!has_blob(&registry, "added/piped", &named));
    let file = scratch.path().join("foreign.tar");
    std::fs::write(&file, foreign.write()).unwrap();
    let imported = import(&file, &registry, "added/file");
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(!has_blob(&registry, "added/file", &named), "a file import leaves it out too");
    assert!(has_blob(&registry, "added/file", &image.layer_digest));

    let honest = import_stdin(valid.write(), &registry, "honest/piped");
    assert!(honest.status.success(), "{}", text(&honest.stderr));
    for digest in blobs_of(&image) {
        assert!(has_blob(&registry, "honest/piped", digest), "{digest}");
    }
    assert!(tags(&registry, "honest/piped").values().any(|digest| *digest == image.manifest_digest));
}
