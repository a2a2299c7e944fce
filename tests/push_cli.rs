//! `ferry push` and `ferry export -f` against a real registry (tests/support), checked with
//! independent tools: skopeo reads what was pushed and GNU tar unpacks its layer. Rules are
//! from spec/cli.md "push" and spec/imgpkg.md "Building".

mod cli;
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cli::{ferry, json_of, text};
use serde_json::Value;
use support::{Registry, Variant, run_bounded, write_image_layout};

fn push(registry: &Registry, args: &[&str]) -> Output {
    ferry().arg("push").args(args).arg("--json").args(registry.access_flags()).output().unwrap()
}

fn write(path: &Path, content: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A bundle's files: a lock naming `image`, a config, an executable script, an empty directory
/// and a `.git` directory (excluded by default).
fn bundle_files(dir: &Path, image: &str) {
    let lock = format!(
        "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n- annotations:\n    kbld.carvel.dev/id: app\n  image: {image}\nkind: ImagesLock\n"
    );
    write(&dir.join(".imgpkg/images.yml"), lock.as_bytes(), 0o644);
    write(&dir.join("config/app.yml"), b"replicas: 3\n", 0o644);
    write(&dir.join("bin/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write(&dir.join(".git/HEAD"), b"ref: refs/heads/main\n", 0o644);
    std::fs::create_dir_all(dir.join("empty")).unwrap();
}

/// Reads the single layer of `reference` with skopeo and unpacks it with GNU tar into `out`.
fn unpack_pushed(registry: &Registry, reference: &str, out: &Path) {
    let raw = run_bounded(
        std::process::Command::new("skopeo")
            .args(["inspect", "--raw"])
            .args(registry.skopeo_flags(""))
            .arg(format!("docker://{}/{reference}", registry.host())),
        Duration::from_secs(60),
    );
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip");
    let digest = layers[0]["digest"].as_str().unwrap();
    let repo = reference.split(':').next().unwrap();
    let layer = out.with_extension("tgz");
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sf", "-o"]).arg(&layer).args(registry.curl_args());
    if let Some((user, password)) = registry.credentials() {
        curl.args(["-u", &format!("{user}:{password}")]);
    }
    let fetched =
        run_bounded(curl.arg(format!("{}/v2/{repo}/blobs/{digest}", registry.url())), Duration::from_secs(60));
    assert!(fetched.status.success(), "GET {digest}");
    std::fs::create_dir_all(out).unwrap();
    let untar = run_bounded(
        std::process::Command::new("tar").arg("-xzpf").arg(&layer).arg("-C").arg(out),
        Duration::from_secs(60),
    );
    assert!(untar.status.success(), "GNU tar: {}", text(&untar.stderr));
}

/// Every path under `dir` with its mode and content.
fn tree(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.path().symlink_metadata().unwrap();
            let content = if meta.is_file() { std::fs::read(entry.path()).unwrap() } else { Vec::new() };
            (
                entry.path().strip_prefix(dir).unwrap().display().to_string(),
                (meta.permissions().mode() & 0o777, content),
            )
        })
        .collect()
}

/// An image in the registry for the bundle's lock to name; returns its digest reference.
fn lockable_image(registry: &Registry, scratch: &Path) -> String {
    let layout = scratch.join("app-layout");
    let digest = write_image_layout(&layout, "app", &[("app.bin", b"app")]).manifest_digest;
    registry.push_layout(&layout, "app", "team/app:1");
    format!("{}/team/app@{digest}", registry.host())
}

/// The round trip through a TLS registry with basic auth: GNU tar unpacks exactly the files
/// (`.git` left out), files keep only their owner's bits, directories are 0700; the tags are the
/// given one and `sha256-<hex>.imgpkg`; `--lock-output` is a BundleLock (0600); the same files
/// with other mtimes and group bits give the same digest, `--preserve-permissions` keeps modes.
#[test]
fn push_round_trips_files_reproducibly() {
    let registry = Registry::start(Variant::TlsBasicAuth);
    let scratch = tempfile::tempdir().unwrap();
    let image = lockable_image(&registry, scratch.path());
    let files = scratch.path().join("files");
    bundle_files(&files, &image);
    let lock = scratch.path().join("bundle.lock.yml");
    let reference = format!("{}/team/bundle:1.0", registry.host());
    let output =
        push(&registry, &["-b", &reference, "-f", files.to_str().unwrap(), "--lock-output", lock.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = json_of(&output);
    let digest = summary["digest"].as_str().unwrap().to_string();
    assert_eq!(summary["tags"], serde_json::json!(["1.0", format!("{}.imgpkg", digest.replace(':', "-"))]));
    assert_eq!(summary["files"], 3);
    let lock_text = std::fs::read_to_string(&lock).unwrap();
    assert_eq!(
        lock_text,
        format!(
            "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nbundle:\n  image: {}/team/bundle@{digest}\n  tag: \"1.0\"\nkind: BundleLock\n",
            registry.host()
        )
    );
    assert_eq!(std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777, 0o600);

    let unpacked = scratch.path().join("unpacked");
    unpack_pushed(&registry, "team/bundle:1.0", &unpacked);
    let got = tree(&unpacked);
    let expected: Vec<(&str, u32)> = vec![
        (".imgpkg", 0o700),
        (".imgpkg/images.yml", 0o600),
        ("bin", 0o700),
        ("bin/run.sh", 0o700),
        ("config", 0o700),
        ("config/app.yml", 0o600),
        ("empty", 0o700),
    ];
    assert_eq!(got.iter().map(|(path, (mode, _))| (path.as_str(), *mode)).collect::<Vec<_>>(), expected);
    for (path, (_, content)) in &got {
        if !content.is_empty() {
            assert_eq!(content, &std::fs::read(files.join(path)).unwrap(), "{path} byte for byte");
        }
    }

    // Another copy of the same files, other mtimes and group/other bits: the same digest.
    let again = scratch.path().join("again");
    bundle_files(&again, &image);
    std::fs::set_permissions(again.join("config"), std::fs::Permissions::from_mode(0o775)).unwrap();
    std::fs::set_permissions(again.join("config/app.yml"), std::fs::Permissions::from_mode(0o664)).unwrap();
    let second =
        push(&registry, &["-b", &format!("{}/team/bundle:1.1", registry.host()), "-f", again.to_str().unwrap()]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(json_of(&second)["digest"], digest.as_str(), "reproducible across copies and runs");

    // --preserve-permissions keeps group and other bits, and so makes another digest.
    let kept = push(
        &registry,
        &[
            "-b",
            &format!("{}/team/bundle:perm", registry.host()),
            "-f",
            files.to_str().unwrap(),
            "--preserve-permissions",
        ],
    );
    assert!(kept.status.success(), "{}", text(&kept.stderr));
    assert_ne!(json_of(&kept)["digest"], digest.as_str());
    let unpacked = scratch.path().join("unpacked-perm");
    unpack_pushed(&registry, "team/bundle:perm", &unpacked);
    let modes = tree(&unpacked);
    assert_eq!(modes["config/app.yml"].0, 0o644);
    assert_eq!(modes["bin/run.sh"].0, 0o755);
}

/// Every problem is reported at once and nothing is pushed: symlinks, fifos, a lock with two bad
/// entries, a reserved label; `-i` refuses a bundle directory and `-b` needs `.imgpkg`.
#[test]
fn push_refuses_with_every_problem_named() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let files = scratch.path().join("files");
    write(
        &files.join(".imgpkg/images.yml"),
        b"---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n- image: nginx:latest\n- image: registry.example.com/app@sha256:abc\nkind: ImagesLock\n",
        0o644,
    );
    std::os::unix::fs::symlink("/etc/passwd", files.join("link")).unwrap();
    let fifo = files.join("pipe");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let bundle = format!("{}/team/bad:1", registry.host());
    let output = push(&registry, &["-b", &bundle, "-f", files.to_str().unwrap(), "-l", "dev.carvel.imgpkg.bundle=x"]);
    assert_eq!(output.status.code(), Some(1));
    let message = text(&output.stderr);
    for expected in ["link: symlinks", "pipe: only regular files", "images[0]", "images[1]", "is reserved"] {
        assert!(message.contains(expected), "{expected:?} missing from: {message}");
    }

    let image = format!("{}/team/img:1", registry.host());
    let output = push(&registry, &["-i", &image, "-f", files.join(".imgpkg").parent().unwrap().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("push it with -b"), "{}", text(&output.stderr));
    let plain = scratch.path().join("plain");
    write(&plain.join("a.txt"), b"a", 0o644);
    let output = push(&registry, &["-b", &bundle, "-f", plain.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains(".imgpkg/images.yml"), "{}", text(&output.stderr));

    let listed = ferry()
        .args(["tag", "list", &format!("{}/team/bad", registry.host())])
        .args(registry.access_flags())
        .output()
        .unwrap();
    assert!(!listed.status.success() || listed.stdout.is_empty(), "nothing was pushed: {}", text(&listed.stdout));
}

/// `export -f` builds the bundle locally and archives it with its images; importing the archive
/// gives the bundle the digest `push` gives the same files, and the archive verifies offline.
#[test]
fn export_from_files_matches_push() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let image = lockable_image(&registry, scratch.path());
    let files = scratch.path().join("files");
    bundle_files(&files, &image);
    let archive: PathBuf = scratch.path().join("bundle.tar");
    let exported = ferry()
        .args(["export", "-f", files.to_str().unwrap(), "-o", archive.to_str().unwrap(), "--json"])
        .args(registry.access_flags())
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    assert_eq!(json_of(&exported)["bundles"], 1);
    let verified = ferry().arg("verify").arg(&archive).output().unwrap();
    assert!(verified.status.success(), "{}", text(&verified.stdout));

    let pushed =
        push(&registry, &["-b", &format!("{}/team/bundle:1.0", registry.host()), "-f", files.to_str().unwrap()]);
    assert!(pushed.status.success(), "{}", text(&pushed.stderr));
    let digest = json_of(&pushed)["digest"].as_str().unwrap().to_string();

    let imported = ferry()
        .arg("import")
        .arg(&archive)
        .args(["--to-repo", &format!("{}/mirror/bundle", registry.host()), "--json"])
        .args(registry.access_flags())
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let tags: Vec<String> =
        json_of(&imported)["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    assert!(tags.contains(&format!("{}.imgpkg", digest.replace(':', "-"))), "{tags:?}");
    let app_digest = image.split('@').nth(1).unwrap();
    assert!(
        tags.contains(&format!("{}.imgpkg", app_digest.replace(':', "-"))),
        "the locked image came along: {tags:?}"
    );
}
