//! The names of the `.imgpkg` tags an import or copy gives every top-level artifact
//! (spec/imgpkg.md "Import"): `sha256-<hex>.imgpkg` by default, or with `--repo-based-tags`
//! `<repository>-sha256-<hex>.imgpkg`, named after the repository the artifact came from, as
//! imgpkg's `--repo-based-tags` names them.

use crate::model::{Digest, Reference};

/// How the `.imgpkg` tag of a top-level artifact is named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TagScheme {
    /// `sha256-<hex>.imgpkg`.
    #[default]
    Digest,
    /// `<repository path>-sha256-<hex>.imgpkg` (`--repo-based-tags`), for an artifact whose
    /// origin is known; the digest's tag for one that has none (a local layout's).
    RepoBased,
}

/// The most of the repository path a repository-based tag keeps (from its end), so the tag
/// stays within the distribution spec's 128 characters: 49 + `-` + 71 + `.imgpkg`.
const KEPT_PATH: usize = 49;

impl TagScheme {
    /// The `.imgpkg` tag of the artifact with `digest`, which came from `origin` if known.
    pub fn tag(self, digest: &Digest, origin: Option<&Reference>) -> String {
        let digest_tag = format!("{}.imgpkg", digest.tag_form());
        let Some(origin) = origin.filter(|_| self == TagScheme::RepoBased) else { return digest_tag };
        // The path without the registry, `/` as `-`, cut to its last characters; only what a
        // tag may hold, and no leading `.` or `-` (a tag must start with a word character).
        let dashed = trim_start(&origin.repository.path.replace('/', "-"));
        let kept = trim_start(&dashed[dashed.len().saturating_sub(KEPT_PATH)..]);
        if kept.is_empty() { digest_tag } else { format!("{kept}-{digest_tag}") }
    }
}

/// `name` without characters a tag cannot hold, and without leading ones a tag cannot start
/// with.
fn trim_start(name: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let kept: String = name.chars().filter(|&c| allowed(c)).collect();
    kept.trim_start_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        format!("sha256:{}", "ab".repeat(32)).parse().unwrap()
    }

    fn tag(scheme: TagScheme, origin: &str) -> String {
        scheme.tag(&digest(), Some(&origin.parse::<Reference>().unwrap()))
    }

    /// Checked against imgpkg's `--repo-based-tags` (review s8): the path without the
    /// registry, docker.io names normalised first, the tag and digest of the origin left out.
    #[test]
    fn repository_based_tags_are_named_as_imgpkg_names_them() {
        let hex = "ab".repeat(32);
        assert_eq!(tag(TagScheme::Digest, "registry.example.com/team/app:1.0"), format!("sha256-{hex}.imgpkg"));
        assert_eq!(
            tag(TagScheme::RepoBased, &format!("nginx@sha256:{hex}")),
            format!("library-nginx-sha256-{hex}.imgpkg")
        );
        assert_eq!(
            tag(TagScheme::RepoBased, "127.0.0.1:5000/reloc/dock:v1"),
            format!("reloc-dock-sha256-{hex}.imgpkg")
        );
        // A long path keeps its last 49 characters, never starting with a separator.
        let long = format!("registry.example.com/{}/x-y.z", "a".repeat(60));
        let named = tag(TagScheme::RepoBased, &long);
        assert_eq!(named, format!("{}-x-y.z-sha256-{hex}.imgpkg", "a".repeat(43)));
        assert!(named.len() <= 128);
        let cut_at_a_separator = format!("registry.example.com/{}/{}", "a".repeat(10), "b".repeat(48));
        assert_eq!(tag(TagScheme::RepoBased, &cut_at_a_separator), format!("{}-sha256-{hex}.imgpkg", "b".repeat(48)));
        // No origin: the digest's tag.
        assert_eq!(TagScheme::RepoBased.tag(&digest(), None), format!("sha256-{hex}.imgpkg"));
    }
}
