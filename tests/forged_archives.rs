//! Consistent forgeries (issue 12 items 5, 6 and 10): archives whose every digest, size and
//! header holds, but whose content no honest writer makes. Each must be refused by every reader
//! as an integrity failure (exit 3), naming what is wrong, and never crash one:
//! - AR-R13: a descriptor declaring 2^64-1 bytes, 2^63 bytes, a negative size, or sizes that each
//!   fit the int64 but add up past 2^64;
//! - AR-R14: indexes nested past the limit of 16, up to 100,000 deep in an archive and 150,000
//!   in an OCI layout directory;
//! - AR-R15: an `index.json` listing no artifact;
//! - AR-R16: a manifest with a key Go's encoding/json reads as another field than ferry does
//!   (`"Digest"` beside `"digest"`, a lone `"Layers"`).
//! - AR-R11: a blob entry added that nothing references (review a04).
//!
//! The debug binary is run, in which an arithmetic overflow panics.

mod cli;
mod forgery;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use cli::{ferry, text};
use forgery::{Entries, first_artifact, index_chain, layout_of};
use serde_json::Value;

/// The plain-oci fixture (one image, two layers) exported by the binary.
fn exported_image(dir: &Path) -> Entries {
    let archive = dir.join("valid.tar");
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts/plain-oci");
    let exported =
        ferry().args(["export", "-q", "--oci-layout"]).arg(&layout).arg("-o").arg(&archive).output().unwrap();
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let entries = Entries::read(&std::fs::read(&archive).unwrap());
    assert_eq!(entries.write(), std::fs::read(&archive).unwrap(), "the forgery tool writes what ferry writes");
    entries
}

fn write(dir: &Path, name: &str, entries: &Entries) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, entries.write()).unwrap();
    path
}

/// What a run said, for messages.
fn said(output: &Output) -> String {
    format!("exit {:?}\nstdout: {}\nstderr: {}", output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// Asserts exit 3, no panic, and that the output names `expected`.
fn refused(output: &Output, expected: &[&str]) {
    let all = said(output);
    assert_eq!(output.status.code(), Some(3), "{all}");
    assert!(!all.contains("panicked") && !all.contains("overflow"), "{all}");
    for needle in expected {
        assert!(all.contains(needle), "{needle:?} in {all}");
    }
}

/// Every offline reader of `archive` (verify, inspect, inspect --json, import before any
/// registry is contacted) refuses it with exit 3, naming each of `expected`.
fn every_reader_refuses(archive: &Path, expected: &[&str]) {
    refused(&ferry().arg("verify").arg(archive).output().unwrap(), expected);
    let verify_json = ferry().arg("verify").arg(archive).arg("--json").output().unwrap();
    refused(&verify_json, expected);
    refused(&ferry().arg("inspect").arg(archive).output().unwrap(), expected);
    let inspect_json = ferry().arg("inspect").arg(archive).arg("--json").output().unwrap();
    refused(&inspect_json, expected);
    assert!(inspect_json.stdout.is_empty(), "no listing of a refused archive: {}", text(&inspect_json.stdout));
    // Nothing listens on 127.0.0.1:9: the refusal comes from the check before any push.
    let import = ferry().arg("import").arg(archive).args(["--to-repo", "127.0.0.1:9/forged/app"]).output().unwrap();
    refused(&import, expected);
    assert!(text(&import.stderr).contains("nothing was pushed"), "{}", said(&import));
}

/// Rewrites the first artifact's manifest so that its layers declare `sizes`, re-hashed.
fn forge_layer_sizes(entries: &mut Entries, sizes: &[Value]) -> String {
    let manifest = first_artifact(entries);
    let mut json: Value = serde_json::from_slice(entries.get(&manifest.blob_path())).unwrap();
    let first = json["layers"][0].clone();
    let layers: Vec<Value> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let mut layer = json["layers"].get(i).cloned().unwrap_or_else(|| {
                let mut extra = first.clone();
                extra["digest"] = format!("sha256:{:064x}", i).into();
                extra
            });
            layer["size"] = size.clone();
            layer
        })
        .collect();
    json["layers"] = layers.into();
    // serde_json writes u64::MAX and big numbers exactly; a negative one as such.
    let forged = serde_json::to_vec(&json).unwrap();
    entries.replace_blob(manifest, forged).to_string()
}

/// AR-R13: a layer declaring 2^64-1 bytes, 2^63 bytes or a negative size, in an archive whose
/// digests all hold, is refused by verify, inspect and import naming the layer; never a panic
/// (the debug binary), never a wrapped size printed.
#[test]
fn forged_layer_sizes_past_the_int64_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let valid = exported_image(scratch.path());
    for (size, expected) in [
        (Value::from(u64::MAX), "declares 18446744073709551615 bytes"),
        (Value::from(i64::MAX as u64 + 1), "declares 9223372036854775808 bytes"),
        (Value::from(-1), "declares -1 bytes, a negative size"),
    ] {
        let mut entries = valid.clone();
        let layer = serde_json::from_slice::<Value>(entries.get(&first_artifact(&entries).blob_path())).unwrap()
            ["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        forge_layer_sizes(&mut entries, &[size.clone(), Value::from(1820)]);
        let archive = write(scratch.path(), "forged.tar", &entries);
        every_reader_refuses(&archive, &[expected, &layer, "AR-R13"]);
    }
}

/// AR-R13: two layers of 2^63-2 bytes each fit the int64, but with the config and manifest they
/// add up past 2^64: an error naming a descriptor, never a wrapped total ("677 B").
#[test]
fn forged_sizes_that_add_up_past_2_64_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let mut entries = exported_image(scratch.path());
    let each = i64::MAX as u64 - 1;
    forge_layer_sizes(&mut entries, &[Value::from(each), Value::from(each)]);
    let archive = write(scratch.path(), "forged.tar", &entries);
    every_reader_refuses(&archive, &["add up past 9223372036854775807 bytes at sha256:", "AR-R13"]);
    let inspect = ferry().arg("inspect").arg(&archive).output().unwrap();
    assert!(!text(&inspect.stdout).contains(" B"), "no size printed: {}", said(&inspect));
}

/// AR-R15: an archive whose `index.json` is a valid, canonical, empty index is refused by every
/// reader (not "OK: 0 artifacts"), pull --tar and describe --tar included.
#[test]
fn an_empty_index_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let mut entries = exported_image(scratch.path());
    let mut index: Value = serde_json::from_slice(entries.get("index.json")).unwrap();
    index["manifests"] = Value::Array(Vec::new());
    entries.set("index.json", serde_json::to_vec(&index).unwrap());
    let archive = write(scratch.path(), "empty.tar", &entries);
    every_reader_refuses(&archive, &["lists no artifact", "AR-R15"]);
    let pull = ferry()
        .args(["pull", "--tar"])
        .arg(&archive)
        .args(["-i", "plain:1.0", "-o"])
        .arg(scratch.path().join("pulled"))
        .output()
        .unwrap();
    refused(&pull, &["AR-R15"]);
    refused(&ferry().args(["describe", "--tar"]).arg(&archive).output().unwrap(), &["AR-R15"]);
    let streamed = ferry().args(["verify", "-"]).write_stdin(std::fs::read(&archive).unwrap()).output().unwrap();
    refused(&streamed, &["AR-R15"]);
}

/// AR-R16: a consistent forgery (every digest and size holds) whose manifest gives its first
/// layer a `"Digest"` beside its `"digest"`: ferry read the `digest`, while the registry, skopeo
/// and containerd read the last key matching without regard to case, the other layer, after an
/// import pushed the same bytes. Every reader refuses it (exit 3), naming the manifest and the
/// key, a stream and describe included; so a lone `"Layers"` (no layer to ferry, two to Go).
#[test]
fn keys_differing_only_in_case_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let valid = exported_image(scratch.path());
    let manifest = first_artifact(&valid);
    let text = String::from_utf8(valid.get(&manifest.blob_path()).to_vec()).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let [first, other] = [0, 1].map(|i| json["layers"][i]["digest"].as_str().unwrap().to_string());
    let named = format!(r#""digest":"{first}""#);
    assert_eq!(text.matches(&named).count(), 1, "{text}");
    for (from, to, expected) in [
        (named.clone(), format!(r#"{named},"Digest":"{other}""#), r#"in layers[0], the key "Digest""#),
        (r#""layers":"#.to_string(), r#""Layers":"#.to_string(), r#"the key "Layers""#),
    ] {
        let mut entries = valid.clone();
        let forged = entries.replace_blob(manifest, text.replacen(&from, &to, 1).into_bytes());
        let archive = write(scratch.path(), "case.tar", &entries);
        let needles = [format!("manifest {forged}"), "differs only in case".to_string(), "AR-R16".to_string()];
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        every_reader_refuses(&archive, &needles);
        let verified = ferry().arg("verify").arg(&archive).output().unwrap();
        assert!(said(&verified).contains(expected), "{}", said(&verified));
        let streamed = ferry().args(["verify", "-"]).write_stdin(std::fs::read(&archive).unwrap()).output().unwrap();
        refused(&streamed, &needles);
        refused(&ferry().args(["describe", "--tar"]).arg(&archive).output().unwrap(), &needles);
    }
}

/// AR-R14: indexes nested 16 deep verify; 17 deep are refused by every reader, naming the depth
/// and the digest.
#[test]
fn nesting_just_past_the_limit_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    // 15 indexes over an image: 16 manifests, the deepest at depth 16.
    let (blobs, top) = index_chain(15);
    let fits = write(scratch.path(), "fits.tar", &layout_of(blobs, top));
    let verified = ferry().arg("verify").arg(&fits).output().unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", said(&verified));

    let (blobs, top) = index_chain(16);
    // The blobs from the top down: 16 indexes, the image at depth 17, its config.
    let deepest = blobs[16].0.to_string();
    let deep = write(scratch.path(), "deep.tar", &layout_of(blobs, top));
    every_reader_refuses(&deep, &[&format!("manifest {deepest} is nested 17 deep"), "AR-R14"]);
}

/// AR-R14: a chain of 100,000 nested indexes in an archive is refused (it overflowed import's
/// stack while verify said OK), and so is a chain of 150,000 in an OCI layout directory by
/// `export --oci-layout` (it overflowed the export's stack); nothing crashes.
#[test]
fn very_deep_chains_are_refused_without_a_crash() {
    let started = Instant::now();
    // 150,000 files: on a busy disk creating and removing them takes minutes, in memory seconds
    // (about 600 MiB of tmpfs pages, for the test's length).
    let shm = Path::new("/dev/shm");
    let scratch = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    let (blobs, top) = index_chain(100_000);
    let archive = write(scratch.path(), "deep.tar", &layout_of(blobs, top));
    refused(&ferry().arg("verify").arg(&archive).arg("-q").output().unwrap(), &["nested 17 deep", "AR-R14"]);
    refused(&ferry().arg("inspect").arg(&archive).output().unwrap(), &["nested 17 deep", "AR-R14"]);
    let import = ferry().arg("import").arg(&archive).args(["--to-repo", "127.0.0.1:9/deep/chain"]).output().unwrap();
    refused(&import, &["nested 17 deep", "AR-R14", "nothing was pushed"]);

    let (blobs, top) = index_chain(150_000);
    let layout = scratch.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    for (name, data) in layout_of(blobs, top).0 {
        if let Some(data) = data {
            std::fs::write(layout.join(name), data).unwrap();
        }
    }
    let output = scratch.path().join("out.tar");
    let export = ferry().args(["export", "-q", "--oci-layout"]).arg(&layout).arg("-o").arg(&output).output().unwrap();
    refused(&export, &["nested 17 deep", "AR-R14"]);
    assert!(!output.exists(), "no archive written");
    // A guard against a walk gone quadratic or a hang, not a performance claim (those live in
    // `make bench`): generous, since CI machines are shared.
    assert!(started.elapsed().as_secs() < 300, "took {:?}", started.elapsed());
}

/// A ferry root whose original reference names a tag but that has no `dev.ferry.root-tag`
/// (a consistent forgery: `index.json` rewritten) gets no tag: an import gives a root only the
/// tag that annotation records (spec/archive.md; `REPO:TAG@DIGEST` is a digest reference, as
/// imgpkg reads it), and inspect shows the tag from the same place, so a reviewer reads what the
/// import will do (a security review once found inspect showing no tag while import tagged
/// `prod`). With the annotation, both show it.
#[test]
fn inspect_shows_the_tag_import_gives_a_root() {
    let scratch = tempfile::tempdir().unwrap();
    let mut entries = exported_image(scratch.path());
    let mut index: Value = serde_json::from_slice(entries.get("index.json")).unwrap();
    let root = &mut index["manifests"][0];
    let digest = root["digest"].as_str().unwrap().to_string();
    let annotations = root["annotations"].as_object_mut().unwrap();
    annotations.remove("dev.ferry.root-tag");
    annotations.insert("dev.ferry.root".into(), "true".into());
    annotations.insert("dev.ferry.original-ref".into(), format!("registry.example.com/team/app:prod@{digest}").into());
    entries.set("index.json", serde_json::to_vec(&index).unwrap());
    let archive = write(scratch.path(), "hidden-tag.tar", &entries);

    let root_tags = |archive: &Path| {
        let shown = ferry().arg("inspect").arg(archive).arg("--json").output().unwrap();
        assert!(shown.status.success(), "{}", said(&shown));
        let report: Value = serde_json::from_slice(&shown.stdout).unwrap();
        let human = ferry().arg("inspect").arg(archive).output().unwrap();
        let shown_tag = text(&human.stdout).lines().any(|line| line.trim() == "tag prod");
        let tags: Vec<Value> = report["artifacts"].as_array().unwrap().iter().map(|a| a["rootTag"].clone()).collect();
        (tags, shown_tag)
    };
    let (tags, shown) = root_tags(&archive);
    assert!(!tags.contains(&Value::from("prod")) && !shown, "no tag, as the import gives none: {tags:?}");

    // The same archive with one more annotation on the root, written as `name`.
    let mut annotated = |key: &str, value: &str, name: &str| {
        let mut index: Value = serde_json::from_slice(entries.get("index.json")).unwrap();
        index["manifests"][0]["annotations"].as_object_mut().unwrap().insert(key.into(), value.into());
        entries.set("index.json", serde_json::to_vec(&index).unwrap());
        write(scratch.path(), name, &entries)
    };
    let tagged = annotated("dev.ferry.root-tag", "prod", "tagged.tar");
    let (tags, shown) = root_tags(&tagged);
    assert!(tags.contains(&Value::from("prod")) && shown, "the recorded tag is shown: {tags:?}");

    // An ImagesLock entry gets no tag whatever its annotation says (review s8: archives of
    // earlier versions gave `REPO:TAG@DIGEST` entries theirs), in inspect as in import.
    let entry = annotated("dev.ferry.lock-position", "0", "entry.tar");
    let (tags, shown) = root_tags(&entry);
    assert!(!tags.contains(&Value::from("prod")) && !shown, "a lock entry gets no tag: {tags:?}");
}

/// The exported image beside a second manifest of the same config and layers, both listed in
/// `index.json` as roots, each with the root tag `tags` gives it (and an original-ref carrying
/// that tag). Every digest holds and `index.json` is canonical. Returns the entries and the
/// second manifest's digest.
fn two_roots(dir: &Path, tags: impl Fn(&ferry::model::Digest) -> [Option<String>; 2]) -> Entries {
    let mut entries = exported_image(dir);
    let first = first_artifact(&entries);
    let mut manifest: Value = serde_json::from_slice(entries.get(&first.blob_path())).unwrap();
    manifest["annotations"] = serde_json::json!({"forged": "a second root"});
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let second = ferry::model::sha256_digest(&bytes);
    let at = entries.0.iter().position(|(name, _)| *name == first.blob_path()).unwrap();
    entries.0.insert(if second > first { at + 1 } else { at }, (second.blob_path(), Some(bytes.clone())));
    let mut index: Value = serde_json::from_slice(entries.get("index.json")).unwrap();
    let mut listed = index["manifests"][0].clone();
    let mut roots = Vec::new();
    for (digest, tag) in [first, second].into_iter().zip(tags(&second)) {
        listed["digest"] = digest.to_string().into();
        if digest == second {
            listed["size"] = bytes.len().into();
        }
        let notes = listed["annotations"].as_object_mut().unwrap();
        notes.remove("dev.ferry.root-tag");
        notes.remove("dev.ferry.original-ref");
        if let Some(tag) = tag {
            notes.insert("dev.ferry.original-ref".into(), format!("registry.example.com/team/app:{tag}").into());
            notes.insert("dev.ferry.root-tag".into(), tag.into());
        }
        roots.push(listed.clone());
    }
    roots.sort_by_key(|root| root["digest"].as_str().unwrap().to_string());
    index["manifests"] = roots.into();
    entries.set("index.json", serde_json::to_vec(&index).unwrap());
    entries
}

/// AR-R17: an archive whose import would point one tag at two manifests is refused by verify
/// and import, naming the tag: two roots with one root tag (import gave it to whichever came
/// last, silently), and a root tag that is another root's `sha256-<hex>.imgpkg` tag.
#[test]
fn a_tag_the_import_would_give_two_manifests_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let one_tag = two_roots(scratch.path(), |_| [Some("prod".into()), Some("prod".into())]);
    let taking = two_roots(scratch.path(), |second| [Some(format!("{}.imgpkg", second.tag_form())), None]);
    for (name, entries, tag) in
        [("one-tag.tar", one_tag, "prod".to_string()), ("digest-tag.tar", taking.clone(), "imgpkg".to_string())]
    {
        let archive = write(scratch.path(), name, &entries);
        let expected = ["tag ", tag.as_str(), "would name both", "AR-R17"];
        refused(&ferry().arg("verify").arg(&archive).output().unwrap(), &expected);
        refused(&ferry().args(["verify", "-"]).write_stdin(entries.write()).output().unwrap(), &expected);
        let import =
            ferry().arg("import").arg(&archive).args(["--to-repo", "127.0.0.1:9/forged/app"]).output().unwrap();
        refused(&import, &expected);
        assert!(text(&import.stderr).contains("nothing was pushed"), "{}", said(&import));
    }
    // Two roots with tags of their own are fine.
    let two_tags = two_roots(scratch.path(), |_| [Some("prod".into()), Some("next".into())]);
    let archive = write(scratch.path(), "two-tags.tar", &two_tags);
    let verified = ferry().arg("verify").arg(&archive).output().unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", said(&verified));
}

/// AR-R7: an `index.json` of more than 2^20 tiny annotations (which parsed would cost a reader
/// ~45x its bytes: 58 MB took 3 GB) is refused before it is parsed, naming the rule once.
#[test]
fn an_index_of_too_many_annotations_is_refused_before_it_is_parsed() {
    let scratch = tempfile::tempdir().unwrap();
    let mut entries = exported_image(scratch.path());
    let mut index: Value = serde_json::from_slice(entries.get("index.json")).unwrap();
    let notes = index["manifests"][0]["annotations"].as_object_mut().unwrap();
    notes.extend((0..ferry::model::json_keys::MAX_ANNOTATIONS).map(|i| (format!("{i:x}"), Value::from(""))));
    entries.set("index.json", serde_json::to_vec(&index).unwrap());
    let archive = write(scratch.path(), "annotated.tar", &entries);
    for command in ["verify", "inspect"] {
        let output = ferry().arg(command).arg(&archive).output().unwrap();
        refused(&output, &["index.json: in manifests[0].annotations", "more than 1048576 annotations", "(AR-R7)"]);
        assert!(!said(&output).contains("index.json: index.json"), "{}", said(&output));
    }
}

/// AR-R11 (review a04): a blob entry added to a ferry archive, named by its own digest, with
/// ferry's header and padding and `index.json` untouched (so the identity is unchanged), is
/// referenced by nothing: verify (of the file and of a pipe) and import refuse it, naming it.
/// In another tool's layout the same blob stays a warning.
#[test]
fn an_added_blob_nothing_references_is_refused_in_a_ferry_archive() {
    let scratch = tempfile::tempdir().unwrap();
    let valid = exported_image(scratch.path());
    let extra = b"a blob nothing references".to_vec();
    let digest = ferry::model::sha256_digest(&extra);
    let mut entries = valid.clone();
    entries.0.push((digest.blob_path(), Some(extra.clone())));
    let archive = write(scratch.path(), "added.tar", &entries);
    let named = digest.to_string();
    let expected = [named.as_str(), "not referenced by any artifact", "AR-R11"];
    refused(&ferry().arg("verify").arg(&archive).output().unwrap(), &expected);
    refused(&ferry().arg("verify").arg(&archive).arg("--json").output().unwrap(), &expected);
    let piped = ferry().args(["verify", "-"]).write_stdin(entries.write()).output().unwrap();
    refused(&piped, &expected);
    // The identity is the export's: only this rule tells the forgery.
    let valid_identity = ferry::model::sha256_digest(valid.get("index.json")).to_string();
    assert!(text(&piped.stdout).contains(&valid_identity), "{}", said(&piped));
    // Nothing listens on 127.0.0.1:9: the refusal comes from the check before any push.
    let import = ferry().arg("import").arg(&archive).args(["--to-repo", "127.0.0.1:9/forged/app"]).output().unwrap();
    refused(&import, &expected);
    assert!(text(&import.stderr).contains("nothing was pushed"), "{}", said(&import));

    // Another tool's layout (no dev.ferry annotations): a warning, not a failure.
    let (blobs, top) = index_chain(1);
    let mut foreign = layout_of(blobs, top);
    foreign.0.push((digest.blob_path(), Some(extra)));
    let foreign = write(scratch.path(), "foreign.tar", &foreign);
    let verified = ferry().arg("verify").arg(&foreign).output().unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", said(&verified));
    // inspect says it too (it said nothing of such a blob): a warning in another tool's
    // layout, a failure in ferry's own archive, as verify has it.
    for (archive, code) in [(&foreign, 0), (&archive, 3)] {
        let inspected = ferry().arg("inspect").arg(archive).output().unwrap();
        let expected = format!("blob {digest} is not referenced by any artifact");
        assert!(said(&inspected).contains(&expected), "{}", said(&inspected));
        assert_eq!(inspected.status.code(), Some(code), "{}", said(&inspected));
    }
    assert!(
        said(&verified).contains(&format!("blob {digest} is not referenced by any artifact")),
        "{}",
        said(&verified)
    );
}

/// AR-RF2 (security review a12): an entry that says it is a referrer of a manifest the archive
/// does not hold, with that manifest's cosign tag, would on import move the `.sig` tag of an
/// image the archive does not carry. Verify and import refuse it (exit 3), naming the subject.
#[test]
fn a_referrer_of_a_manifest_the_archive_does_not_hold_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let mut entries = exported_image(scratch.path());
    let mut index: Value = serde_json::from_slice(entries.get("index.json")).unwrap();
    let elsewhere = format!("sha256:{}", "9".repeat(64));
    let tag = format!("sha256-{}.sig", "9".repeat(64));
    let mut referrer = index["manifests"][0].clone();
    let digest = referrer["digest"].as_str().unwrap().to_string();
    referrer["annotations"] = serde_json::json!({
        "dev.ferry.referrer-of": elsewhere,
        "dev.ferry.referrer-tag": tag,
        "dev.ferry.original-ref": format!("registry.example.com/team/app:{tag}@{digest}"),
        "org.opencontainers.image.ref.name": format!("registry.example.com/team/app:{tag}"),
    });
    index["manifests"].as_array_mut().unwrap().push(referrer);
    entries.set("index.json", serde_json::to_vec(&index).unwrap());
    let archive = write(scratch.path(), "stray-referrer.tar", &entries);

    refused(&ferry().arg("verify").arg(&archive).output().unwrap(), &[&elsewhere, "does not hold"]);
}
