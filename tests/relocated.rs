//! Inside the air gap (issue 13, spec/imgpkg.md "Where a bundle is read from"): a bundle
//! relocated into a registry, by ferry or by imgpkg, is read from where it lives by every
//! command that reads a bundle from a registry, with the origin registry stopped: export -b,
//! export --lock (the BundleLock an import wrote), copy --to-tar, copy --to-repo, pull -r and
//! describe. The real imgpkg (../shared/tools/imgpkg) relocates one of the bundles and reads
//! ferry's results; a missing imgpkg fails the test.

mod cli;
mod seed;
mod support;

include!("seed/fixture_modules.rs");

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cli::{ferry, json_of, text};
use support::{Registry, Variant, imgpkg, run_bounded};

fn succeed(args: &[&str]) -> Output {
    let output = ferry().args(args).arg("--registry-insecure").output().unwrap();
    assert!(output.status.success(), "ferry {args:?}: {}{}", text(&output.stdout), text(&output.stderr));
    output
}

fn run_imgpkg(args: &[&str]) -> Output {
    let output = run_bounded(
        Command::new(imgpkg()).args(args).arg("--registry-insecure").env("HOME", std::env::temp_dir()),
        Duration::from_secs(120),
    );
    assert!(output.status.success(), "imgpkg {args:?}: {}{}", text(&output.stdout), text(&output.stderr));
    output
}

/// The digests of every artifact an archive holds (what it carries, whatever names it uses).
fn carried(archive: &Path) -> BTreeSet<String> {
    let output = ferry().args(["inspect", "--json"]).arg(archive).output().unwrap();
    assert!(output.status.success(), "inspect {}: {}", archive.display(), text(&output.stderr));
    json_of(&output)["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["digest"].as_str().unwrap().to_string())
        .collect()
}

fn verified(archive: &Path) {
    let output = ferry().arg("verify").arg(archive).output().unwrap();
    assert!(output.status.success(), "verify {}: {}{}", archive.display(), text(&output.stdout), text(&output.stderr));
}

/// Every command reads the relocated bundle `at` (REPO:TAG) from its repository; `expected`
/// is what the original export carried.
fn read_where_it_lives(at: &str, repo: &str, lock: Option<&Path>, scratch: &Path, expected: &BTreeSet<String>) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    let out = |name: &str| dir.path().join(name);
    let again = out("again.tar");
    succeed(&["export", "-b", at, "-o", again.to_str().unwrap()]);
    verified(&again);
    assert_eq!(&carried(&again), expected, "export -b {at}");

    let copied = out("copied.tar");
    succeed(&["copy", "-b", at, "--to-tar", copied.to_str().unwrap()]);
    assert_eq!(&carried(&copied), expected, "copy -b {at} --to-tar");

    if let Some(lock) = lock {
        let locked = out("locked.tar");
        succeed(&["export", "--lock", lock.to_str().unwrap(), "-o", locked.to_str().unwrap()]);
        assert_eq!(&carried(&locked), expected, "export --lock");
    }

    succeed(&["copy", "-b", at, "--to-repo", &format!("{repo}-onward")]);
    let pulled = out("pulled");
    succeed(&["pull", "-b", at, "-r", "-o", pulled.to_str().unwrap()]);
    let described = json_of(&succeed(&["describe", "-b", at, "--json"]));
    assert_eq!(described["bundle"]["children"].as_array().unwrap().len(), 3, "{described}");
}

#[test]
fn a_relocated_bundle_is_read_where_it_lives_with_the_origin_stopped() {
    let origin = Registry::start(Variant::Plain);
    let target = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    seed::seed_bundle(&origin, scratch.path());
    let source = format!("{}/team/bundle:1.0", origin.host());
    let archive = scratch.path().join("bundle.tar");
    succeed(&["export", "-b", &source, "-o", archive.to_str().unwrap()]);
    let expected = carried(&archive);
    skopeo_reads_the_index_by_name(&archive);

    // Relocated by ferry (import, with the BundleLock it writes) and by imgpkg (copy).
    let by_ferry = format!("{}/ferry/bundle", target.host());
    let lock = scratch.path().join("lock.yml");
    succeed(&["import", archive.to_str().unwrap(), "--to-repo", &by_ferry, "--lock-output", lock.to_str().unwrap()]);
    let by_imgpkg = format!("{}/imgpkg/bundle", target.host());
    run_imgpkg(&["copy", "-b", &source, "--to-repo", &by_imgpkg]);
    drop(origin);

    read_where_it_lives(&format!("{by_ferry}:1.0"), &by_ferry, Some(&lock), scratch.path(), &expected);
    read_where_it_lives(&format!("{by_imgpkg}:1.0"), &by_imgpkg, None, scratch.path(), &expected);

    // imgpkg reads what ferry relocated: every lock it pulls points at the new repository.
    let pulled = scratch.path().join("imgpkg-pulled");
    run_imgpkg(&["pull", "-b", &format!("{by_ferry}:1.0"), "-o", pulled.to_str().unwrap(), "-r"]);
    let mut locks = 0;
    for entry in walkdir::WalkDir::new(&pulled) {
        let entry = entry.unwrap();
        if entry.file_name() == "images.yml" {
            locks += 1;
            let lock = std::fs::read_to_string(entry.path()).unwrap();
            for line in
                lock.lines().filter(|l| l.trim_start().starts_with("- image:") || l.trim_start().starts_with("image:"))
            {
                assert!(line.contains(&by_ferry), "{}: {line}", entry.path().display());
            }
        }
    }
    assert_eq!(locks, 2, "the root's and the nested bundle's locks");
    // imgpkg copies ferry's relocation on, and ferry re-exports that with the origin stopped.
    let onward = format!("{}/imgpkg/onward", target.host());
    run_imgpkg(&["copy", "-b", &format!("{by_ferry}:1.0"), "--to-repo", &onward]);
    let last = scratch.path().join("onward.tar");
    succeed(&["export", "-b", &format!("{onward}:1.0"), "-o", last.to_str().unwrap()]);
    assert_eq!(carried(&last), expected);
}

/// The README's skopeo example: an OCI-typed entry (the two-platform index) is selected by the
/// name `ferry inspect` prints, a registry reference with a port and a digest.
fn skopeo_reads_the_index_by_name(archive: &Path) {
    let output = ferry().args(["inspect", "--json"]).arg(archive).output().unwrap();
    let report = json_of(&output);
    let index = report["artifacts"].as_array().unwrap().iter().find(|a| a["kind"] == "index").expect("an index");
    let name = index["name"].as_str().unwrap();
    let raw = run_bounded(
        Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci-archive:{}:{name}", archive.display())),
        Duration::from_secs(60),
    );
    assert!(raw.status.success(), "skopeo inspect oci-archive:...:{name}: {}", text(&raw.stderr));
    assert_eq!(ferry::model::sha256_digest(&raw.stdout).to_string(), index["digest"].as_str().unwrap());
}
