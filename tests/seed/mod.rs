//! Seeding a test registry with the fixture generator's bundle (examples/fixtures/): a root
//! bundle locking an image, a two-platform index and a nested bundle, pushed with skopeo into
//! `team/*` repositories. A test using it declares the generator's modules at its crate root.

use std::path::Path;
use std::time::Duration;

use crate::layouts;
use crate::support::{Registry, run_bounded};

/// Pushes the generated bundle and everything it locks into `registry` as `team/*:1.0`, with
/// the locks naming `lock_host` (the registry's own host, or a proxy in front of it); returns
/// the root bundle's digest.
pub fn seed_bundle_named(registry: &Registry, lock_host: &str, scratch: &Path) -> String {
    let out = scratch.join("bundle-for");
    let written = layouts::write_bundle_for(lock_host, &out).unwrap();
    let mut root = String::new();
    for line in written {
        let parts: Vec<&str> = line.split(' ').collect();
        let (repository, dir, digest) = (parts[0], parts[1], parts[2]);
        let mut command = std::process::Command::new("skopeo");
        command
            .args(["copy", "--all", "--preserve-digests", "--quiet"])
            .args(registry.skopeo_flags("dest-"))
            .arg(format!("oci:{dir}"))
            .arg(format!("docker://{}/{repository}:1.0", registry.host()));
        let output = run_bounded(&mut command, Duration::from_secs(60));
        assert!(output.status.success(), "push {repository}: {}", String::from_utf8_lossy(&output.stderr));
        if repository == "team/bundle" {
            root = digest.to_string();
        }
    }
    root
}

/// [`seed_bundle_named`] with the locks naming the registry itself.
pub fn seed_bundle(registry: &Registry, scratch: &Path) -> String {
    seed_bundle_named(registry, registry.host(), scratch)
}
