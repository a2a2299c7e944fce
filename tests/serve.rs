//! `ferry serve` (issue 16, spec/serve.md): an archive served as a read-only registry to real
//! clients. skopeo copies every artifact under its original name with its digest; the real
//! imgpkg (../shared/tools/imgpkg; a missing imgpkg fails the test) pulls and copies the bundle
//! from the `--repo` view; `ferry export -b` from that view, with the origin registry stopped,
//! writes the same blobs; Range, 404/405 bodies, pagination, 32 concurrent clients, TLS, the
//! stop on SIGTERM; a damaged blob is never served, and a consistent forgery is refused by
//! `--identity`.

mod cli;
mod seed;
mod support;

include!("seed/fixture_modules.rs");

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli::{ferry, json_of, text};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::{Registry, Variant, imgpkg, run_bounded};

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `ferry serve`, stopped (killed, if it has not exited) on drop.
struct Served {
    child: Child,
    ready: Value,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts `ferry serve ARCHIVE --addr 127.0.0.1:0 --json ARGS` and waits for its ready line.
    fn start(archive: &Path, args: &[&str]) -> Served {
        match Served::try_start(archive, args) {
            Ok(served) => served,
            Err(output) => panic!("ferry serve did not start: {output}"),
        }
    }

    /// The ready line, or everything the server printed when it exited instead.
    fn try_start(archive: &Path, args: &[&str]) -> Result<Served, String> {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let binary = assert_cmd::cargo::cargo_bin("ferry");
        let mut child = Command::new(binary)
            .arg("serve")
            .arg(archive)
            .args(["--addr", "127.0.0.1:0", "--json"])
            .args(args)
            .env_remove("FERRY_CONCURRENCY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = send.send(line);
        });
        let line = receive.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        if line.trim().is_empty() {
            let _ = child.kill();
            let status = child.wait().unwrap();
            return Err(format!("{status}: {}", std::fs::read_to_string(&log).unwrap_or_default()));
        }
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        Ok(Served { child, ready, log, _dir: dir })
    }

    fn url(&self) -> String {
        self.ready["url"].as_str().unwrap().to_string()
    }

    fn host(&self) -> String {
        self.ready["address"].as_str().unwrap().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and returns the exit status, which must come within 15 s.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "ferry serve did not stop within 15 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -s` with the given arguments: (HTTP status, headers, body).
fn curl(args: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let output = run_bounded(
        Command::new("curl").args(["-s", "-D"]).arg(&headers).args(["-o", "-", "-w", ""]).args(args),
        TOOL_TIMEOUT,
    );
    let headers = std::fs::read_to_string(&headers).unwrap_or_default();
    let status = headers.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, headers.to_lowercase(), output.stdout)
}

fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn run_imgpkg(args: &[&str]) -> Output {
    let output = run_bounded(
        Command::new(imgpkg()).args(args).arg("--registry-insecure").env("HOME", std::env::temp_dir()),
        TOOL_TIMEOUT,
    );
    assert!(output.status.success(), "imgpkg {args:?}: {}{}", text(&output.stdout), text(&output.stderr));
    output
}

fn succeed(args: &[&str]) -> Output {
    let output = ferry().args(args).output().unwrap();
    assert!(output.status.success(), "ferry {args:?}: {}{}", text(&output.stdout), text(&output.stderr));
    output
}

fn inspect(archive: &Path) -> Value {
    json_of(&succeed(&["inspect", "--json", archive.to_str().unwrap()]))
}

/// The blob names an archive holds.
fn blobs_of(archive: &Path) -> BTreeSet<String> {
    let mut entries = tar::Archive::new(std::fs::File::open(archive).unwrap());
    entries
        .entries()
        .unwrap()
        .filter_map(|entry| {
            entry.unwrap().path().unwrap().to_string_lossy().strip_prefix("blobs/sha256/").map(String::from)
        })
        .filter(|hex| !hex.is_empty())
        .collect()
}

/// The byte offset and size of blob `hex`'s data in an archive.
fn blob_position(archive: &Path, hex: &str) -> (u64, u64) {
    let mut entries = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in entries.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == format!("blobs/sha256/{hex}") {
            return (entry.raw_file_position(), entry.size());
        }
    }
    panic!("blob {hex} is not in {}", archive.display())
}

/// Exports the seeded bundle from a registry that is then stopped.
fn exported_bundle(scratch: &Path) -> PathBuf {
    let origin = Registry::start(Variant::Plain);
    seed::seed_bundle(&origin, scratch);
    let archive = scratch.join("bundle.tar");
    let source = format!("{}/team/bundle:1.0", origin.host());
    succeed(&["export", "-b", &source, "-o", archive.to_str().unwrap(), "--registry-insecure"]);
    drop(origin);
    archive
}

#[test]
fn real_clients_pull_both_views_with_the_origin_stopped() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = exported_bundle(scratch.path());
    let report = inspect(&archive);
    let mut served = Served::start(&archive, &["--repo", "served/bundle"]);
    let (url, host) = (served.url(), served.host());
    assert_eq!(served.ready["identity"], report["identity"], "the ready line names the archive (SV-4)");

    // SV-2 original names: skopeo copies every artifact by its original path, keeping digests.
    let artifacts = report["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 5);
    for artifact in artifacts {
        let original = artifact["originalRef"].as_str().unwrap();
        let digest = artifact["digest"].as_str().unwrap();
        let path = original.split_once('/').unwrap().1.split(['@', ':']).next().unwrap();
        let reference = match original.rsplit_once(':').filter(|(_, tag)| !tag.contains('/') && !original.contains('@'))
        {
            Some((_, tag)) => format!("{host}/{path}:{tag}"),
            None => format!("{host}/{path}@{digest}"),
        };
        let out = scratch.path().join(format!("skopeo-{}", &digest[7..19]));
        let copied = run_bounded(
            Command::new("skopeo")
                .args(["copy", "--all", "--preserve-digests", "--quiet", "--src-tls-verify=false"])
                .arg(format!("docker://{reference}"))
                .arg(format!("oci:{}", out.display())),
            TOOL_TIMEOUT,
        );
        assert!(copied.status.success(), "skopeo copy {reference}: {}", text(&copied.stderr));
        let index: Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], digest, "{reference} keeps its digest");
    }
    // The root by its tag and by digest, HEAD and GET, with the stored media type.
    let root = artifacts.iter().find(|a| a["root"] == true).unwrap();
    let (status, headers, body) = curl(&[&format!("{url}/v2/team/bundle/manifests/1.0")]);
    assert_eq!(status, 200);
    assert_eq!(sha256_of(&body), root["digest"].as_str().unwrap());
    assert!(headers.contains(&format!("docker-content-digest: {}", root["digest"].as_str().unwrap())), "{headers}");
    assert!(headers.contains(&format!("content-type: {}", root["mediaType"].as_str().unwrap())), "{headers}");
    let (status, headers, _) =
        curl(&["-I", &format!("{url}/v2/team/bundle/manifests/{}", root["digest"].as_str().unwrap())]);
    assert_eq!(status, 200);
    assert!(headers.contains(&format!("content-length: {}", body.len())), "{headers}");

    // SV-2 one repository: imgpkg pulls (locks rewritten to the served repository) and copies.
    let at = format!("{host}/served/bundle:1.0");
    let pulled = scratch.path().join("imgpkg-pulled");
    run_imgpkg(&["pull", "-b", &at, "-o", pulled.to_str().unwrap(), "-r"]);
    let lock = std::fs::read_to_string(pulled.join(".imgpkg/images.yml")).unwrap();
    assert!(lock.contains(&format!("{host}/served/bundle@sha256:")), "{lock}");
    let copied = scratch.path().join("imgpkg-copy.tar");
    run_imgpkg(&["copy", "-b", &at, "--to-tar", copied.to_str().unwrap()]);
    // ferry export -b from the served repository: exactly the served archive's blobs.
    let again = scratch.path().join("again.tar");
    succeed(&["export", "-b", &at, "-o", again.to_str().unwrap(), "--registry-insecure"]);
    assert_eq!(blobs_of(&again), blobs_of(&archive), "a round trip through ferry serve");

    // The imgpkg tags an import writes, listed and paginated.
    let (_, _, body) = curl(&[&format!("{url}/v2/served/bundle/tags/list")]);
    let tags: Value = serde_json::from_slice(&body).unwrap();
    let tags: Vec<&str> = tags["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tags.contains(&"1.0"));
    assert_eq!(tags.iter().filter(|t| t.ends_with(".image-locations.imgpkg")).count(), 2, "{tags:?}");
    assert_eq!(
        tags.iter().filter(|t| t.ends_with(".imgpkg")).count(),
        5 + 2 + 2,
        "artifacts, records, records' own tags: {tags:?}"
    );
    let mut paged = Vec::new();
    let mut next = format!("{url}/v2/served/bundle/tags/list?n=3");
    loop {
        let (status, headers, body) = curl(&[&next]);
        assert_eq!(status, 200);
        let page: Value = serde_json::from_slice(&body).unwrap();
        paged.extend(page["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()));
        match headers.lines().find_map(|line| line.strip_prefix("link: <")) {
            Some(link) => next = format!("{url}{}", link.split('>').next().unwrap()),
            None => break,
        }
    }
    assert_eq!(paged, tags, "pages of n=3 following Link give every tag once, in order");
    let (_, _, body) = curl(&[&format!("{url}/v2/_catalog?n=2&last=team/app")]);
    let catalog: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!(["team/bundle", "team/nested-bundle"]));

    // SV-1 Range on a layer: 206 with Content-Range, a suffix range, and 416.
    let layer = largest_blob(&archive);
    let blob_url = format!("{url}/v2/served/bundle/blobs/sha256:{}", layer.0);
    let (_, _, whole) = curl(&[&blob_url]);
    assert_eq!(sha256_of(&whole), format!("sha256:{}", layer.0));
    let (status, headers, part) = curl(&["-H", "Range: bytes=10-19", &blob_url]);
    assert_eq!((status, &part[..]), (206, &whole[10..20]));
    assert!(headers.contains(&format!("content-range: bytes 10-19/{}", whole.len())), "{headers}");
    let (status, _, part) = curl(&["-H", "Range: bytes=-7", &blob_url]);
    assert_eq!((status, &part[..]), (206, &whole[whole.len() - 7..]));
    let (status, headers, body) = curl(&["-H", &format!("Range: bytes={}-", whole.len()), &blob_url]);
    assert_eq!(status, 416);
    assert!(headers.contains(&format!("content-range: bytes */{}", whole.len())), "{headers}");
    // The blob is known, its range is not: not BLOB_UNKNOWN, which would tell a client to give up.
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errors"][0]["code"], "RANGE_INVALID", "{body}");

    // SV-1 errors: the distribution spec's codes and bodies; writes are 405 UNSUPPORTED.
    let zero = format!("sha256:{}", "0".repeat(64));
    for (path, status, code) in [
        ("/v2/nope/manifests/1.0".to_string(), 404, "NAME_UNKNOWN"),
        ("/v2/team/bundle/manifests/2.0".to_string(), 404, "MANIFEST_UNKNOWN"),
        (format!("/v2/team/bundle/blobs/{zero}"), 404, "BLOB_UNKNOWN"),
        ("/v2/Team/../etc/tags/list".to_string(), 400, "NAME_INVALID"),
    ] {
        let (got, _, body) = curl(&["--path-as-is", &format!("{url}{path}")]);
        let body: Value = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{path}: {}", text(&body)));
        assert_eq!((got, body["errors"][0]["code"].as_str().unwrap()), (status, code), "{path}");
    }
    // A digest another repository serves is unknown here (each view serves its own closure).
    let (status, _, _) = curl(&[&format!("{url}/v2/team/app/manifests/{}", root["digest"].as_str().unwrap())]);
    assert_eq!(status, 404);
    for method in ["PUT", "POST", "PATCH", "DELETE"] {
        let (status, headers, body) =
            curl(&["-X", method, "--data", "x", &format!("{url}/v2/served/bundle/blobs/uploads/")]);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, body["errors"][0]["code"].as_str().unwrap()), (405, "UNSUPPORTED"), "{method}");
        assert!(headers.contains("allow: get, head"), "{headers}");
    }

    // 32 concurrent clients pull every blob, each verified, in bounded time.
    let blobs: Vec<String> = blobs_of(&archive).into_iter().collect();
    let started = Instant::now();
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (url, blobs) = (url.clone(), blobs.clone());
            std::thread::spawn(move || {
                for hex in &blobs {
                    let (status, _, body) = curl(&[&format!("{url}/v2/served/bundle/blobs/sha256:{hex}")]);
                    assert_eq!((status, sha256_of(&body)), (200, format!("sha256:{hex}")));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    assert!(started.elapsed() < Duration::from_secs(90), "32 clients took {:?}", started.elapsed());

    // SV-4: one log line per request; SIGTERM stops it with exit 0.
    let log = served.log();
    assert!(log.contains("GET /v2/team/bundle/manifests/1.0 200"), "{log}");
    assert!(log.contains("PUT /v2/served/bundle/blobs/uploads/ 405"), "{log}");
    assert!(served.terminate().success(), "{}", served.log());
}

/// The largest blob of an archive: (hex, size).
fn largest_blob(archive: &Path) -> (String, u64) {
    let mut entries = tar::Archive::new(std::fs::File::open(archive).unwrap());
    entries
        .entries()
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            path.strip_prefix("blobs/sha256/").map(|hex| (hex.to_string(), entry.size()))
        })
        .max_by_key(|(_, size)| *size)
        .unwrap()
}

/// A layout archive (no registry needed), with one layer's bytes changed in place.
fn layout_archive(scratch: &Path) -> PathBuf {
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts/multiarch");
    let archive = scratch.join("multiarch.tar");
    succeed(&["export", "--oci-layout", layout.to_str().unwrap(), "-o", archive.to_str().unwrap()]);
    archive
}

fn flip_byte(archive: &Path, offset: u64) {
    let mut bytes = std::fs::read(archive).unwrap();
    bytes[offset as usize] ^= 0x20;
    std::fs::write(archive, bytes).unwrap();
}

#[test]
fn a_damaged_blob_is_never_served() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = layout_archive(scratch.path());
    let mut layers: Vec<(String, u64)> = {
        let mut entries = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        entries
            .entries()
            .unwrap()
            .filter_map(|entry| {
                let entry = entry.unwrap();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                path.strip_prefix("blobs/sha256/").map(|hex| (hex.to_string(), entry.size()))
            })
            .filter(|(_, size)| *size > 700)
            .collect()
    };
    layers.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    let (ranged, streamed) = (layers[0].0.clone(), layers[1].0.clone());
    for hex in [&ranged, &streamed] {
        let (offset, size) = blob_position(&archive, hex);
        flip_byte(&archive, offset + size / 2);
    }

    // Eager (the default): nothing is served, exit 3, the blob named.
    let output = ferry().args(["serve", archive.to_str().unwrap(), "--addr", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains(&ranged), "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "no ready line: {}", text(&output.stdout));

    // Lazy: a Range of a damaged blob is refused before any byte (500 UNKNOWN).
    let served = Served::start(&archive, &["--verify", "lazy", "--repo", "x/y"]);
    let url = served.url();
    let (status, _, body) = curl(&["-H", "Range: bytes=0-9", &format!("{url}/v2/x/y/blobs/sha256:{ranged}")]);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["errors"][0]["code"].as_str().unwrap()), (500, "UNKNOWN"));
    // A full read of the other is cut before its end: the client never gets the whole blob.
    let blob_url = format!("{url}/v2/x/y/blobs/sha256:{streamed}");
    let (status, _, body) = curl(&[&blob_url]);
    // One chunk: the connection closes before the answer (0); a larger blob would get its
    // headers and part of its body, then the cut.
    assert!(status == 0 || status == 200, "{status}");
    assert_ne!(sha256_of(&body), format!("sha256:{streamed}"));
    assert!((body.len() as u64) < layers[1].1, "the body is cut short of its Content-Length");
    // Then both are refused for good, HEAD too, and the log names them.
    for hex in [&ranged, &streamed] {
        let (status, _, _) = curl(&[&format!("{url}/v2/x/y/blobs/sha256:{hex}")]);
        assert_eq!(status, 500);
        let (status, _, _) = curl(&["-I", &format!("{url}/v2/x/y/blobs/sha256:{hex}")]);
        assert_eq!(status, 500);
        assert!(served.log().contains(&format!("blob sha256:{hex} failed verification")), "{}", served.log());
    }
    // An intact blob is still served, verified.
    let intact = blobs_of(&archive).into_iter().find(|hex| hex != &ranged && hex != &streamed).unwrap();
    let (status, _, body) = curl(&[&format!("{url}/v2/x/y/blobs/sha256:{intact}")]);
    assert_eq!((status, sha256_of(&body)), (200, format!("sha256:{intact}")));
}

/// SV-3 (review s7 H1): a blob changed on the media after its check is not served by ranges
/// either. Ranges are checked piece by piece against the hashes the whole-blob check kept: two
/// ranges once rebuilt a changed blob whole, under its original digest.
#[test]
fn a_blob_changed_after_its_check_is_not_served_by_ranges() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = layout_archive(scratch.path());
    let (hex, size) = largest_blob(&archive);
    let (offset, _) = blob_position(&archive, &hex);
    let original = std::fs::read(&archive).unwrap()[offset as usize..(offset + size) as usize].to_vec();
    for mode in ["eager", "lazy"] {
        let copy = scratch.path().join(format!("{mode}.tar"));
        std::fs::copy(&archive, &copy).unwrap();
        let served = Served::start(&copy, &["--verify", mode, "--repo", "x/y"]);
        let blob_url = format!("{}/v2/x/y/blobs/sha256:{hex}", served.url());
        let (status, _, part) = curl(&["-H", "Range: bytes=0-9", &blob_url]);
        assert_eq!((status, part.as_slice()), (206, &original[..10]), "{mode}: before the change");
        // Changed in place (the same file the server has open), after the check.
        let mut file = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset + size / 2)).unwrap();
        std::io::Write::write_all(&mut file, b"EVIL").unwrap();
        drop(file);
        let first = format!("Range: bytes=0-{}", size - 2);
        let (_, _, head) = curl(&["-H", &first, &blob_url]);
        let (_, _, tail) = curl(&["-H", "Range: bytes=-1", &blob_url]);
        let rebuilt = [head, tail].concat();
        assert!(!rebuilt.windows(4).any(|w| w == b"EVIL"), "{mode}: changed bytes were served");
        let (status, _, _) = curl(&["-H", "Range: bytes=0-9", &blob_url]);
        assert_eq!(status, 500, "{mode}: refused for good once a piece failed");
        assert!(served.log().contains("changed since the blob was verified"), "{mode}: {}", served.log());
    }
}

/// A consistent forgery: one layer of a layout replaced and every digest above it recomputed
/// (manifest, index, index.json), then exported: every digest in it holds.
fn forged_layout(scratch: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts/multiarch");
    let dir = scratch.join("forged-layout");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for entry in walkdir::WalkDir::new(&source) {
        let entry = entry.unwrap();
        let to = dir.join(entry.path().strip_prefix(&source).unwrap());
        if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &to).unwrap();
        } else {
            std::fs::create_dir_all(&to).unwrap();
        }
    }
    let read = |digest: &str| std::fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap();
    let write = |bytes: &[u8]| {
        let digest = sha256_of(bytes);
        std::fs::write(dir.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
        digest
    };
    // Points the descriptor of `old` at `new` (digest and size), wherever it is in the JSON.
    let replace = |bytes: Vec<u8>, old: (&str, usize), new: (&str, usize)| -> Vec<u8> {
        fn visit(value: &mut Value, old: &str, new: (&str, usize), found: &mut bool) {
            match value {
                Value::Object(map) => {
                    if map.get("digest").and_then(Value::as_str) == Some(old) {
                        map.insert("digest".into(), new.0.into());
                        map.insert("size".into(), new.1.into());
                        *found = true;
                    }
                    map.values_mut().for_each(|v| visit(v, old, new, found));
                }
                Value::Array(items) => items.iter_mut().for_each(|v| visit(v, old, new, found)),
                _ => {}
            }
        }
        let mut value: Value = serde_json::from_slice(&bytes).unwrap();
        let mut found = false;
        visit(&mut value, old.0, new, &mut found);
        assert!(found, "{} of {} bytes", old.0, old.1);
        serde_json::to_vec(&value).unwrap()
    };
    let index_json: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let index_digest = index_json["manifests"][0]["digest"].as_str().unwrap().to_string();
    let index_bytes = read(&index_digest);
    let index: Value = serde_json::from_slice(&index_bytes).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let manifest_bytes = read(&manifest_digest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let layer_size = manifest["layers"][0]["size"].as_u64().unwrap() as usize;
    let forged_layer = b"forged layer bytes".to_vec();
    let new_layer = write(&forged_layer);
    let new_manifest = replace(manifest_bytes.clone(), (&layer_digest, layer_size), (&new_layer, forged_layer.len()));
    let new_manifest_digest = write(&new_manifest);
    let new_index = replace(
        index_bytes.clone(),
        (&manifest_digest, manifest_bytes.len()),
        (&new_manifest_digest, new_manifest.len()),
    );
    let new_index_digest = write(&new_index);
    let new_index_json = replace(
        std::fs::read(dir.join("index.json")).unwrap(),
        (&index_digest, index_bytes.len()),
        (&new_index_digest, new_index.len()),
    );
    std::fs::write(dir.join("index.json"), new_index_json).unwrap();
    let archive = scratch.join("forged.tar");
    succeed(&["export", "--oci-layout", dir.to_str().unwrap(), "-o", archive.to_str().unwrap()]);
    archive
}

#[test]
fn a_consistent_forgery_is_refused_by_identity() {
    let scratch = tempfile::tempdir().unwrap();
    let genuine = layout_archive(scratch.path());
    let identity = inspect(&genuine)["identity"].as_str().unwrap().to_string();
    let forged = forged_layout(scratch.path());
    // Every digest in the forgery holds: verify alone passes it.
    succeed(&["verify", forged.to_str().unwrap()]);
    for mode in ["eager", "lazy"] {
        let output = ferry()
            .args([
                "serve",
                forged.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
                "--verify",
                mode,
                "--identity",
                &identity,
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(3), "{mode}: {}", text(&output.stderr));
        assert!(text(&output.stderr).contains("identity"), "{}", text(&output.stderr));
        assert!(output.stdout.is_empty());
    }
    // The genuine archive with its identity is served.
    let mut served = Served::start(&genuine, &["--identity", &identity, "--repo", "x/y"]);
    let (status, _, _) = curl(&[&format!("{}/v2/", served.url())]);
    assert_eq!(status, 200);
    assert!(served.terminate().success());
}

#[test]
fn serves_https_with_the_given_certificate() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = layout_archive(scratch.path());
    let pki = support::pki::TestPki::generate();
    let (ca, cert, key) =
        (scratch.path().join("ca.pem"), scratch.path().join("cert.pem"), scratch.path().join("key.pem"));
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&cert, &pki.server_cert_pem).unwrap();
    std::fs::write(&key, &pki.server_key_pem).unwrap();
    let served = Served::start(
        &archive,
        &["--repo", "x/y", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    assert!(served.url().starts_with("https://127.0.0.1:"), "{}", served.url());
    let (status, _, body) = curl(&["--cacert", ca.to_str().unwrap(), &format!("{}/v2/x/y/tags/list", served.url())]);
    assert_eq!(status, 200, "{}", text(&body));
    // skopeo over TLS with the CA, as a containerd mirror would.
    let certs = scratch.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let tag = serde_json::from_slice::<Value>(&body).unwrap()["tags"][0].as_str().unwrap().to_string();
    let copied = run_bounded(
        Command::new("skopeo")
            .args(["copy", "--all", "--preserve-digests", "--quiet", "--src-cert-dir"])
            .arg(&certs)
            .arg(format!("docker://{}/x/y:{tag}", served.host()))
            .arg(format!("oci:{}", scratch.path().join("out").display())),
        TOOL_TIMEOUT,
    );
    assert!(copied.status.success(), "{}", text(&copied.stderr));
    // Plain HTTP to the TLS port gets nothing served.
    let (status, _, _) = curl(&[&format!("http://{}/v2/", served.host())]);
    assert_ne!(status, 200);
    // One of --tls-cert and --tls-key alone is a usage error.
    let output =
        ferry().args(["serve", archive.to_str().unwrap(), "--tls-cert", cert.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn serves_an_archive_in_volumes_in_place() {
    let scratch = tempfile::tempdir().unwrap();
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts/multiarch");
    let archive = scratch.path().join("v.tar");
    succeed(
        &["export", "-q", "--volume-size", "4KiB", "--oci-layout", layout.to_str().unwrap(), "-o"]
            .into_iter()
            .chain([archive.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    let table = scratch.path().join("v.tar.volumes.json");
    assert!(table.is_file(), "the export wrote volumes and their table");
    let whole = layout_archive(scratch.path());
    let served = Served::start(&table, &["--repo", "x/y", "--verify", "lazy"]);
    // Every blob, some of them crossing from one volume into the next, read in place.
    for hex in blobs_of(&whole) {
        let (status, _, body) = curl(&[&format!("{}/v2/x/y/blobs/sha256:{hex}", served.url())]);
        assert_eq!((status, sha256_of(&body)), (200, format!("sha256:{hex}")));
        let (status, _, part) =
            curl(&["-H", "Range: bytes=1-", &format!("{}/v2/x/y/blobs/sha256:{hex}", served.url())]);
        assert_eq!((status, &part[..]), (206, &body[1..]));
    }
}

/// SV-4 (review s7 L3): the request log never stops the server: with stderr a pipe nobody
/// reads (its 64 KiB buffer fills after some 700 lines), 3,000 requests are all answered.
#[test]
fn a_stderr_nobody_reads_does_not_stop_the_server() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = layout_archive(scratch.path());
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("ferry"))
        .arg("serve")
        .arg(&archive)
        .args(["--addr", "127.0.0.1:0", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    let url = format!("{}/v2/", ready["url"].as_str().unwrap());
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
    let started = Instant::now();
    for request in 0..3000 {
        let answer = agent.get(&url).call();
        if let Err(err) = answer {
            let _ = child.kill();
            panic!("request {request} was not answered: {err}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(started.elapsed() < Duration::from_secs(120), "{:?}", started.elapsed());
}

/// SV-4: a request is logged when its body ends, with the bytes sent: a client that reads the
/// head of a 24 MiB blob and goes away is logged as cut short with what was sent of the whole
/// (the log said the whole length, as if the blob had gone out), a whole GET with the blob's
/// size and nothing more.
#[test]
fn the_log_says_how_much_of_a_body_was_sent() {
    let scratch = tempfile::tempdir().unwrap();
    let layout = scratch.path().join("layout");
    let mut noise = vec![0u8; 24 << 20];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for byte in &mut noise {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    support::write_image_layout(&layout, "big", &[("noise.bin", &noise)]);
    let archive = scratch.path().join("big.tar");
    succeed(&["export", "-q", "--oci-layout", layout.to_str().unwrap(), "-o", archive.to_str().unwrap()]);
    let (hex, size) = largest_blob(&archive);
    let served = Served::start(&archive, &["--repo", "x/y", "--verify", "lazy"]);
    let path = format!("/v2/x/y/blobs/sha256:{hex}");

    let (status, _, body) = curl(&[&format!("{}{path}", served.url())]);
    assert_eq!((status, body.len() as u64), (200, size));
    let mut client = std::net::TcpStream::connect(served.host()).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(client, "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", served.host()).unwrap();
    let mut head = vec![0u8; 64 << 10];
    client.read_exact(&mut head).unwrap();
    drop(client);

    let deadline = Instant::now() + Duration::from_secs(20);
    let cut = loop {
        let log = served.log();
        if let Some(line) = log.lines().find(|line| line.contains("cut short")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no line says the body was cut short: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let sent: u64 = cut.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(cut.starts_with(&format!("GET {path} 200 ")) && sent < size, "{cut}");
    assert!(cut.ends_with(&format!("cut short: {sent} of {size} bytes sent")), "{cut}");
    let whole: Vec<String> = served
        .log()
        .lines()
        .filter(|line| !line.contains("cut short") && line.contains(&path))
        .map(String::from)
        .collect();
    assert!(
        whole.len() == 1 && whole[0].starts_with(&format!("GET {path} 200 {size} ")),
        "the whole GET is logged with its size: {whole:?}"
    );
}
