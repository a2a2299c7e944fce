//! How the integration tests run the ferry binary: a command with a bounded run time and an
//! environment cleared of the developer's own ferry, imgpkg and registry settings (so their
//! credentials or `FERRY_CONCURRENCY` never change a result), and readers of what it printed.
#![allow(dead_code)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

/// The longest any one ferry run in a test may take before it is killed.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// `ferry` with none of the caller's `FERRY_*`, `IMGPKG_*` or podman auth variables.
pub fn ferry() -> Command {
    let mut command = Command::cargo_bin("ferry").unwrap();
    command.timeout(TIMEOUT).env_remove("REGISTRY_AUTH_FILE").env_remove("XDG_RUNTIME_DIR");
    for (key, _) in std::env::vars() {
        if key.starts_with("IMGPKG_") || key.starts_with("FERRY_") {
            command.env_remove(key);
        }
    }
    command
}

/// [`ferry`] with `home` as HOME and `home/.docker` as DOCKER_CONFIG: a test's own credentials.
pub fn ferry_at_home(home: &Path) -> Command {
    let mut command = ferry();
    command.env("HOME", home).env("DOCKER_CONFIG", home.join(".docker"));
    command
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a `--json` run printed on stdout.
pub fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&output.stdout)))
}

/// Tag to digest, from what `ferry tag list --digests --json` printed.
pub fn tag_digests(output: &Output) -> std::collections::BTreeMap<String, String> {
    json_of(output)
        .as_array()
        .unwrap_or_else(|| panic!("not a tag list: {}", text(&output.stdout)))
        .iter()
        .map(|t| (t["tag"].as_str().unwrap().to_string(), t["digest"].as_str().unwrap().to_string()))
        .collect()
}
