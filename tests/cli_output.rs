//! Issue 17, defects 5 and 6 against the binary: every write to stdout is checked (a full disk
//! is exit 1, a closed pipe is quiet), and the small truths: `-o` naming a directory refused
//! before anything is fetched, `--lock-output` 0600 over an existing file and never through a
//! link, `verify` of a directory or device exits 1, the stream's "not found" reads as words,
//! and a lock with many missing images makes a message of one short line.

mod cli;
mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cli::{ferry, text};
use support::{Registry, Variant};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
const FULL_DISK_MESSAGE: &str = "error: writing to stdout: No space left on device";

/// Runs ferry with stdout on `/dev/full` (a device every write to fails with ENOSPC), bounded
/// to two minutes; returns the status and what it said on stderr.
fn ferry_into_dev_full(args: &[&str]) -> (ExitStatus, String) {
    let full = fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full is missing on this machine");
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("ferry"))
        .args(args)
        .env_remove("IMGPKG_USERNAME")
        .env_remove("IMGPKG_PASSWORD")
        .env_remove("FERRY_CONCURRENCY")
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(stderr_file.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferry {args:?} did not finish in two minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, fs::read_to_string(stderr_file.path()).unwrap())
}

fn assert_full_disk_fails(args: &[&str]) {
    let (status, stderr) = ferry_into_dev_full(args);
    assert_eq!(status.code(), Some(1), "ferry {args:?} > /dev/full must exit 1: {stderr}");
    assert!(stderr.contains(FULL_DISK_MESSAGE), "ferry {args:?} > /dev/full says why: {stderr}");
}

/// The fixture bundle layout exported into `dir`, returning the archive's path.
fn exported_bundle(dir: &Path) -> PathBuf {
    let archive = dir.join("bundle.tar");
    let layout = format!("{FIXTURES}/layouts/bundle");
    let output = ferry().args(["export", "--oci-layout", &layout, "-q", "-o"]).arg(&archive).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    archive
}

#[test]
fn issue17_offline_commands_fail_when_stdout_is_full() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = exported_bundle(scratch.path());
    let archive = archive.to_str().unwrap();
    assert_full_disk_fails(&["verify", archive]);
    assert_full_disk_fails(&["verify", archive, "--json"]);
    assert_full_disk_fails(&["inspect", archive, "--json"]);
    assert_full_disk_fails(&["inspect", archive]);
    assert_full_disk_fails(&["describe", "--tar", archive]);
    assert_full_disk_fails(&["describe", "--tar", archive, "--json"]);
    assert_full_disk_fails(&["verify", "--help"]);
    let layout = format!("{FIXTURES}/layouts/plain-oci");
    let again = scratch.path().join("plain.tar");
    assert_full_disk_fails(&["export", "--oci-layout", &layout, "-q", "--json", "-o", again.to_str().unwrap()]);
}

#[test]
fn issue17_a_closed_pipe_is_quiet() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = exported_bundle(scratch.path());
    // A reader that closes at once: ferry's write meets EPIPE, which is not an error.
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("ferry"))
        .args(["inspect", archive.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!text(&output.stderr).contains("error"), "{}", text(&output.stderr));
}

#[test]
fn issue17_tag_list_and_lock_output_against_a_real_registry() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let archive = exported_bundle(scratch.path());
    let repo = format!("{}/team/bundle", registry.host());

    // --lock-output over an existing 0644 file: the lock comes out 0600.
    let lock = scratch.path().join("lock.yml");
    fs::write(&lock, "old\n").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    let imported = ferry()
        .arg("import")
        .arg(&archive)
        .args(["--to-repo", &repo, "--registry-insecure", "--json", "--lock-output"])
        .arg(&lock)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let mode = fs::metadata(&lock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the lock file is private whatever was there before");
    assert!(fs::read_to_string(&lock).unwrap().contains("BundleLock"));

    // A symbolic link at the lock's name is refused before anything is imported (a usage
    // error), and its target left alone.
    let target = scratch.path().join("elsewhere.txt");
    fs::write(&target, "keep me\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let link = scratch.path().join("link.yml");
    symlink(&target, &link).unwrap();
    let through_link = ferry()
        .arg("import")
        .arg(&archive)
        .args(["--to-repo", &repo, "--registry-insecure", "-q", "--lock-output"])
        .arg(&link)
        .output()
        .unwrap();
    assert_eq!(through_link.status.code(), Some(2), "{}", text(&through_link.stderr));
    assert!(text(&through_link.stderr).contains("symbolic link"), "{}", text(&through_link.stderr));
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep me\n");
    assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644);

    assert_full_disk_fails(&["tag", "list", &repo, "--registry-insecure", "--imgpkg-internal-tags"]);
    assert_full_disk_fails(&["tag", "list", &repo, "--registry-insecure", "--json"]);
    // The root bundle, as the BundleLock written names it (`image: REPO@sha256:..`).
    let lock_text = fs::read_to_string(&lock).unwrap();
    let reference = lock_text
        .lines()
        .find_map(|line| line.trim().strip_prefix("image: "))
        .expect("the BundleLock names the bundle")
        .to_string();
    let described = ferry().args(["describe", "-b", &reference, "--registry-insecure"]).output().unwrap();
    assert!(described.status.success(), "{}", text(&described.stderr));
    assert_full_disk_fails(&["describe", "-b", &reference, "--registry-insecure"]);
    assert_full_disk_fails(&["describe", "-b", &reference, "--registry-insecure", "--json"]);
}

#[test]
fn issue17_export_refuses_a_directory_before_fetching_anything() {
    let scratch = tempfile::tempdir().unwrap();
    // Port 1 on loopback: any attempt to fetch would fail with a connection error instead.
    let output = ferry()
        .args(["export", "-i", "127.0.0.1:1/team/app:1.0", "--registry-insecure", "--registry-retry-count", "0"])
        .arg("-o")
        .arg(scratch.path())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("it is a directory"), "{stderr}");
    assert!(!stderr.contains("--resume") && !stderr.contains("127.0.0.1:1"), "nothing was fetched: {stderr}");
    assert!(fs::read_dir(scratch.path()).unwrap().next().is_none(), "nothing was written");

    let missing_parent = scratch.path().join("no/such/dir/bundle.tar");
    let output = ferry()
        .args(["export", "--oci-layout", &format!("{FIXTURES}/layouts/bundle"), "-o"])
        .arg(&missing_parent)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("does not exist"), "{}", text(&output.stderr));
}

#[test]
fn issue17_verify_of_a_directory_or_device_is_a_failure_not_damage() {
    let scratch = tempfile::tempdir().unwrap();
    for (path, named) in [(scratch.path(), "a directory"), (Path::new("/dev/null"), "a device")] {
        let output = ferry().arg("verify").arg(path).output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "verify {}: {stderr}", path.display());
        assert!(stderr.contains(named) && stderr.contains("not an archive file"), "{stderr}");
    }
}

#[test]
fn issue17_verify_of_a_stream_names_a_missing_blob_in_words() {
    let archive = fs::read(format!("{FIXTURES}/tampered/missing-manifest.tar")).unwrap();
    let output = ferry().args(["verify", "-"]).write_stdin(archive).output().unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("standard input: blob sha256:") && stdout.contains(" not found"), "{stdout}");
    assert!(!stdout.contains("stream not found"), "{stdout}");
}

#[test]
fn issue17_many_missing_lock_images_make_one_short_line() {
    use ferry::engine::NoReport;
    use ferry::ops::bundle::build::{BuildOptions, build};
    use ferry::ops::export::{self, Expect, ExportOptions};

    let scratch = tempfile::tempdir().unwrap();
    let files = scratch.path().join("bundle");
    fs::create_dir_all(files.join(".imgpkg")).unwrap();
    let mut lock = String::from("apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages:\n");
    for number in 0..2000u32 {
        lock.push_str(&format!("- image: registry.example.com/team/app{number}@sha256:{number:064x}\n"));
    }
    fs::write(files.join(".imgpkg/images.yml"), lock).unwrap();
    let built = build(&BuildOptions { paths: vec![files], bundle: true, ..BuildOptions::default() }).unwrap();
    // The built bundle is its own only source: every lock entry is missing from it.
    let root = export::built_root(built.descriptor());
    let out = scratch.path().join("out.tar");
    let failed = export::export(&built, vec![root], Expect::Bundle, &out, &ExportOptions::default(), &NoReport)
        .expect_err("the lock's images are missing");
    let message = failed.to_string();
    assert!(message.contains("2000 image(s)"), "{message}");
    assert!(message.contains("and 1995 more"), "{message}");
    assert!(message.len() < 2000, "one short line, not {} bytes", message.len());
    // `--json` gets every one of them (the CLI prints this report on a failed export).
    let report = failed.report();
    assert_eq!(report.details.len(), 2000);
    assert!(report.details.contains(&format!("registry.example.com/team/app1999@sha256:{:064x}", 1999)));
}

/// spec/cli.md "Global flags" (review s8 F5): imgpkg's global flags are taken and change
/// nothing, so an imgpkg script (CI commonly passes `--tty`) runs unchanged: a copy, a pull and
/// a tag list with them print what they print without them; a bool takes a value only after
/// `=`, so a positional argument after `--tty` stays one. So is `copy --tar` with
/// `--include-non-distributable-layers`.
#[test]
fn imgpkg_global_flags_are_accepted_and_change_nothing() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let archive = exported_bundle(scratch.path());
    let imgpkg_flags = ["--tty", "--color=F", "--column", "name,digest", "--debug=1", "-y"];
    let run = |args: &[&str], with: bool| {
        let flags: &[&str] = if with { &imgpkg_flags } else { &[] };
        let output = ferry().args(args).args(flags).arg("--registry-insecure").output().unwrap();
        assert!(output.status.success(), "{args:?} (imgpkg flags: {with}): {}", text(&output.stderr));
        text(&output.stdout)
    };
    let repo = format!("{}/team/bundle", registry.host());
    let imported = ferry().arg("import").arg(&archive).args(["--to-repo", &repo, "--registry-insecure", "-q"]).output();
    assert!(imported.unwrap().status.success());
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{FIXTURES}/layouts/bundle/index.json")).unwrap()).unwrap();
    let bundle = format!("{repo}@{}", index["manifests"][0]["digest"].as_str().unwrap());
    for with in [false, true] {
        let out = scratch.path().join(format!("pulled-{with}"));
        run(&["pull", "-b", &bundle, "-o", out.to_str().unwrap(), "-q"], with);
        run(&["copy", "-b", &bundle, "--to-repo", &format!("{}/mirror/{with}", registry.host()), "-q"], with);
    }
    assert_eq!(run(&["tag", "list", &repo, "--digests"], true), run(&["tag", "list", &repo, "--digests"], false));
    let verified = ferry().args(["verify", "--tty"]).arg(&archive).output().unwrap();
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    // imgpkg takes --include-non-distributable-layers on copy --tar too (review s8 G6).
    let mirror = format!("{}/mirror/from-tar", registry.host());
    let archive_path = archive.to_str().unwrap();
    run(&["copy", "--tar", archive_path, "--to-repo", &mirror, "--include-non-distributable-layers", "-q"], true);
}

/// Review s8 F12: a bad `--lock` file is named once (`images.yml: images.yml: images[0]: ...`
/// before), and a lock of neither kind is told both kinds.
#[test]
fn a_bad_lock_file_is_named_once() {
    let scratch = tempfile::tempdir().unwrap();
    for (body, expected) in [
        ("images:\n- image: 127.0.0.1:9/app:1.0\nkind: ImagesLock\n", "images[0]: expected ref to be in digest form"),
        ("images: []\nkind: ImageLock\n", r#"expected "BundleLock" or "ImagesLock""#),
    ] {
        let lock = scratch.path().join("images.yml");
        fs::write(&lock, format!("---\napiVersion: imgpkg.carvel.dev/v1alpha1\n{body}")).unwrap();
        let output = ferry()
            .args(["export", "--lock", lock.to_str().unwrap(), "-o"])
            .arg(scratch.path().join("out.tar"))
            .output()
            .unwrap();
        let said = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{said}");
        assert!(said.contains(expected) && said.matches("images.yml").count() == 1, "{said}");
    }
}

/// spec/cli.md PL-1 (review s8): a pull follows the umask, the output directory included (it
/// was 0755 whatever the umask): under umask 077 nothing it writes is open to others.
#[test]
fn a_pull_follows_the_umask_its_output_directory_too() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = exported_bundle(scratch.path());
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{FIXTURES}/layouts/bundle/index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let out = scratch.path().join("pulled");
    let binary = assert_cmd::cargo::cargo_bin("ferry");
    let pulled = Command::new("sh")
        .arg("-c")
        .arg("umask 077 && exec \"$0\" pull -q --tar \"$1\" -b \"$2\" -o \"$3\"")
        .arg(&binary)
        .arg(&archive)
        .arg(&digest)
        .arg(&out)
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    for entry in walkdir::WalkDir::new(&out) {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o} under umask 077", entry.path().display());
    }
}
