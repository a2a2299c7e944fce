//! Issue 12, items 7, 8 and 9: what `ferry export` writes, and what `inspect` and `describe`
//! print, stay inside their box.
//!
//! - Item 7 (spec/archive.md AR-W2c, AR-W2d): a registry whose HEAD lies about a manifest's
//!   `Content-Type` and `Content-Length` (the fault server, tests/fault) does not get the lie
//!   into `index.json`; the archive verifies. (The lock-size limit, AR-R7 and AR-W2b, is held by
//!   the unit tests `issue12_*` in src/ops/export.rs.)
//! - Item 8 (spec/cli.md "Output"): a lock annotation carrying terminal escapes and a bidi
//!   override is printed escaped by `inspect` and `describe`, exact in their JSON; an error
//!   quoting a lock's text escapes it on stderr.
//! - Item 9 (AR-W2a): an `ARCHIVE.partial` (or volume partial) that is a symbolic link is never
//!   written through, with or without `--resume`; a FIFO is refused without hanging.

mod cli;
mod fault;
mod support;

use std::path::Path;

use cli::{ferry, json_of, text};
use fault::{Fault, FaultServer, OCI_MANIFEST, Rule};
use ferry::model::sha256_digest;
use ferry::store::layout_tar::LayoutTarSource;
use serde_json::{Value, json};
use support::layout::{gzip, tar_of};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Writes `bytes` as a blob of the layout at `dir`; returns its descriptor.
fn blob(dir: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let digest = sha256_digest(bytes);
    std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()})
}

/// `value` as JSON with every character outside printable ASCII written as a `\u` escape.
fn ascii_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// An OCI layout at `dir` holding one image and one bundle (named `bundle` in `index.json`)
/// whose lock lists the image once, with `annotations`.
fn bundle_layout(dir: &Path, annotations: &Value) {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let image = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": blob(dir, "application/vnd.oci.image.config.v1+json", config),
        "layers": [blob(dir, "application/vnd.oci.image.layer.v1.tar", b"layer bytes")],
    }))
    .unwrap();
    let image = blob(dir, OCI_MANIFEST, &image);
    // JSON is YAML: the lock's strings carry their controls as \u escapes (YAML refuses a raw
    // C1 control, not an escaped one).
    let lock = ascii_json(&json!({
        "apiVersion": "imgpkg.carvel.dev/v1alpha1",
        "kind": "ImagesLock",
        "images": [{
            "image": format!("registry.example.com/team/app@{}", image["digest"].as_str().unwrap()),
            "annotations": annotations,
        }],
    }))
    .into_bytes();
    let tar = tar_of(&[(".imgpkg/images.yml", lock.as_slice())]);
    let layer = gzip(&tar);
    let config = serde_json::to_vec(&json!({
        "architecture": "", "os": "", "config": {"Labels": {"dev.carvel.imgpkg.bundle": "true"}},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&tar).to_string()]},
    }))
    .unwrap();
    let bundle = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": blob(dir, "application/vnd.docker.container.image.v1+json", &config),
        "layers": [blob(dir, "application/vnd.docker.image.rootfs.diff.tar.gzip", &layer)],
    }))
    .unwrap();
    let mut bundle = blob(dir, DOCKER_MANIFEST, &bundle);
    bundle["annotations"] = json!({"org.opencontainers.image.ref.name": "bundle"});
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [bundle]})).unwrap(),
    )
    .unwrap();
}

/// The raw bytes a terminal acts on: ESC, BEL, the one-byte CSI (U+009B) and the bidi controls.
fn has_terminal_controls(text: &str) -> bool {
    text.chars().any(|c| matches!(c, '\x1b' | '\x07' | '\u{9b}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

/// Item 8: a hostile lock annotation is escaped in human output, exact in JSON.
#[test]
fn issue12_hostile_lock_annotations_are_escaped_for_the_terminal() {
    let scratch = tempfile::tempdir().unwrap();
    let layout = scratch.path().join("layout");
    let hostile = "\x1b]0;pwned\x07 then \x1b[2J and \u{9b}31m and \u{202e}gnp.exe";
    bundle_layout(&layout, &json!({"title": hostile, "\x1b[2Jkey": "v\nforged line"}));
    let archive = scratch.path().join("bundle.tar");
    let export = ferry().args(["export", "--oci-layout"]).arg(&layout).arg("-o").arg(&archive).output().unwrap();
    assert!(export.status.success(), "{}", text(&export.stderr));

    for command in [&["inspect"][..], &["describe", "--tar"][..]] {
        let human = ferry().args(command).arg(&archive).output().unwrap();
        let (stdout, stderr) = (text(&human.stdout), text(&human.stderr));
        assert!(human.status.success(), "{command:?}: {stderr}");
        assert!(!has_terminal_controls(&stdout) && !has_terminal_controls(&stderr), "{command:?}: {stdout:?}");
        assert!(stdout.contains(r"\x1b]0;pwned\x07 then \x1b[2J and \u{9b}31m and \u{202e}gnp.exe"), "{stdout}");
        assert!(stdout.contains(r"\x1b[2Jkey: v\x0aforged line"), "a value cannot forge a line: {stdout}");

        let machine = ferry().args(command).arg(&archive).arg("--json").output().unwrap();
        assert!(machine.status.success(), "{command:?} --json: {}", text(&machine.stderr));
        let raw = text(&machine.stdout);
        assert!(!raw.contains('\x1b') && !raw.contains('\x07'), "JSON escapes C0 itself: {raw:?}");
        let found = json_of(&machine).to_string();
        assert!(
            found.contains(&serde_json::to_string(hostile).unwrap()),
            "{command:?} --json keeps the exact value: {found}"
        );
    }
}

/// Item 8, errors: a registry's own error message, quoted in an error on stderr, is escaped.
#[test]
fn issue12_errors_quoting_a_registry_are_escaped() {
    let server = FaultServer::start();
    let hostile = "\x1b]0;pwned\x07 \x1b[2J \u{9b}31m \u{202e}gnp.exe";
    server.add(Rule::new(Some("GET"), "/tags/list", Fault::StatusWithMessage(403, hostile.into())).times(10));
    let output = ferry()
        .args(["tag", "list", &format!("{}/team/none", server.host())])
        .args(["--registry-insecure", "--registry-retry-count", "0"])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(r"\x1b]0;pwned\x07 \x1b[2J \u{9b}31m \u{202e}gnp.exe"), "quoted, escaped: {stderr}");
    assert!(!has_terminal_controls(&stderr), "{stderr:?}");
}

/// Item 9: a symbolic link under the partial name is never written through: the export fails
/// naming it, with and without --resume and for a volume's partial, and the victim is unchanged.
#[test]
fn issue12_a_symlinked_partial_is_never_written_through() {
    let scratch = tempfile::tempdir().unwrap();
    let layout = scratch.path().join("layout");
    bundle_layout(&layout, &json!({}));
    let victim = scratch.path().join("victim");
    let cases: [(&str, &[&str]); 3] = [
        ("out.tar.partial", &[]),
        ("out.tar.partial", &["--resume"]),
        ("out.tar.001.partial", &["--volume-size", "1KiB"]),
    ];
    for (partial, flags) in cases {
        std::fs::write(&victim, b"the victim's own content").unwrap();
        let link = scratch.path().join(partial);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let archive = scratch.path().join("out.tar");
        let output =
            ferry().args(["export", "--oci-layout"]).arg(&layout).arg("-o").arg(&archive).args(flags).output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{partial} {flags:?}: {stderr}");
        assert!(stderr.contains(partial) && stderr.contains("symbolic link"), "{stderr}");
        assert!(!stderr.contains("--resume to fetch only the rest"), "no resume hint for a refused file: {stderr}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"the victim's own content", "{partial} {flags:?}");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is left as it was");
        assert!(!archive.exists() && !scratch.path().join("out.tar.001").exists(), "nothing is published");
        std::fs::remove_file(&link).unwrap();
    }
    let dangling = scratch.path().join("out.tar.partial");
    std::os::unix::fs::symlink(scratch.path().join("not-yet"), &dangling).unwrap();
    let output = ferry()
        .args(["export", "--oci-layout"])
        .arg(&layout)
        .arg("-o")
        .arg(scratch.path().join("out.tar"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(!scratch.path().join("not-yet").exists(), "a dangling link is not followed to create its target");
}

/// Item 9: a FIFO under the partial name is refused at once (opening it must not wait for a
/// reader), with and without --resume.
#[test]
fn issue12_a_fifo_partial_is_refused_without_hanging() {
    let scratch = tempfile::tempdir().unwrap();
    let layout = scratch.path().join("layout");
    bundle_layout(&layout, &json!({}));
    let fifo = scratch.path().join("out.tar.partial");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0, "mkfifo {}", fifo.display());
    for flags in [&[][..], &["--resume"][..]] {
        let started = std::time::Instant::now();
        let output = ferry()
            .timeout(std::time::Duration::from_secs(30))
            .args(["export", "--oci-layout"])
            .arg(&layout)
            .arg("-o")
            .arg(scratch.path().join("out.tar"))
            .args(flags)
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains("out.tar.partial is a FIFO, not a regular file"), "{stderr}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{flags:?} took {:?}", started.elapsed());
    }
}

/// AR-W2a (security review): the archive's own name holding a FIFO or a symbolic link is
/// refused before anything is read, naming it and its type; the FIFO is still a FIFO and the
/// link still a link to the untouched victim (a rename onto the name would have replaced them,
/// and run as root `-o /dev/null` would have replaced the system's `/dev/null`). A volume's name
/// holding a link is refused too, before the rename.
#[test]
fn an_archive_name_holding_a_fifo_or_a_link_is_refused() {
    use std::os::unix::fs::FileTypeExt;
    let scratch = tempfile::tempdir().unwrap();
    let layout = scratch.path().join("layout");
    bundle_layout(&layout, &json!({}));
    let fifo = scratch.path().join("fifo.tar");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0, "mkfifo {}", fifo.display());
    let victim = scratch.path().join("victim");
    std::fs::write(&victim, "mine").unwrap();
    let link = scratch.path().join("link.tar");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    std::os::unix::fs::symlink(&victim, scratch.path().join("split.tar.001")).unwrap();
    let export = |output: &Path, extra: &[&str]| {
        ferry()
            .timeout(std::time::Duration::from_secs(30))
            .args(["export", "--oci-layout"])
            .arg(&layout)
            .arg("-o")
            .arg(output)
            .args(extra)
            .output()
            .unwrap()
    };
    for (output, kind) in [(&fifo, "a FIFO"), (&link, "a symbolic link")] {
        let done = export(output, &[]);
        let stderr = text(&done.stderr);
        assert_eq!(done.status.code(), Some(1), "{kind}: {stderr}");
        assert!(stderr.contains(&format!("{} is {kind}, not a regular file", output.display())), "{stderr}");
    }
    let split = export(&scratch.path().join("split.tar"), &["--volume-size", "1KiB"]);
    let stderr = text(&split.stderr);
    assert_ne!(split.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("split.tar.001 is a symbolic link"), "{stderr}");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO is still there");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still there");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
}

/// Item 7: a registry whose HEAD states another Content-Type and Content-Length for a manifest
/// (its GET is honest) does not get them into `index.json`: the descriptors carry the manifest's
/// own media type and length, for `-i` and for the entries of an ImagesLock, and the archive
/// verifies.
#[test]
fn issue12_a_lying_head_does_not_reach_the_archive() {
    let server = FaultServer::start();
    let image = server.seed_image("team/app", "v1", vec![b"layer one".to_vec()]);
    let lie = Fault::Misdescribe { content_type: DOCKER_MANIFEST.into(), content_length: image.manifest.len() + 1000 };
    server.add(Rule::new(Some("HEAD"), "/manifests/", lie).times(1000));
    let scratch = tempfile::tempdir().unwrap();
    let lock = scratch.path().join("images.yml");
    let pinned = format!("{}/team/app@{}", server.host(), image.manifest_digest);
    let body = json!({"apiVersion": "imgpkg.carvel.dev/v1alpha1", "kind": "ImagesLock", "images": [{"image": pinned}]});
    std::fs::write(&lock, serde_json::to_vec(&body).unwrap()).unwrap();

    for (name, what) in
        [("by-tag.tar", ["-i", image.reference.as_str()]), ("lock.tar", ["--lock", lock.to_str().unwrap()])]
    {
        let archive = scratch.path().join(name);
        let output = ferry()
            .args(["export"])
            .args(what)
            .arg("-o")
            .arg(&archive)
            .args(["--registry-insecure", "--registry-retry-count", "0"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{name}: {}", text(&output.stderr));
        let written = LayoutTarSource::open(&archive).unwrap();
        let entry = &written.index().manifests[0];
        assert_eq!(entry.media_type, OCI_MANIFEST, "{name}: the manifest's own media type");
        assert_eq!(entry.size, image.manifest.len() as u64, "{name}: the length of the bytes hashed");
        let verify = ferry().arg("verify").arg(&archive).output().unwrap();
        assert!(verify.status.success(), "{name}: {}", text(&verify.stdout));
    }
    assert!(server.count(Some("HEAD"), "/manifests/") >= 2, "the lie was served");
}
