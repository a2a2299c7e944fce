//! Hostile bundle layers (issue 12, spec/archive.md BL-1..BL-7, spec/cli.md PL-1): a layer is
//! untrusted wherever it comes from, and every reader of it must agree. Each bundle here is a
//! *consistent forgery*: its layer is crafted, then config, manifest and index are hashed again
//! so every digest matches; no digest check can catch it, only the layer rules. Archives are
//! plain OCI layout tars written by the test (ferry's own export refuses these bundles), and
//! the registry cases push the same layouts with skopeo to a real registry on 127.0.0.1.

mod cli;
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use cli::{ferry, text};
use ferry::model::sha256_digest;
use serde_json::json;
use support::layout::gzip;
use support::raw_tar::entry;
use support::{Registry, Variant};

const LOCK: &[u8] = b"---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages: []\nkind: ImagesLock\n";

/// An OCI layout in `dir` holding one bundle named `hostile` whose (compressed) layer is
/// `layer`, uncompressed `tar`: config, manifest and index hashed to match (a consistent
/// forgery).
fn bundle_layout(dir: &Path, tar: &[u8], layer: &[u8]) {
    let manifest = bundle_blobs(dir, tar, layer);
    let mut top = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256_digest(&manifest).to_string(), "size": manifest.len()});
    top["annotations"] = json!({"org.opencontainers.image.ref.name": "hostile"});
    write_index(dir, vec![top]);
}

/// `oci-layout` and an `index.json` listing `manifests` in `dir`.
fn write_index(dir: &Path, manifests: Vec<serde_json::Value>) {
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    )
    .unwrap();
}

/// The blobs of a bundle whose (compressed) layer is `layer`, uncompressed `tar`, written under
/// `dir/blobs`, config and manifest hashed to match; returns the manifest.
fn bundle_blobs(dir: &Path, tar: &[u8], layer: &[u8]) -> Vec<u8> {
    let config = serde_json::to_vec(&json!({
        "architecture": "", "os": "", "config": {"Labels": {"dev.carvel.imgpkg.bundle": "true"}},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar).to_string()]},
    }))
    .unwrap();
    let descriptor = |media: &str, bytes: &[u8]| json!({"mediaType": media, "digest": sha256_digest(bytes).to_string(), "size": bytes.len()});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    }))
    .unwrap();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for bytes in [layer, &config, &manifest] {
        std::fs::write(blobs.join(sha256_digest(bytes).hex()), bytes).unwrap();
    }
    manifest
}

/// A plain OCI layout tar of `layout` (not a ferry archive: no `dev.ferry` annotations), as
/// another tool or an attacker would write it.
fn layout_tar(layout: &Path, archive: &Path) {
    let mut builder = tar::Builder::new(std::fs::File::create(archive).unwrap());
    builder.mode(tar::HeaderMode::Deterministic);
    let mut files: Vec<PathBuf> =
        walkdir::WalkDir::new(layout).into_iter().map(|e| e.unwrap().into_path()).filter(|p| p.is_file()).collect();
    files.sort();
    for file in files {
        builder.append_path_with_name(&file, file.strip_prefix(layout).unwrap()).unwrap();
    }
    builder.finish().unwrap();
}

/// A case: a layout and its archive in a fresh directory under `scratch`.
fn case(scratch: &Path, name: &str, entries: &[Vec<u8>]) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch.join(name);
    let layout = dir.join("layout");
    let tar = support::raw_tar::tar(entries);
    bundle_layout(&layout, &tar, &gzip(&tar));
    let archive = dir.join("hostile.tar");
    layout_tar(&layout, &archive);
    (dir, layout, archive)
}

fn run(dir: &Path, args: &[&str]) -> Output {
    ferry().current_dir(dir).args(args).output().unwrap()
}

/// Exit 3 (integrity) with `named` in what was printed (verify reports on stdout, others on
/// stderr).
fn refused(output: &Output, what: &str, named: &str) {
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(3), "{what}: want exit 3\n{printed}");
    assert!(printed.contains(named), "{what}: the output names {named:?}:\n{printed}");
}

/// Item 1: chained symlinks that resolve outside DIR only through each other, in either order
/// and ten directories deep, and a lock that is itself such a link, are refused by pull,
/// export, verify and describe; nothing outside DIR changes and no DIR appears.
#[test]
fn chained_symlinks_never_lead_outside_in_any_order() {
    let scratch = tempfile::tempdir().unwrap();
    let lock = entry(".imgpkg/images.yml", b'0', LOCK, "");
    let deep = (1..=10).map(|i| format!("d{i}")).collect::<Vec<_>>().join("/");
    let back = [".."; 10].join("/");
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        ("forward", vec![lock.clone(), entry("a/up", b'2', b"", ".."), entry("esc", b'2', b"", "a/up/..")], "esc"),
        ("backward", vec![lock.clone(), entry("esc", b'2', b"", "a/up/.."), entry("a/up", b'2', b"", "..")], "esc"),
        (
            "deep",
            vec![
                lock.clone(),
                entry(&format!("{deep}/up"), b'2', b"", &back),
                entry("etc", b'2', b"", &format!("{deep}/up/../etc")),
            ],
            "etc",
        ),
        (
            "lock-link",
            vec![
                entry("a/up", b'2', b"", ".."),
                entry("esc", b'2', b"", "a/up/.."),
                entry(".imgpkg/images.yml", b'2', b"", "../esc/victim/images.yml"),
            ],
            "esc",
        ),
    ];
    for (name, entries, named) in cases {
        let (dir, layout, archive) = case(scratch.path(), name, &entries);
        let victim = dir.parent().unwrap().join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("images.yml"), "mine").unwrap();
        let archive = archive.to_str().unwrap();
        refused(&run(&dir, &["pull", "--tar", archive, "-b", "hostile", "-o", "out"]), name, named);
        assert!(!dir.join("out").exists(), "{name}: no output directory");
        refused(&run(&dir, &["verify", archive]), name, named);
        refused(&run(&dir, &["describe", "--tar", archive]), name, named);
        let export = run(&dir, &["export", "--oci-layout", layout.to_str().unwrap(), "-o", "again.tar"]);
        refused(&export, name, named);
        assert!(!dir.join("again.tar").exists());
        assert_eq!(std::fs::read_to_string(victim.join("images.yml")).unwrap(), "mine", "{name}");
    }
}

/// Item 1 against a real registry: `ferry pull -b` of a pushed bundle whose lock is a link
/// through a chain leaving DIR is refused and rewrites nothing outside; `export -b` refuses it.
#[test]
fn a_registry_bundle_with_a_link_chain_is_refused_by_pull_and_export() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let entries = vec![
        entry("a/up", b'2', b"", ".."),
        entry("esc", b'2', b"", "a/up/.."),
        entry(".imgpkg/images.yml", b'2', b"", "../esc/victim/images.yml"),
    ];
    let (dir, layout, _) = case(scratch.path(), "registry", &entries);
    registry.push_layout(&layout, "hostile", "evil/bundle:1");
    let victim = scratch.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("images.yml"), "mine").unwrap();
    let reference = format!("{}/evil/bundle:1", registry.host());
    let pulled = run(&dir, &["pull", "--registry-insecure", "-b", &reference, "-o", "out"]);
    refused(&pulled, "pull -b", "esc");
    assert!(!dir.join("out").exists());
    let exported = run(&dir, &["export", "--registry-insecure", "-b", &reference, "-o", "x.tar"]);
    refused(&exported, "export -b", "esc");
    assert_eq!(std::fs::read_to_string(victim.join("images.yml")).unwrap(), "mine");
}

/// Item 2: a second `.imgpkg/images.yml` in any spelling, or a later symlink of that name,
/// listing other images: verify, inspect, describe, export and pull all refuse the bundle, so
/// no reviewer is shown one lock while a user gets another.
#[test]
fn a_smuggled_second_lock_is_refused_by_every_reader() {
    let scratch = tempfile::tempdir().unwrap();
    let other = b"---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n- image: evil.example.com/x@sha256:0000000000000000000000000000000000000000000000000000000000000000\nkind: ImagesLock\n";
    let first = entry(".imgpkg/images.yml", b'0', LOCK, "");
    let seconds: Vec<(&str, Vec<u8>)> = vec![
        ("twice", entry(".imgpkg/images.yml", b'0', other, "")),
        ("dot-slash", entry("./.imgpkg/images.yml", b'0', other, "")),
        ("inner-dot", entry(".imgpkg/./images.yml", b'0', other, "")),
        ("later-link", entry(".imgpkg/images.yml", b'2', b"", "../other.yml")),
    ];
    for (name, second) in seconds {
        let (dir, layout, archive) =
            case(scratch.path(), name, &[first.clone(), entry("other.yml", b'0', other, ""), second]);
        let archive = archive.to_str().unwrap();
        for args in [
            vec!["verify", archive],
            vec!["inspect", archive],
            vec!["describe", "--tar", archive],
            vec!["pull", "--tar", archive, "-b", "hostile", "-o", "out"],
            vec!["export", "--oci-layout", layout.to_str().unwrap(), "-o", "x.tar"],
        ] {
            refused(&run(&dir, &args), &format!("{name}: {}", args[0]), "images.yml");
        }
    }
}

/// Item 3: an eStargz-shaped layer (one gzip member per file, the lock in the second member,
/// an empty footer member) is read to its end: pull writes all six files and the lock, and
/// verify and describe read the lock.
#[test]
fn every_gzip_member_of_a_layer_is_read() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("estargz");
    let files: Vec<Vec<u8>> =
        (0..6).map(|i| entry(&format!("f{i}"), b'0', format!("file {i}").as_bytes(), "")).collect();
    let lock = entry(".imgpkg/images.yml", b'0', LOCK, "");
    let mut members = gzip(&files[0]);
    members.extend(gzip(&lock));
    for file in &files[1..] {
        members.extend(gzip(file));
    }
    members.extend(gzip(&[0; 1024]));
    members.extend(gzip(b""));
    let mut tar: Vec<u8> = [files[0].clone(), lock].concat();
    tar.extend(files[1..].concat());
    tar.extend_from_slice(&[0; 1024]);
    let layout = dir.join("layout");
    bundle_layout(&layout, &tar, &members);
    let archive = dir.join("estargz.tar");
    layout_tar(&layout, &archive);
    let archive = archive.to_str().unwrap();
    let verified = run(&dir, &["verify", archive]);
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    let described = run(&dir, &["describe", "--tar", archive]);
    assert!(described.status.success(), "{}", text(&described.stderr));
    let pulled = run(&dir, &["pull", "--tar", archive, "-b", "hostile", "-o", "out"]);
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    for i in 0..6 {
        assert_eq!(std::fs::read_to_string(dir.join(format!("out/f{i}"))).unwrap(), format!("file {i}"));
    }
    assert_eq!(std::fs::read(dir.join("out/.imgpkg/images.yml")).unwrap(), LOCK);
}

/// Item 6: an over-long entry name with a multi-byte character across byte 64 is refused
/// (exit 3), not a panic (exit 101).
#[test]
fn an_overlong_multibyte_name_is_refused_not_a_crash() {
    let scratch = tempfile::tempdir().unwrap();
    let long = format!("{}é{}", "a".repeat(63), "b".repeat(5000));
    let (dir, _, archive) =
        case(scratch.path(), "long", &[entry(".imgpkg/images.yml", b'0', LOCK, ""), entry(&long, b'0', b"x", "")]);
    let archive = archive.to_str().unwrap();
    refused(&run(&dir, &["pull", "--tar", archive, "-b", "hostile", "-o", "out"]), "pull", "bytes long");
    refused(&run(&dir, &["verify", archive]), "verify", "bytes long");
}

/// PL-1: a `../` entry, an absolute path, an escaping symlink, a write through a symlink or a
/// device in a bundle layer is refused by `pull --tar` (exit 3, the entry named) and by export;
/// nothing appears outside the output directory, nor the output directory itself.
#[test]
fn plain_escapes_are_refused_and_nothing_is_written() {
    let scratch = tempfile::tempdir().unwrap();
    let lock = entry(".imgpkg/images.yml", b'0', LOCK, "");
    type Case<'a> = (&'a str, Vec<u8>, Option<Vec<u8>>);
    let cases: Vec<Case<'_>> = vec![
        ("../escaped", entry("../escaped", b'0', b"x", ""), None),
        ("/tmp/ferry-absolute", entry("/tmp/ferry-absolute", b'0', b"x", ""), None),
        ("outside", entry("outside", b'2', b"", "../.."), None),
        ("hop/escaped", entry("hop", b'2', b"", "."), Some(entry("hop/escaped", b'0', b"x", ""))),
        ("dev", entry("dev", b'3', b"", ""), None),
    ];
    for (named, first, second) in cases {
        let entries: Vec<Vec<u8>> = [Some(lock.clone()), Some(first), second].into_iter().flatten().collect();
        let (dir, layout, archive) = case(scratch.path(), &named.replace('/', "_"), &entries);
        let work = dir.join("work");
        std::fs::create_dir(&work).unwrap();
        refused(
            &run(&work, &["pull", "--tar", archive.to_str().unwrap(), "-b", "hostile", "-o", "bundle"]),
            named,
            named,
        );
        refused(&run(&work, &["export", "--oci-layout", layout.to_str().unwrap(), "-o", "x.tar"]), named, named);
        let left: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
            .min_depth(1)
            .into_iter()
            .map(|e| e.unwrap().path().strip_prefix(&dir).unwrap().to_path_buf())
            .filter(|p| !p.starts_with("layout") && *p != Path::new("hostile.tar"))
            .collect();
        assert_eq!(left, vec![PathBuf::from("work")], "{named}: nothing written anywhere");
        assert!(!Path::new("/tmp/ferry-absolute").exists());
    }
}

/// PL-1 with `--recursive` (security review): the root bundle's link
/// `r -> .imgpkg/bundles/sha256-<nested>/a/a/.../../../<victim>` resolves inside DIR while `a`
/// is taken for a directory, which is all the root's own check can know; the nested bundle,
/// extracted after it, holds `a -> .`, and on disk the link then climbs out of DIR to the
/// victim. Every link is checked again once the nested bundles are in place: the pull is
/// refused, naming the link, and leaves no DIR.
#[test]
fn a_root_link_through_a_nested_bundle_never_leads_outside() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("nested-link");
    let layout = dir.join("layout");
    let nested_tar = support::raw_tar::tar(&[entry(".imgpkg/images.yml", b'0', LOCK, ""), entry("a", b'2', b"", ".")]);
    let nested = bundle_blobs(&layout, &nested_tar, &gzip(&nested_tar));
    let nested_digest = sha256_digest(&nested);
    let lock = format!(
        "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n- image: registry.example.com/nested@{nested_digest}\nkind: ImagesLock\n"
    );
    let victim = scratch.path().join("victim");
    std::fs::write(&victim, "mine").unwrap();
    let depth = 10;
    let target = format!(
        ".imgpkg/bundles/sha256-{}/{}{}{}",
        nested_digest.hex(),
        "a/".repeat(depth),
        "../".repeat(depth + 3),
        victim.strip_prefix("/").unwrap().display()
    );
    let root_tar = support::raw_tar::tar(&[
        entry(".imgpkg/images.yml", b'0', lock.as_bytes(), ""),
        entry("r", b'2', b"", &target),
    ]);
    let root = bundle_blobs(&layout, &root_tar, &gzip(&root_tar));
    let top = |manifest: &[u8], name: &str| {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256_digest(manifest).to_string(),
               "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": name}})
    };
    write_index(&layout, vec![top(&root, "hostile"), top(&nested, "nested")]);
    let archive = dir.join("hostile.tar");
    layout_tar(&layout, &archive);
    let archive = archive.to_str().unwrap();

    let plain = run(&dir, &["pull", "--tar", archive, "-b", "hostile", "-o", "alone"]);
    assert!(plain.status.success(), "without --recursive the link stays inside: {}", text(&plain.stderr));
    let recursive = run(&dir, &["pull", "--tar", archive, "-b", "hostile", "-o", "out", "--recursive"]);
    refused(&recursive, "recursive", "\"r\"");
    assert!(!dir.join("out").exists(), "no output directory");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
}

/// BL-7 (security review): a bundle layer that grows more than 128 times its size when
/// decompressed (here 100 MiB of zeros before the lock, a ~100 KiB gzip) is refused by the
/// readers that look for its lock, after 64 MiB of work, instead of being read to its end
/// (a 2 MiB zstd layer of repeated blocks held 64 GiB and cost every verify seconds per MiB).
#[test]
fn a_bundle_layer_bomb_is_stopped() {
    let scratch = tempfile::tempdir().unwrap();
    let zeros = vec![0u8; 100 << 20];
    let entries = vec![entry("padding", b'0', &zeros, ""), entry(".imgpkg/images.yml", b'0', LOCK, "")];
    drop(zeros);
    let (dir, _, archive) = case(scratch.path(), "bomb", &entries);
    let archive = archive.to_str().unwrap();
    for args in [&["verify", archive][..], &["describe", "--tar", archive][..]] {
        let output = run(&dir, args);
        let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert_ne!(output.status.code(), Some(0), "{args:?}: {printed}");
        assert!(printed.contains("once decompressed"), "{args:?}: {printed}");
    }
}
