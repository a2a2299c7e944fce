//! imgpkg users' bundle commands against a real registry (tests/support): `ferry copy` from
//! registries into one repository (spec/cli.md "copy": same tags, records and lock as import;
//! blobs mounted within a registry, counted on the wire by a proxy), and `ferry pull` from a
//! registry and from an archive (spec/cli.md "pull": PL-2 lock rewrite; PL-1's hostile layers
//! are in tests/hostile_layers.rs).

mod cli;
mod seed;
mod support;

include!("seed/fixture_modules.rs");

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cli::{ferry, json_of, tag_digests, text};
use serde_json::Value;
use support::{Registry, Variant, write_image_layout};

fn run(args: &[&str]) -> Output {
    ferry().args(args).arg("--registry-insecure").output().unwrap()
}

fn succeed(args: &[&str]) -> Output {
    let output = run(args);
    assert!(output.status.success(), "ferry {args:?}: {}", text(&output.stderr));
    output
}

/// Every tag of `repo` with its digest, internal tags included.
fn tags(repo: &str) -> BTreeMap<String, String> {
    tag_digests(&succeed(&["tag", "list", repo, "--digests", "--imgpkg-internal-tags", "--json"]))
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, counting the bytes clients send through it.
struct CountingProxy {
    host: String,
    sent: Arc<AtomicU64>,
}

impl CountingProxy {
    fn start(upstream: &str) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let sent = Arc::new(AtomicU64::new(0));
        let (counter, upstream) = (Arc::clone(&sent), upstream.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(&upstream).unwrap();
                let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || pump(client_in, server_out, Some(counter)));
                std::thread::spawn(move || pump(server, client, None));
            }
        });
        CountingProxy { host, sent }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, counter: Option<Arc<AtomicU64>>) {
    let mut buffer = vec![0; 64 << 10];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(counter) = &counter {
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                }
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Incompressible bytes, so the layer is as large on the wire as on disk.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

/// Within one registry, a copy mounts every blob instead of sending it; into another registry
/// it sends them. Counted on the wire, not taken from ferry's own summary.
#[test]
fn copy_within_a_registry_mounts_instead_of_uploading() {
    let registry = Registry::start(Variant::Plain);
    let other = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let layer = noise(4 << 20, 7);
    let image = write_image_layout(&scratch.path().join("big"), "latest", &[("big.bin", &layer)]);
    registry.push_layout(&scratch.path().join("big"), "latest", "team/big:1.0");
    let (same, elsewhere) = (CountingProxy::start(registry.host()), CountingProxy::start(other.host()));

    let source = format!("{}/team/big:1.0", same.host);
    let copied = succeed(&["copy", "-i", &source, "--to-repo", &format!("{}/prod/big", same.host), "--json"]);
    let summary = json_of(&copied);
    assert_eq!(summary["blobsMounted"], 2, "config and layer mounted: {summary}");
    assert_eq!(summary["bytesUploaded"], 0, "{summary}");
    assert!(same.sent() < 64 << 10, "{} bytes sent for a mount-only copy of a 4 MiB image", same.sent());
    let target = tags(&format!("{}/prod/big", same.host));
    assert_eq!(target.get("1.0"), Some(&image.manifest_digest), "the root keeps its tag: {target:?}");

    let before = elsewhere.sent();
    let copied = succeed(&["copy", "-i", &source, "--to-repo", &format!("{}/prod/big", elsewhere.host), "--json"]);
    assert_eq!(json_of(&copied)["blobsMounted"], 0);
    assert!(elsewhere.sent() - before >= layer.len() as u64, "another registry gets the bytes");
}

/// `copy -b --to-repo` leaves exactly what export then import leaves (tags, digests, records),
/// writes the same lock; pulling the copy rewrites every lock to the new repository, nested
/// ones included, while pulling the original keeps its lock.
#[test]
fn copy_matches_import_and_pull_follows_the_relocation() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let root = seed::seed_bundle(&registry, scratch.path());
    let host = registry.host();
    let source = format!("{host}/team/bundle:1.0");
    let archive = scratch.path().join("bundle.tar");
    succeed(&["export", "-b", &source, "-o", archive.to_str().unwrap()]);
    let (import_lock, copy_lock) = (scratch.path().join("import.lock"), scratch.path().join("copy.lock"));
    succeed(&[
        "import",
        archive.to_str().unwrap(),
        "--to-repo",
        &format!("{host}/mirror/bundle"),
        "--lock-output",
        import_lock.to_str().unwrap(),
    ]);
    let copied = succeed(&[
        "copy",
        "-b",
        &source,
        "--to-repo",
        &format!("{host}/prod/bundle"),
        "--lock-output",
        copy_lock.to_str().unwrap(),
        "--json",
    ]);
    let summary = json_of(&copied);
    assert_eq!(summary["locationsRecords"], 2);
    assert!(summary["blobsMounted"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(tags(&format!("{host}/prod/bundle")), tags(&format!("{host}/mirror/bundle")));
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    assert_eq!(read(&copy_lock), read(&import_lock).replace("mirror/bundle", "prod/bundle"));
    assert!(read(&copy_lock).contains(&format!("{host}/prod/bundle@{root}")));
    assert_eq!(std::fs::metadata(&copy_lock).unwrap().permissions().mode() & 0o777, 0o600);

    // The copy: every lock points at prod/bundle, annotations kept.
    let relocated = scratch.path().join("relocated");
    let pulled = succeed(&["pull", "-b", &format!("{host}/prod/bundle:1.0"), "-o", relocated.to_str().unwrap(), "-r"]);
    assert!(text(&pulled.stderr).contains("points at"), "{}", text(&pulled.stderr));
    let locks = locks_under(&relocated);
    assert_eq!(locks.len(), 2, "root and nested bundle locks: {locks:?}");
    for (path, lock) in &locks {
        let images: Vec<&str> = lock.lines().filter_map(|l| l.trim().strip_prefix("image: ")).collect();
        assert!(!images.is_empty(), "{path}");
        assert!(images.iter().all(|i| i.starts_with(&format!("{host}/prod/bundle@sha256:"))), "{path}: {lock}");
        assert!(lock.contains("kbld.carvel.dev/id"), "annotations kept: {lock}");
    }

    // The original: its images are elsewhere, so its lock stays as carried.
    let original = scratch.path().join("original");
    let pulled = succeed(&["pull", "-b", &source, "-o", original.to_str().unwrap(), "-r", "--json"]);
    let summary = json_of(&pulled);
    assert!(summary["bundles"].as_array().unwrap().iter().all(|b| b["lock"]["rewritten"] == false), "{summary}");
    assert!(locks_under(&original).values().all(|lock| lock.contains(&format!("{host}/team/"))));
}

/// Every `.imgpkg/images.yml` under `dir`, by relative path.
fn locks_under(dir: &Path) -> BTreeMap<String, String> {
    tree(dir)
        .into_iter()
        .filter(|(path, _)| path.ends_with(".imgpkg/images.yml"))
        .map(|(path, (_, content))| (path, String::from_utf8(content).unwrap()))
        .collect()
}

/// Every file under `dir`: relative path -> (mode, content); directories with empty content.
fn tree(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let relative = entry.path().strip_prefix(dir).unwrap().display().to_string();
            let meta = entry.path().symlink_metadata().unwrap();
            let content = if meta.is_file() { std::fs::read(entry.path()).unwrap() } else { Vec::new() };
            (relative, (meta.permissions().mode() & 0o7777, content))
        })
        .collect()
}

/// `pull --tar` needs no registry: with the registry gone, it writes the same files as a pull
/// of the original from the registry, nested bundles included.
#[test]
fn pull_from_an_archive_needs_no_registry() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let root = seed::seed_bundle(&registry, scratch.path());
    let source = format!("{}/team/bundle:1.0", registry.host());
    let archive = scratch.path().join("bundle.tar");
    succeed(&["export", "-b", &source, "-o", archive.to_str().unwrap()]);
    let from_registry = scratch.path().join("from-registry");
    succeed(&["pull", "-b", &source, "-o", from_registry.to_str().unwrap(), "-r"]);
    drop(registry);

    for wanted in [source.as_str(), root.as_str()] {
        let from_archive = scratch.path().join(format!("from-archive-{}", wanted.len()));
        let output = ferry()
            .args(["pull", "--tar", archive.to_str().unwrap(), "-b", wanted, "-o", from_archive.to_str().unwrap()])
            .args(["-r", "--json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert_eq!(json_of(&output)["digest"], root.as_str());
        assert_eq!(tree(&from_archive), tree(&from_registry), "same files, modes and locks");
        assert!(tree(&from_archive).keys().any(|path| path.starts_with(".imgpkg/bundles/sha256-")));
    }
    let missing = ferry()
        .args(["pull", "--tar", archive.to_str().unwrap(), "-b", "registry.example.com/none:1", "-o"])
        .arg(scratch.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("registry.example.com/none:1"), "{}", text(&missing.stderr));
}

/// The output directory is never `.`, `/` or a directory holding files; `-i` of a bundle is
/// refused with a hint; nothing is overwritten.
#[test]
fn pull_protects_the_output_directory_and_checks_the_kind() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    seed::seed_bundle(&registry, scratch.path());
    let source = format!("{}/team/bundle:1.0", registry.host());
    for dir in [".", "..", "/"] {
        let output = run(&["pull", "-b", &source, "-o", dir]);
        assert_eq!(output.status.code(), Some(1), "-o {dir}");
        assert!(text(&output.stderr).contains("output directory"), "{}", text(&output.stderr));
    }
    let full = scratch.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), b"mine").unwrap();
    let output = run(&["pull", "-b", &source, "-o", full.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("not empty"), "{}", text(&output.stderr));
    assert_eq!(std::fs::read(full.join("keep.txt")).unwrap(), b"mine");

    let wrong = run(&["pull", "-i", &source, "-o", scratch.path().join("x").to_str().unwrap()]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(text(&wrong.stderr).contains("use -b"), "{}", text(&wrong.stderr));
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    succeed(&["pull", "-b", &source, "-o", empty.to_str().unwrap()]);
    assert!(empty.join(".imgpkg/images.yml").is_file());
}

/// A bundle copied into another registry is described and pulled from there alone: with its
/// origin registry stopped, `describe` shows every entry in the new repository (origins named,
/// not contacted), `pull -r` rewrites every lock and `copy` copies it on. `describe --tar`
/// needs no registry.
#[test]
fn a_relocated_bundle_is_described_and_pulled_without_its_origin() {
    let origin = Registry::start(Variant::Plain);
    let target = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let root = seed::seed_bundle(&origin, scratch.path());
    let source = format!("{}/team/bundle:1.0", origin.host());
    let archive = scratch.path().join("bundle.tar");
    succeed(&["export", "-b", &source, "-o", archive.to_str().unwrap()]);
    let relocated = format!("{}/prod/bundle", target.host());
    succeed(&["copy", "-b", &source, "--to-repo", &relocated]);
    let origin_host = origin.host().to_string();
    drop(origin);

    let described = json_of(&succeed(&["describe", "-b", &format!("{relocated}:1.0"), "--json"]));
    let tree = &described["bundle"];
    assert_eq!(tree["kind"], "bundle");
    assert_eq!(tree["digest"], root.as_str());
    let mut nodes = Vec::new();
    let mut stack: Vec<&Value> = tree["children"].as_array().unwrap().iter().collect();
    while let Some(node) = stack.pop() {
        stack.extend(node["children"].as_array().unwrap());
        nodes.push(node);
    }
    assert_eq!(nodes.len(), 4, "app, svc index, nested bundle, sidecar: {described}");
    for node in &nodes {
        assert!(node["reference"].as_str().unwrap().starts_with(&format!("{relocated}@sha256:")), "{node}");
        assert!(node["origin"].as_str().unwrap().starts_with(&format!("{origin_host}/team/")), "{node}");
        assert_eq!(node["relocated"], true);
        assert!(node["annotations"]["kbld.carvel.dev/id"].is_string(), "{node}");
    }
    let index = nodes.iter().find(|n| n["kind"] == "index").unwrap();
    assert_eq!(index["platforms"].as_array().unwrap().len(), 2);

    let pulled = scratch.path().join("pulled");
    succeed(&["pull", "-b", &format!("{relocated}:1.0"), "-o", pulled.to_str().unwrap(), "-r"]);
    let locks = locks_under(&pulled);
    assert_eq!(locks.len(), 2);
    assert!(locks.values().all(|lock| !lock.contains(&origin_host)), "{locks:?}");

    // Copying the relocated bundle on reads it from its repository too, mounting every blob.
    let again = json_of(&succeed(&[
        "copy",
        "-b",
        &format!("{relocated}:1.0"),
        "--to-repo",
        &format!("{}/again/bundle", target.host()),
        "--json",
    ]));
    assert!(again["blobsMounted"].as_u64().unwrap() > 0, "{again}");
    assert_eq!(tags(&format!("{}/again/bundle", target.host())).get("1.0"), Some(&root));

    let offline = ferry().args(["describe", "--tar", archive.to_str().unwrap()]).output().unwrap();
    assert!(offline.status.success(), "{}", text(&offline.stderr));
    let printed = text(&offline.stdout);
    assert!(printed.starts_with(&format!("bundle {source}")), "{printed}");
    assert!(printed.contains("index ") && printed.contains("[linux/amd64, linux/arm64]"), "{printed}");
}
