//! Weekly deltas across the gap against a real registry (issue 14 items 2 to 5; spec/archive.md
//! "Deltas", spec/cli.md "inventory"): week 1 exported whole and imported; week 2, sharing some
//! layers, exported as a delta against week 1's archive and against an inventory of the target,
//! verified alone and with its base, imported; a delta into a registry without its base pushes
//! nothing and names what is missing; a chain of deltas.

mod cli;
mod forgery;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use cli::{ferry_at_home, json_of, tag_digests, text};
use support::{Registry, Variant, write_image_layout};

/// A layout of images `app:v0`..`app:v{count-1}`, each with one layer of its own; the same `n`
/// gives the same bytes every week. Returns the layout and the layer digests.
fn week(dir: &Path, name: &str, count: usize) -> (PathBuf, BTreeSet<String>) {
    let layout = dir.join(name);
    let mut layers = BTreeSet::new();
    for n in 0..count {
        let content = format!("layer of image {n}, the same every week\n").repeat(500);
        let image = write_image_layout(&layout, &format!("app:v{n}"), &[("data.txt", content.as_bytes())]);
        layers.insert(image.layer_digest);
    }
    (layout, layers)
}

fn run(home: &Path, args: &[&str], extra: &[String]) -> Output {
    ferry_at_home(home).args(args).args(extra).output().unwrap()
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "stdout:\n{}\nstderr:\n{}", text(&output.stdout), text(&output.stderr));
    output
}

fn export(home: &Path, layout: &Path, archive: &Path, bases: &[&Path]) -> Output {
    let mut command = ferry_at_home(home);
    command.args(["export", "--json", "--oci-layout"]).arg(layout).arg("-o").arg(archive);
    for base in bases {
        command.arg("--base").arg(base);
    }
    ok(command.output().unwrap())
}

fn import(home: &Path, registry: &Registry, archive: &Path, repo: &str) -> Output {
    let to = format!("{}/{repo}", registry.host());
    run(home, &["import", archive.to_str().unwrap(), "--to-repo", &to, "--json"], &registry.access_flags())
}

/// Every tag of `repo` (internal ones too) with its digest.
fn tags(home: &Path, registry: &Registry, repo: &str) -> BTreeMap<String, String> {
    let to = format!("{}/{repo}", registry.host());
    let output =
        run(home, &["tag", "list", &to, "--digests", "--imgpkg-internal-tags", "--json"], &registry.access_flags());
    if !output.status.success() {
        return BTreeMap::new();
    }
    tag_digests(&output)
}

fn relied_on(home: &Path, archive: &Path) -> BTreeSet<String> {
    let output = ok(run(home, &["inspect", "--json", archive.to_str().unwrap()], &[]));
    json_of(&output)["delta"]["reliesOn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Items 2 to 5: the weekly round trip through deltas, against an archive and an inventory.
#[test]
fn weekly_deltas_carry_only_what_the_far_side_lacks() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path();
    let (layout1, layers1) = week(home, "week1", 3);
    let (layout2, layers2) = week(home, "week2", 5);
    assert!(layers1.is_subset(&layers2));

    // Week 1: whole.
    let week1 = home.join("week1.tar");
    export(home, &layout1, &week1, &[]);
    ok(import(home, &registry, &week1, "team/app"));

    // Week 2 against week 1's archive: the shared layers are left out and recorded (DL-2).
    let full2 = home.join("week2-full.tar");
    export(home, &layout2, &full2, &[]);
    let delta2 = home.join("week2-delta.tar");
    let summary = json_of(&export(home, &layout2, &delta2, &[&week1]));
    assert_eq!(summary["delta"]["reliedOnBlobs"], 3, "{summary}");
    assert_eq!(relied_on(home, &delta2), layers1);
    let shared_bytes: u64 = summary["delta"]["reliedOnBytes"].as_u64().unwrap();
    let (delta_size, full_size) = (std::fs::metadata(&delta2).unwrap().len(), std::fs::metadata(&full2).unwrap().len());
    assert!(delta_size + shared_bytes <= full_size + 2048, "{delta_size} + {shared_bytes} vs {full_size}");

    // Week 2 against an inventory of the target: the same layers left out (DL-1).
    let inventory = home.join("target.inventory");
    let listed = ok(run(
        home,
        &["inventory", &format!("{}/team/app", registry.host()), "-o", inventory.to_str().unwrap()],
        &registry.access_flags(),
    ));
    let text_of_inventory = std::fs::read_to_string(&inventory).unwrap();
    assert!(text_of_inventory.starts_with("# ferry inventory v1\n"), "{text_of_inventory}");
    let printed = text(&listed.stdout);
    let file_digest = ferry::model::sha256_digest(text_of_inventory.as_bytes()).to_string();
    assert!(printed.starts_with(&file_digest), "the inventory's own sha256 is printed: {printed}");
    for layer in &layers1 {
        assert!(text_of_inventory.contains(&format!("{layer} ")), "{layer} missing from\n{text_of_inventory}");
    }
    // Deterministic: the same repository gives the same bytes.
    let again = home.join("again.inventory");
    ok(run(
        home,
        &["inventory", &format!("{}/team/app", registry.host()), "-o", again.to_str().unwrap()],
        &registry.access_flags(),
    ));
    assert_eq!(std::fs::read(&again).unwrap(), text_of_inventory.as_bytes());
    // `-o -` writes the same bytes to standard output (/dev/stdout is a link, refused as one).
    let piped =
        ok(run(home, &["inventory", &format!("{}/team/app", registry.host()), "-o", "-"], &registry.access_flags()));
    assert_eq!(text(&piped.stdout), text_of_inventory);
    assert!(text(&piped.stderr).contains(&file_digest), "{}", text(&piped.stderr));
    let delta_inv = home.join("week2-delta-inv.tar");
    export(home, &layout2, &delta_inv, &[&inventory]);
    assert_eq!(relied_on(home, &delta_inv), layers1);
    // An inventory wrong about a layer's size does not get it left out (review s7 L1: the
    // delta was written, and verify --base with the same inventory refused it).
    let lied_about = layers1.iter().next().unwrap().clone();
    let lying_text: String = text_of_inventory
        .lines()
        .map(|line| match line.strip_prefix(&format!("{lied_about} ")) {
            Some(rest) => format!("{lied_about} 1{}\n", &rest[rest.find(' ').unwrap()..]),
            None => format!("{line}\n"),
        })
        .collect();
    let lying = home.join("lying.inventory");
    std::fs::write(&lying, &lying_text).unwrap();
    let delta_lying = home.join("week2-delta-lying.tar");
    export(home, &layout2, &delta_lying, &[&lying]);
    let carried: BTreeSet<String> = layers1.iter().filter(|layer| **layer != lied_about).cloned().collect();
    assert_eq!(relied_on(home, &delta_lying), carried, "the layer it was wrong about is carried");
    ok(run(home, &["verify", delta_lying.to_str().unwrap(), "--base", lying.to_str().unwrap()], &[]));
    // A FIFO given as a base is refused at once, never waited on (review s7 L3).
    let fifo = home.join("fifo.inventory");
    let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let waited = run(
        home,
        &[
            "export",
            "--oci-layout",
            layout2.to_str().unwrap(),
            "-o",
            home.join("f.tar").to_str().unwrap(),
            "--base",
            fifo.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(waited.status.code(), Some(1), "{}", text(&waited.stderr));
    assert!(text(&waited.stderr).contains("an archive or an inventory file"), "{}", text(&waited.stderr));

    // verify: the delta alone is sound and lists what it relies on; with its base, complete.
    let alone = ok(run(home, &["verify", delta2.to_str().unwrap()], &[]));
    assert!(text(&alone.stdout).contains("DELTA relies on 3 blobs"), "{}", text(&alone.stdout));
    // The record is not an artifact (DL-3; review s7 L7 counted it).
    assert!(text(&alone.stdout).contains(": 5 artifacts,"), "{}", text(&alone.stdout));
    // Consistent forgeries of the record (review s7 L6): a relied-on size other than the
    // manifests', and the record's entry under an image's name; every digest holds.
    let entries = forgery::Entries::read(&std::fs::read(&delta2).unwrap());
    let mut index: serde_json::Value = serde_json::from_slice(entries.get("index.json")).unwrap();
    let record_entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["mediaType"] == "application/vnd.ferry.delta.v1+json")
        .unwrap()
        .clone();
    let record_digest: ferry::model::Digest = record_entry["digest"].as_str().unwrap().parse().unwrap();
    let mut record: serde_json::Value = serde_json::from_slice(entries.get(&record_digest.blob_path())).unwrap();
    record["reliesOn"][0]["size"] = 1.into();
    let mut resized = entries.clone();
    resized.replace_blob(record_digest, serde_json::to_vec(&record).unwrap());
    let forged = home.join("forged-size.tar");
    std::fs::write(&forged, resized.write()).unwrap();
    let refused = run(home, &["verify", forged.to_str().unwrap()], &[]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stdout));
    assert!(text(&refused.stdout).contains("relies on it as 1 bytes"), "{}", text(&refused.stdout));
    for entry in index["manifests"].as_array_mut().unwrap() {
        if entry["digest"] == record_entry["digest"] {
            entry["annotations"]["org.opencontainers.image.ref.name"] = "v2".into();
        }
    }
    let mut renamed = entries.clone();
    renamed.set("index.json", serde_json::to_vec(&index).unwrap());
    let forged = home.join("forged-name.tar");
    std::fs::write(&forged, renamed.write()).unwrap();
    let refused = run(home, &["verify", forged.to_str().unwrap()], &[]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stdout));
    assert!(text(&refused.stdout).contains("a delta record's"), "{}", text(&refused.stdout));
    ok(run(home, &["verify", delta2.to_str().unwrap(), "--base", week1.to_str().unwrap()], &[]));
    // With a base that lacks what it relies on, the pair is not complete.
    let wrong = run(home, &["verify", delta2.to_str().unwrap(), "--base", full2.to_str().unwrap()], &[]);
    assert!(wrong.status.success(), "the full week-2 archive holds everything: {}", text(&wrong.stdout));
    let base_of_other = home.join("other.inventory");
    std::fs::write(&base_of_other, "# ferry inventory v1\n# source: nothing\n").unwrap();
    let incomplete = run(home, &["verify", delta2.to_str().unwrap(), "--base", base_of_other.to_str().unwrap()], &[]);
    assert_eq!(incomplete.status.code(), Some(3), "{}", text(&incomplete.stdout));
    assert!(text(&incomplete.stdout).contains("in none of the bases given"), "{}", text(&incomplete.stdout));

    // A delta into a registry without the base pushes nothing and names the missing blobs.
    let refused = import(home, &registry, &delta2, "team/elsewhere");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    let message = text(&refused.stderr);
    for layer in &layers1 {
        assert!(message.contains(layer.as_str()), "{layer} not named in: {message}");
    }
    assert!(message.contains("week1.tar"), "the base is named: {message}");
    assert!(tags(home, &registry, "team/elsewhere").is_empty(), "nothing was pushed");
    // From a pipe, the delta's record arrives after blobs would have gone up: refused at
    // index.json, before any upload (review s7 M2: 5 blobs were left in the target).
    let piped = ferry_at_home(home)
        .args(["import", "-", "--to-repo", &format!("{}/team/piped", registry.host())])
        .args(registry.access_flags())
        .write_stdin(std::fs::read(&delta2).unwrap())
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(1), "{}", text(&piped.stderr));
    assert!(
        text(&piped.stderr).contains("is a delta") && text(&piped.stderr).contains("DL-5"),
        "{}",
        text(&piped.stderr)
    );
    let catalog = std::process::Command::new("curl")
        .arg("-sf")
        .args(registry.curl_args())
        .arg(format!("{}/v2/_catalog", registry.url()))
        .output()
        .unwrap();
    assert!(catalog.status.success(), "{}", text(&catalog.stderr));
    assert!(!text(&catalog.stdout).contains("team/piped"), "no blob went up: {}", text(&catalog.stdout));

    // Imported where week 1 is, the target holds week 2 complete: the same tags and digests as
    // a full import of week 2 gives.
    let imported = json_of(&ok(import(home, &registry, &delta2, "team/app")));
    assert_eq!(imported["blobsUploaded"], 4, "2 new layers and 2 new configs: {imported}");
    ok(import(home, &registry, &full2, "team/full"));
    assert_eq!(tags(home, &registry, "team/app"), tags(home, &registry, "team/full"));
    let _ = ok(run(home, &["verify", full2.to_str().unwrap()], &[]));

    // A chain: week 3 against the week-2 delta (a base that is itself a delta).
    let (layout3, layers3) = week(home, "week3", 6);
    let delta3 = home.join("week3-delta.tar");
    export(home, &layout3, &delta3, &[&delta2]);
    assert_eq!(relied_on(home, &delta3), layers2, "a delta base vouches for what it relies on too");
    assert_eq!(layers3.difference(&layers2).count(), 1);
    let paths = [delta3.to_str().unwrap(), "--base", delta2.to_str().unwrap(), "--base", week1.to_str().unwrap()];
    ok(run(home, &[&["verify"][..], &paths[..]].concat(), &[]));
    ok(import(home, &registry, &delta3, "team/app"));
    let week3_tags = tags(home, &registry, "team/app");
    assert!(week3_tags.len() > tags(home, &registry, "team/full").len());
}

/// A bundle's delta keeps the bundle's layer (its lock, which every reader walks; DL-2): it
/// verifies, describes and imports; without its base in the target it pushes nothing.
#[test]
fn a_bundle_delta_keeps_its_lock_and_needs_its_base() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path();
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts/bundle");
    let full = home.join("bundle.tar");
    export(home, &layout, &full, &[]);
    let delta = home.join("bundle-delta.tar");
    export(home, &layout, &delta, &[&full]);
    assert!(!relied_on(home, &delta).is_empty());
    ok(run(home, &["verify", delta.to_str().unwrap(), "--base", full.to_str().unwrap()], &[]));
    let described = ok(run(home, &["describe", "--tar", delta.to_str().unwrap()], &[]));
    assert!(text(&described.stderr).contains("is a delta"), "{}", text(&described.stderr));

    let refused = import(home, &registry, &delta, "team/bundle");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("nothing was pushed"), "{}", text(&refused.stderr));
    assert!(tags(home, &registry, "team/bundle").is_empty());

    ok(import(home, &registry, &full, "team/bundle"));
    let before = tags(home, &registry, "team/bundle");
    let again = json_of(&ok(import(home, &registry, &delta, "team/bundle")));
    assert_eq!(again["blobsUploaded"], 0, "{again}");
    assert_eq!(tags(home, &registry, "team/bundle"), before);
}
