//! Every command's `--help`, and the human and JSON output of `export`, `verify`, `inspect` and
//! `describe --tar` on the committed fixtures, held to committed snapshots in tests/snapshots/,
//! and the JSON keys held to the ones spec/cli.md lists (issue 17 "Output held to the spec"):
//! any drift fails the suite. Volatile values (seconds, temporary paths) are redacted.
//!
//! After a deliberate change, `FERRY_UPDATE_SNAPSHOTS=1 cargo test --test cli_snapshots`
//! rewrites the snapshots; review the diff and update spec/cli.md to match.

mod cli;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use cli::{ferry, text};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Compares `actual` with tests/snapshots/NAME.txt, or writes it with FERRY_UPDATE_SNAPSHOTS=1.
fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(ROOT).join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("FERRY_UPDATE_SNAPSHOTS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!("{}: {err}; run FERRY_UPDATE_SNAPSHOTS=1 cargo test --test cli_snapshots", path.display())
    });
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b);
        panic!(
            "{} differs from the output (first differing line {:?}); if the change is meant, update spec/cli.md and \
             run FERRY_UPDATE_SNAPSHOTS=1 cargo test --test cli_snapshots\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first.map(|line| line + 1)
        );
    }
}

/// Text with the scratch directory and durations (`in 0.1s`) redacted.
fn redacted(text: &str, scratch: &Path) -> String {
    let text = text.replace(&scratch.display().to_string(), "[TMP]").replace(ROOT, "[ROOT]");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(" in ") {
        out.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        if digits > 0 && rest[digits..].starts_with('s') {
            out.push_str("[SECONDS]");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// A JSON report with `seconds` redacted and paths made relative to the scratch directory.
fn redacted_json(output: &Output, scratch: &Path) -> String {
    let mut value: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", text(&output.stdout)));
    if let Some(seconds) = value.get_mut("seconds") {
        *seconds = Value::String("[SECONDS]".into());
    }
    redacted(&serde_json::to_string_pretty(&value).unwrap(), scratch) + "\n"
}

fn run(args: &[&str]) -> Output {
    ferry().current_dir(ROOT).env("COLUMNS", "100").env("NO_COLOR", "1").args(args).output().unwrap()
}

/// The top-level keys spec/cli.md lists for a command's `--json`: the first `{...}` after
/// `` `--json`: `{ `` in the section whose heading starts with `heading`.
fn spec_keys(heading: &str, nth: usize) -> BTreeSet<String> {
    let spec = fs::read_to_string(PathBuf::from(ROOT).join("spec/cli.md")).unwrap();
    let section_start = spec.find(&format!("## `{heading}")).unwrap_or_else(|| panic!("spec/cli.md has no {heading}"));
    let section = &spec[section_start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let mut from = 0;
    let mut found = None;
    for _ in 0..=nth {
        let at = section[from..].find("{").map(|at| at + from).expect("a key list");
        found = Some(at);
        from = at + 1;
    }
    let body = &section[found.unwrap() + 1..];
    let (mut depth, mut keys, mut current) = (0i32, BTreeSet::new(), String::new());
    for c in body.chars() {
        match c {
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' if depth == 0 => break,
            '}' | ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                keys.insert(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        if depth == 0 && (c.is_ascii_alphanumeric()) {
            current.push(c);
        } else if depth == 0 && !current.is_empty() && c != ' ' && c != '\n' {
            current.push('\u{0}');
        }
    }
    keys.insert(current);
    keys.into_iter().map(|key| key.split('\u{0}').next().unwrap().to_string()).filter(|key| !key.is_empty()).collect()
}

fn json_keys(output: &Output) -> BTreeSet<String> {
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    value.as_object().expect("an object").keys().cloned().collect()
}

#[test]
fn every_help_text_is_as_committed() {
    let commands: [&[&str]; 14] = [
        &[],
        &["export"],
        &["import"],
        &["copy"],
        &["push"],
        &["pull"],
        &["describe"],
        &["verify"],
        &["inspect"],
        &["tag"],
        &["tag", "list"],
        &["tag", "resolve"],
        &["serve"],
        &["inventory"],
    ];
    // Every command `ferry --help` lists has its snapshot: a new command cannot escape it.
    let listed: Vec<String> = text(&run(&["--help"]).stdout)
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter(|line| !line.starts_with("   ")) // a wrapped description, not a command
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect();
    for name in &listed {
        assert!(commands.iter().any(|c| c.first() == Some(&name.as_str())), "ferry {name} has no --help snapshot");
    }
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let output = run(&args);
        assert!(output.status.success(), "ferry {args:?}: {}", text(&output.stderr));
        let name = if command.is_empty() { "help".to_string() } else { format!("help-{}", command.join("-")) };
        snapshot(&name, &text(&output.stdout));
    }
    // Only commands that talk to a registry take the registry flags (spec/cli.md).
    for offline in ["verify", "inspect"] {
        let help = text(&run(&[offline, "--help"]).stdout);
        assert!(!help.contains("--registry-"), "ferry {offline} --help lists registry flags:\n{help}");
    }
}

#[test]
fn outputs_of_the_fixture_bundle_are_as_committed_and_as_specified() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let archive = dir.join("bundle.tar");
    let archive_text = archive.to_str().unwrap();
    let layout = "fixtures/layouts/bundle";

    let exported = run(&["export", "--oci-layout", layout, "-o", archive_text]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    snapshot("export.stdout", &redacted(&text(&exported.stdout), dir));
    snapshot("export.stderr", &redacted(&text(&exported.stderr), dir));
    let again = dir.join("again.tar");
    let exported_json = run(&["export", "--oci-layout", layout, "-q", "--json", "-o", again.to_str().unwrap()]);
    assert!(exported_json.status.success(), "{}", text(&exported_json.stderr));
    snapshot("export.json", &redacted_json(&exported_json, dir));
    assert_eq!(json_keys(&exported_json), spec_keys("ferry export", 0), "export --json against spec/cli.md");

    let verified = run(&["verify", "-q", archive_text]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified.stderr));
    snapshot("verify.stdout", &redacted(&text(&verified.stdout), dir));
    let verified_json = run(&["verify", archive_text, "--json"]);
    snapshot("verify.json", &redacted_json(&verified_json, dir));
    assert_eq!(json_keys(&verified_json), spec_keys("ferry verify", 0), "verify --json against spec/cli.md");
    let damaged = run(&["verify", "-q", "fixtures/tampered/missing-blob.tar"]);
    assert_eq!(damaged.status.code(), Some(3));
    snapshot("verify-damaged.stdout", &redacted(&text(&damaged.stdout), dir));

    let inspected = run(&["inspect", archive_text]);
    assert_eq!(inspected.status.code(), Some(0), "{}", text(&inspected.stderr));
    snapshot("inspect.stdout", &redacted(&text(&inspected.stdout), dir));
    let inspected_json = run(&["inspect", archive_text, "--json"]);
    snapshot("inspect.json", &redacted_json(&inspected_json, dir));
    assert_eq!(json_keys(&inspected_json), spec_keys("ferry inspect", 0), "inspect --json against spec/cli.md");

    let described = run(&["describe", "--tar", archive_text]);
    assert_eq!(described.status.code(), Some(0), "{}", text(&described.stderr));
    snapshot("describe-tar.stdout", &redacted(&text(&described.stdout), dir));
    let described_json = run(&["describe", "--tar", archive_text, "--json"]);
    snapshot("describe-tar.json", &redacted_json(&described_json, dir));
    assert_eq!(json_keys(&described_json), BTreeSet::from(["bundles".to_string()]), "spec/cli.md: {{bundles: [Node]}}");
    let node = &serde_json::from_slice::<Value>(&described_json.stdout).unwrap()["bundles"][0];
    let node_keys: BTreeSet<String> = node.as_object().unwrap().keys().cloned().collect();
    assert_eq!(node_keys, spec_keys("ferry describe", 2), "describe Node against spec/cli.md");
}
