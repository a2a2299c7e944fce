//! The names a served archive answers to (spec/serve.md SV-2): for each repository, its tags
//! and the digests it may serve. Two views are built from the walked graph: every artifact
//! under its original repository path, and with `--repo NAME` everything in NAME tagged as
//! `ferry import` tags it (the tag planning of [`super::super::publish::relocate`], not a copy of it).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::super::publish::relocate::{artifact_tags, locations_plan};
use super::routes::Page;
use crate::engine::Graph;
use crate::model::reference::DOCKER_HUB;
use crate::model::{Digest, RawManifest};
use crate::store::Source;
use crate::store::memory::MemorySource;

/// One repository's tags (each with the registries whose repository of that path gave it:
/// `None` for the `--repo` view) and the digests it serves.
#[derive(Debug, Default)]
pub struct RepoView {
    tags: BTreeMap<String, Vec<(Option<String>, Digest)>>,
    digests: HashSet<Digest>,
}

/// What a tag resolves to in a repository.
#[derive(Debug, PartialEq, Eq)]
pub enum TagLookup {
    Found(Digest),
    Unknown,
    /// Repositories of one path on several registries give the tag different digests, and the
    /// request did not say which registry it is for (containerd's `ns`).
    Ambiguous(Vec<String>),
}

impl RepoView {
    pub fn serves(&self, digest: &Digest) -> bool {
        self.digests.contains(digest)
    }

    /// Resolves `tag`, choosing among registries by `namespace` when one is given.
    pub fn tag(&self, tag: &str, namespace: Option<&str>) -> TagLookup {
        let Some(targets) = self.tags.get(tag) else { return TagLookup::Unknown };
        let wanted = namespace.map(normalise_registry);
        let candidates: BTreeSet<Digest> = targets
            .iter()
            .filter(|(registry, _)| match (&wanted, registry) {
                (Some(wanted), Some(registry)) => wanted == registry,
                _ => true,
            })
            .map(|(_, digest)| *digest)
            .collect();
        match candidates.len() {
            0 => TagLookup::Unknown,
            1 => TagLookup::Found(*candidates.first().expect("one candidate")),
            _ => TagLookup::Ambiguous(targets.iter().filter_map(|(registry, _)| registry.clone()).collect()),
        }
    }

    /// The tags in lexical order after `page.last`, at most `page.n`; and whether more follow.
    pub fn tag_page(&self, page: &Page) -> (Vec<String>, bool) {
        paginate(self.tags.keys(), page)
    }

    fn add_tag(&mut self, tag: String, registry: Option<String>, digest: Digest) {
        let targets = self.tags.entry(tag).or_default();
        if registry.is_none() {
            // The --repo view's tags win over an original path's of the same name (SV-2).
            targets.clear();
        } else if targets.iter().any(|(other, _)| other.is_none()) {
            return;
        }
        if !targets.contains(&(registry.clone(), digest)) {
            targets.push((registry, digest));
        }
    }
}

/// Every repository served.
#[derive(Debug, Default)]
pub struct Catalog {
    repos: BTreeMap<String, RepoView>,
}

impl Catalog {
    pub fn repo(&self, name: &str) -> Option<&RepoView> {
        self.repos.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.repos.keys().cloned().collect()
    }

    /// Repository names in lexical order after `page.last`, at most `page.n`.
    pub fn page(&self, page: &Page) -> (Vec<String>, bool) {
        paginate(self.repos.keys(), page)
    }
}

/// The catalog, and what the `--repo` view adds that the archive does not hold: the
/// ImageLocations record images (manifests and their config and layer blobs).
pub struct Views {
    pub catalog: Catalog,
    pub record_manifests: Vec<RawManifest>,
    pub record_blobs: Vec<(Digest, Vec<u8>)>,
}

/// Builds both views from a walked graph; `repo` is `--repo NAME`, already checked.
pub fn build(graph: &Graph, repo: Option<&str>) -> Views {
    let mut catalog = Catalog::default();
    for artifact in &graph.artifacts {
        let Some(original) = &artifact.original else { continue };
        let view = catalog.repos.entry(original.repository.path.clone()).or_default();
        view.digests.extend(graph.closure(&artifact.descriptor).into_keys());
        let registry = Some(original.repository.registry.clone());
        let digest = artifact.descriptor.digest;
        for tag in original.tag.iter().cloned().chain(artifact.root_tag()) {
            view.add_tag(tag, registry.clone(), digest);
        }
    }
    let mut record_manifests = Vec::new();
    let mut record_blobs = Vec::new();
    if let Some(name) = repo {
        let view = catalog.repos.entry(name.to_string()).or_default();
        view.digests.extend(graph.manifests.keys().copied());
        view.digests.extend(graph.blobs.keys().copied());
        for planned in artifact_tags(graph, crate::ops::publish::relocate::TagScheme::Digest) {
            view.add_tag(planned.tag, None, planned.manifest.digest());
        }
        let (record_tags, plan, memory) = locations_plan(graph);
        for planned in record_tags {
            view.add_tag(planned.tag, None, planned.manifest.digest());
        }
        for blob in &plan.blobs {
            if let Ok(bytes) = memory_bytes(&memory, blob) {
                view.digests.insert(blob.descriptor.digest);
                record_blobs.push((blob.descriptor.digest, bytes));
            }
        }
        for manifest in plan.manifests {
            view.digests.insert(manifest.digest());
            record_manifests.push(manifest);
        }
    }
    Views { catalog, record_manifests, record_blobs }
}

/// A record blob's bytes: ferry built them a moment ago, so reading them back cannot fail
/// but through a bug, which then only leaves the blob unserved.
fn memory_bytes(memory: &MemorySource, blob: &crate::store::PlannedBlob) -> Result<Vec<u8>, crate::store::StoreError> {
    memory.small_blob(&blob.descriptor)
}

/// The registry a containerd `ns` names, spelled as ferry's references spell it.
fn normalise_registry(namespace: &str) -> String {
    match namespace {
        "docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

fn paginate<'a>(names: impl Iterator<Item = &'a String>, page: &Page) -> (Vec<String>, bool) {
    let mut after = names.filter(|name| page.last.as_ref().is_none_or(|last| name.as_str() > last.as_str()));
    let limit = page.n.unwrap_or(usize::MAX);
    let listed: Vec<String> = after.by_ref().take(limit).cloned().collect();
    let more = page.n.is_some() && after.next().is_some();
    (listed, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8) -> Digest {
        Digest::from_bytes([byte; 32])
    }

    #[test]
    fn a_tag_shared_by_two_registries_needs_ns_unless_they_agree() {
        let mut view = RepoView::default();
        view.add_tag("1.0".into(), Some("a.example".into()), digest(1));
        view.add_tag("1.0".into(), Some(DOCKER_HUB.into()), digest(2));
        view.add_tag("2.0".into(), Some("a.example".into()), digest(3));
        view.add_tag("2.0".into(), Some("b.example".into()), digest(3));
        assert!(matches!(view.tag("1.0", None), TagLookup::Ambiguous(_)));
        assert_eq!(view.tag("1.0", Some("a.example")), TagLookup::Found(digest(1)));
        assert_eq!(view.tag("1.0", Some("docker.io")), TagLookup::Found(digest(2)));
        assert_eq!(view.tag("2.0", None), TagLookup::Found(digest(3)));
        assert_eq!(view.tag("3.0", None), TagLookup::Unknown);
        view.add_tag("1.0".into(), None, digest(4));
        assert_eq!(view.tag("1.0", Some("a.example")), TagLookup::Found(digest(4)));
    }

    #[test]
    fn pages_follow_last_and_n() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let page = |n, last: Option<&str>| paginate(names.iter(), &Page { n, last: last.map(String::from) });
        assert_eq!(page(Some(2), None), (vec!["a".to_string(), "b".to_string()], true));
        assert_eq!(page(Some(2), Some("b")), (vec!["c".to_string(), "d".to_string()], false));
        assert_eq!(page(None, Some("c")), (vec!["d".to_string()], false));
        assert_eq!(page(Some(0), None), (vec![], true));
    }
}
