//! Image references (`[registry/]repository[:tag][@digest]`) with Docker Hub normalisation.
//!
//! References are normalised the way imgpkg (go-containerregistry) does, so that two spellings
//! of one image compare equal: no registry or `docker.io` means `index.docker.io`, and a one-part
//! Docker Hub repository gains `library/` (`nginx` is `index.docker.io/library/nginx`).

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// The registry assumed when a reference names none, spelled as imgpkg spells it.
pub const DOCKER_HUB: &str = "index.docker.io";
const MAX_TAG_LEN: usize = 128;
const MAX_NAME_LEN: usize = 255;

/// A repository on a registry: `registry/path`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Repository {
    pub registry: String,
    pub path: String,
}

/// A parsed, normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Reference {
    pub repository: Repository,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference {reference:?} is invalid: {reason}")]
    Invalid { reference: String, reason: String },
    #[error("image reference {reference:?} has a bad digest: {source}")]
    Digest { reference: String, source: DigestError },
    #[error("expected ref to be in digest form, got '{0}'")]
    NotDigest(String),
}

impl Repository {
    /// Parses `[registry/]path` with no tag or digest.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let reference: Reference = text.parse()?;
        if reference.tag.is_some() || reference.digest.is_some() {
            return Err(invalid(text, "a repository takes no tag or digest"));
        }
        Ok(reference.repository)
    }

    /// This repository with a digest.
    pub fn at_digest(&self, digest: Digest) -> Reference {
        Reference { repository: self.clone(), tag: None, digest: Some(digest) }
    }

    /// This repository with a tag.
    pub fn at_tag(&self, tag: &str) -> Reference {
        Reference { repository: self.clone(), tag: Some(tag.to_string()), digest: None }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

impl Reference {
    /// The reference as imgpkg reads it: a repository alone (no tag, no digest) is `REPO:latest`.
    pub fn or_latest(&self) -> Reference {
        match (&self.tag, &self.digest) {
            (None, None) => self.repository.at_tag("latest"),
            _ => self.clone(),
        }
    }

    /// Parses a reference that must carry a digest, as lock files require.
    pub fn parse_digest_form(text: &str) -> Result<Self, ReferenceError> {
        let reference: Reference = text.parse()?;
        if reference.digest.is_none() {
            return Err(ReferenceError::NotDigest(text.to_string()));
        }
        Ok(reference)
    }

    /// The normalised `registry/path@sha256:..` form, without the tag.
    pub fn digest_form(&self) -> Option<String> {
        self.digest.map(|digest| format!("{}@{digest}", self.repository))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn invalid(reference: &str, reason: &str) -> ReferenceError {
    ReferenceError::Invalid { reference: reference.to_string(), reason: reason.to_string() }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(invalid(text, "it is empty"));
        }
        if text.len() > MAX_NAME_LEN + MAX_TAG_LEN + 80 {
            return Err(invalid(text, "it is too long"));
        }
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::Digest { reference: text.to_string(), source })?;
                (rest, Some(digest))
            }
            None => (text, None),
        };
        // A tag follows the last ':' only if no '/' comes after it (a ':' before a '/' is a port).
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(colon) if !name_and_tag[colon..].contains('/') => {
                (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
            }
            _ => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                return Err(invalid(text, "the tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
            }
        }
        let (registry, path) = split_registry(name);
        if !is_valid_registry(registry) {
            return Err(invalid(text, "the registry host is malformed"));
        }
        if path.is_empty() || path.len() > MAX_NAME_LEN || !path.split('/').all(is_valid_path_component) {
            return Err(invalid(
                text,
                "the repository must be lowercase path components of [a-z0-9] joined by '.', '_', '__' or '-'",
            ));
        }
        let registry = if registry == "docker.io" || registry.is_empty() { DOCKER_HUB } else { registry };
        let path =
            if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
        Ok(Reference {
            repository: Repository { registry: registry.to_string(), path },
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

/// Splits off the registry: the first component counts as a host if it has a '.', a ':',
/// is `localhost`, or has an uppercase letter (the Docker rule).
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => ("", name),
    }
}

fn is_valid_registry(registry: &str) -> bool {
    if registry.is_empty() {
        return true;
    }
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || registry.starts_with('[') => (host, Some(port)),
        _ => (registry, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1].bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    // Separators: '.', '_', '__', or any run of '-'.
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = separator == "." || separator == "_" || separator == "__" || separator.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A tag as the distribution spec allows: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "61cb6f2e8f6b5c9f4e8d2bc4d03d09a2f8b3c1e6b0a7d8e9f0a1b2c3d4e5f607";

    #[test]
    fn normalises_docker_hub() {
        let short: Reference = format!("nginx@sha256:{HEX}").parse().unwrap();
        let long: Reference = format!("docker.io/library/nginx@sha256:{HEX}").parse().unwrap();
        assert_eq!(short, long);
        assert_eq!(short.to_string(), format!("index.docker.io/library/nginx@sha256:{HEX}"));
        let user: Reference = "someone/app:1.0".parse().unwrap();
        assert_eq!(user.to_string(), "index.docker.io/someone/app:1.0");
    }

    #[test]
    fn keeps_registries_with_ports() {
        let reference: Reference = format!("127.0.0.1:5000/team/app:v1@sha256:{HEX}").parse().unwrap();
        assert_eq!(reference.repository.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository.path, "team/app");
        assert_eq!(reference.tag.as_deref(), Some("v1"));
        assert!(reference.digest.is_some());
        let local: Reference = "localhost/app".parse().unwrap();
        assert_eq!(local.repository.registry, "localhost");
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in
            ["", "Upper", "team/Upper", "repo:", "repo:bad tag", "a//b", "host:99999999/x", "repo@sha256:123", "-x/y"]
        {
            assert!(bad.parse::<Reference>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn digest_form_is_required_in_locks() {
        let err = Reference::parse_digest_form("registry.example.com/app:1.0").unwrap_err();
        assert_eq!(err.to_string(), "expected ref to be in digest form, got 'registry.example.com/app:1.0'");
    }
}
