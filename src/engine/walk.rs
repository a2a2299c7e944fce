//! The graph walk: from top-level artifacts to every manifest, config and layer they need,
//! expanding bundles into their lock entries (recursively), deduplicated by digest.
//!
//! Manifests are fetched a frontier at a time with bounded parallelism, so the whole plan,
//! with every size, is known before any layer byte moves. Content addressing makes a true cycle
//! of bundles impossible; a bundle met again is simply already known.

use std::collections::{BTreeMap, HashSet};

use super::bundle::{BundleContent, is_bundle_config, read_bundle};
use super::pool::run_all;
use crate::model::{Descriptor, Digest, ManifestKind, RawManifest, Reference, media};
use crate::store::{BlobRole, Source, StoreError};

/// A top-level artifact: something a user can name (the root, a lock entry, a nested bundle).
#[derive(Debug, Clone)]
pub struct Artifact {
    pub descriptor: Descriptor,
    /// The reference it came from, normalised (a lock entry's own `image`).
    pub original: Option<Reference>,
    /// The name it has in `index.json` (`org.opencontainers.image.ref.name`).
    pub ref_name: Option<String>,
    pub is_root: bool,
    pub is_bundle: bool,
    /// The bundles whose locks list it (by digest).
    pub listed_by: Vec<Digest>,
    /// Annotations to keep from where it was found (a source layout's `index.json`).
    pub annotations: BTreeMap<String, String>,
}

impl Artifact {
    pub fn new(descriptor: Descriptor) -> Self {
        Artifact {
            descriptor,
            original: None,
            ref_name: None,
            is_root: false,
            is_bundle: false,
            listed_by: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// The tag a root was named by (imgpkg gives it to the copy too): its reference's tag, or
    /// what an archive's `index.json` recorded of it.
    pub fn root_tag(&self) -> Option<String> {
        if !self.is_root {
            return None;
        }
        self.annotations
            .get(crate::model::annotations::ROOT_TAG)
            .cloned()
            .or_else(|| self.original.as_ref().and_then(|original| original.tag.clone()))
    }

    /// A short way to name it in messages.
    pub fn label(&self) -> String {
        match (&self.original, &self.ref_name) {
            (Some(original), _) => original.to_string(),
            (None, Some(name)) => format!("{name} ({})", self.descriptor.digest),
            (None, None) => self.descriptor.digest.to_string(),
        }
    }
}

/// Something wrong found during a walk. `subject` is the digest it is about, if any.
#[derive(Debug, Clone)]
pub struct Problem {
    pub subject: Option<Digest>,
    pub message: String,
    pub integrity: bool,
}

/// Choices that change what a walk includes.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    pub workers: usize,
    pub include_non_distributable: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions { workers: 4, include_non_distributable: false }
    }
}

/// Everything reachable from the top-level artifacts.
#[derive(Debug, Default)]
pub struct Graph {
    pub artifacts: Vec<Artifact>,
    pub manifests: BTreeMap<Digest, RawManifest>,
    pub blobs: BTreeMap<Digest, (Descriptor, BlobRole)>,
    pub bundles: BTreeMap<Digest, BundleContent>,
    /// Non-distributable layers not carried.
    pub omitted: BTreeMap<Digest, Descriptor>,
    pub problems: Vec<Problem>,
}

impl Graph {
    /// Manifests in an order where every manifest comes after all manifests it points at.
    pub fn manifests_children_first(&self) -> Vec<&RawManifest> {
        fn visit<'a>(graph: &'a Graph, digest: Digest, seen: &mut HashSet<Digest>, out: &mut Vec<&'a RawManifest>) {
            if !seen.insert(digest) {
                return;
            }
            let Some(manifest) = graph.manifests.get(&digest) else {
                return;
            };
            for child in manifest.children() {
                visit(graph, child.digest, seen, out);
            }
            out.push(manifest);
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for digest in self.manifests.keys() {
            visit(self, *digest, &mut seen, &mut out);
        }
        out
    }

    /// Every manifest and blob digest reachable from `root` (itself included), with sizes.
    pub fn closure(&self, root: &Descriptor) -> BTreeMap<Digest, u64> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(root.digest, root.size)];
        while let Some((digest, size)) = stack.pop() {
            if out.insert(digest, size).is_some() {
                continue;
            }
            if let Some(manifest) = self.manifests.get(&digest) {
                stack.extend(manifest.children().into_iter().map(|child| (child.digest, child.size)));
            }
        }
        out
    }

    /// Bytes of every top-level artifact with everything it references, each artifact counted
    /// on its own: what the content would take without deduplication.
    pub fn bytes_without_dedup(&self) -> u64 {
        self.artifacts.iter().map(|artifact| self.closure(&artifact.descriptor).values().sum::<u64>()).sum()
    }

    /// The artifact entry for a digest, if it is top-level.
    pub fn artifact(&self, digest: &Digest) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.descriptor.digest == *digest)
    }

    fn problem(&mut self, subject: Option<Digest>, message: String, integrity: bool) {
        self.problems.push(Problem { subject, message, integrity });
    }
}

/// Walks from `roots`; see the module documentation.
pub fn walk(source: &dyn Source, roots: Vec<Artifact>, options: &WalkOptions) -> Graph {
    let mut graph = Graph::default();
    let mut known_artifacts: HashSet<(Digest, Option<String>)> = HashSet::new();
    let mut pending_artifacts = Vec::new();
    for root in roots {
        if known_artifacts.insert((root.descriptor.digest, root.ref_name.clone())) {
            pending_artifacts.push(root);
        }
    }
    while !pending_artifacts.is_empty() {
        let new_artifacts = std::mem::take(&mut pending_artifacts);
        let tops: Vec<Descriptor> = new_artifacts.iter().map(|a| a.descriptor.clone()).collect();
        let first_index = graph.artifacts.len();
        graph.artifacts.extend(new_artifacts);
        fetch_manifests(source, &mut graph, tops, options);
        // Only top-level image manifests can be bundles (a bundle is never an index child).
        let candidates: Vec<(usize, Descriptor)> = (first_index..graph.artifacts.len())
            .filter_map(|i| {
                let manifest = graph.manifests.get(&graph.artifacts[i].descriptor.digest)?;
                match manifest.kind() {
                    ManifestKind::Image(image) => Some((i, image.config.clone())),
                    ManifestKind::Index(_) => None,
                }
            })
            .collect();
        let configs = run_all(&candidates, options.workers, false, |(_, config)| source.small_blob(config));
        for ((i, config), result) in candidates.iter().zip(configs) {
            match result.expect("run_all without stop runs every job") {
                Ok(bytes) if is_bundle_config(&bytes) => graph.artifacts[*i].is_bundle = true,
                Ok(_) => {}
                Err(err) => {
                    let integrity = err.is_integrity();
                    graph.problem(
                        Some(config.digest),
                        format!("config of {}: {err}", graph.artifacts[*i].label()),
                        integrity,
                    );
                }
            }
        }
        for i in first_index..graph.artifacts.len() {
            if graph.artifacts[i].is_bundle {
                pending_artifacts.extend(expand_bundle(source, &mut graph, i, &mut known_artifacts));
            }
        }
    }
    graph
}

/// Reads a bundle's lock and returns its entries not yet known as artifacts.
fn expand_bundle(
    source: &dyn Source,
    graph: &mut Graph,
    index: usize,
    known: &mut HashSet<(Digest, Option<String>)>,
) -> Vec<Artifact> {
    let bundle = graph.artifacts[index].clone();
    let digest = bundle.descriptor.digest;
    if graph.bundles.contains_key(&digest) {
        return Vec::new();
    }
    let Some(ManifestKind::Image(image)) = graph.manifests.get(&digest).map(|m| m.kind().clone()) else {
        return Vec::new();
    };
    let content = match read_bundle(source, &image, &bundle.label()) {
        Ok(content) => content,
        Err(err) => {
            let integrity = err.is_integrity();
            graph.problem(Some(digest), err.to_string(), integrity);
            return Vec::new();
        }
    };
    let mut new = Vec::new();
    let mut missing = Vec::new();
    for entry in &content.entries {
        let name = entry.reference.to_string();
        match source.resolve(&entry.reference) {
            Ok(descriptor) => {
                if let Some(existing) = graph
                    .artifacts
                    .iter_mut()
                    .find(|a| a.descriptor.digest == descriptor.digest && a.ref_name.as_deref() == Some(&name))
                {
                    existing.listed_by.push(digest);
                    continue;
                }
                if known.insert((descriptor.digest, Some(name.clone()))) {
                    let mut artifact = Artifact::new(descriptor);
                    artifact.original = Some(entry.reference.clone());
                    artifact.ref_name = Some(name);
                    artifact.listed_by.push(digest);
                    new.push(artifact);
                } else if let Some(queued) =
                    new.iter_mut().find(|a: &&mut Artifact| a.ref_name.as_deref() == Some(&name))
                {
                    queued.listed_by.push(digest);
                }
            }
            Err(StoreError::NotFound { .. }) => missing.push(name),
            Err(err) => {
                let integrity = err.is_integrity();
                graph.problem(
                    entry.reference.digest,
                    format!("lock entry {name} of bundle {}: {err}", bundle.label()),
                    integrity,
                );
            }
        }
    }
    if !missing.is_empty() {
        graph.problem(
            Some(digest),
            format!(
                "bundle {} lists {} image(s) that {} does not hold: {}",
                bundle.label(),
                missing.len(),
                source.name(),
                first_few(&missing)
            ),
            false,
        );
    }
    graph.bundles.insert(digest, content);
    new
}

/// How many names a message lists before it only counts the rest.
const NAMES_SHOWN: usize = 5;

/// `a, b, c, d, e and 39995 more`: a message stays a line however many entries a lock has
/// (issue 17: 40,000 missing images once made one 3.5 MB line).
fn first_few(names: &[String]) -> String {
    let shown = names[..names.len().min(NAMES_SHOWN)].join(", ");
    match names.len().saturating_sub(NAMES_SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Fetches manifests a frontier at a time until every reachable manifest is known, and
/// records configs and layers.
fn fetch_manifests(source: &dyn Source, graph: &mut Graph, tops: Vec<Descriptor>, options: &WalkOptions) {
    let mut frontier: Vec<Descriptor> = Vec::new();
    let mut queued: HashSet<Digest> = HashSet::new();
    for descriptor in tops {
        if !graph.manifests.contains_key(&descriptor.digest) && queued.insert(descriptor.digest) {
            frontier.push(descriptor);
        }
    }
    while !frontier.is_empty() {
        let fetched = run_all(&frontier, options.workers, false, |descriptor| source.manifest(descriptor));
        let mut next = Vec::new();
        for (descriptor, result) in frontier.iter().zip(fetched) {
            let manifest = match result.expect("run_all without stop runs every job") {
                Ok(manifest) => manifest,
                Err(err) => {
                    let integrity = err.is_integrity() || matches!(err, StoreError::NotFound { .. });
                    graph.problem(Some(descriptor.digest), format!("manifest {}: {err}", descriptor.digest), integrity);
                    continue;
                }
            };
            let children: Vec<Descriptor> = manifest.children().into_iter().cloned().collect();
            let is_index = matches!(manifest.kind(), ManifestKind::Index(_));
            let config_digest = match manifest.kind() {
                ManifestKind::Image(image) => Some(image.config.digest),
                ManifestKind::Index(_) => None,
            };
            graph.manifests.insert(descriptor.digest, manifest);
            for child in children {
                if is_index || media::is_manifest_kind(&child.media_type) {
                    if !graph.manifests.contains_key(&child.digest) && queued.insert(child.digest) {
                        next.push(child);
                    }
                } else if Some(child.digest) == config_digest {
                    record_blob(graph, child, BlobRole::Config);
                } else if media::is_non_distributable(&child.media_type) && !options.include_non_distributable {
                    graph.omitted.insert(child.digest, child);
                } else {
                    record_blob(graph, child, BlobRole::Layer);
                }
            }
        }
        frontier = next;
    }
}

fn record_blob(graph: &mut Graph, descriptor: Descriptor, role: BlobRole) {
    let Some((existing, existing_role)) = graph.blobs.get_mut(&descriptor.digest) else {
        graph.blobs.insert(descriptor.digest, (descriptor, role));
        return;
    };
    // A digest used both as a config and a layer is carried once, among the configs.
    *existing_role = (*existing_role).min(role);
    if existing.size != descriptor.size {
        let message = format!(
            "blob {} is described with two sizes, {} and {} bytes",
            descriptor.digest, existing.size, descriptor.size
        );
        graph.problem(Some(descriptor.digest), message, true);
    }
}
