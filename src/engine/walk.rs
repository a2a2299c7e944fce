//! The graph walk: from top-level artifacts to every manifest, config and layer they need,
//! expanding bundles into their lock entries (recursively), deduplicated by digest.
//!
//! Manifests are fetched a frontier at a time with bounded parallelism, so the whole plan,
//! with every size, is known before any layer byte moves. Content addressing makes a true cycle
//! of bundles impossible; a bundle met again is simply already known.
//!
//! Nothing here recurses over the graph, and the walk refuses, as integrity problems, manifests
//! nested deeper than [`MAX_NESTING_DEPTH`] (AR-R14) and artifacts whose sizes do not add up
//! within [`MAX_BLOB_SIZE`](crate::model::manifest::MAX_BLOB_SIZE) (AR-R13), so every reader of a graph (verify, import, inspect,
//! export) refuses the same hostile ones and no later sum can wrap.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::beside::{Beside, MoreArtifacts};
use super::bundle::{BundleContent, is_bundle_config, read_bundle};
use super::pool::run_all;
use crate::model::manifest::{MAX_NESTING_DEPTH, SizeOverflow, checked_total};
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

    /// The human tag a root gets where it is copied or imported (spec/imgpkg.md, as imgpkg gives
    /// it): set when the root was named by tag alone or by a BundleLock with a tag, or recorded
    /// so in an archive's `index.json`. A root named by digest has none, even `REPO:TAG@DIGEST`.
    pub fn root_tag(&self) -> Option<String> {
        // An ImagesLock entry never gets one, whatever an archive of an earlier version (which
        // gave `REPO:TAG@DIGEST` entries their tag) recorded.
        if !self.is_root || self.annotations.contains_key(crate::model::annotations::LOCK_POSITION) {
            return None;
        }
        self.annotations.get(crate::model::annotations::ROOT_TAG).cloned()
    }

    /// Gives a root the human tag imgpkg gives it (see [`Artifact::root_tag`]).
    pub fn set_root_tag(&mut self, tag: Option<String>) {
        match tag {
            Some(tag) => self.annotations.insert(crate::model::annotations::ROOT_TAG.into(), tag),
            None => self.annotations.remove(crate::model::annotations::ROOT_TAG),
        };
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
    /// Every name a message only summarises (`a, b and 39998 more`), for `--json`.
    pub details: Vec<String>,
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
    /// Manifests in an order where every manifest comes after all manifests it points at: a
    /// depth-first post-order over digests, with an explicit stack (a hostile graph may nest
    /// far deeper than a thread's stack; AR-R14).
    pub fn manifests_children_first(&self) -> Vec<&RawManifest> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        // (digest, whether its children are already on the stack above it)
        let mut stack: Vec<(Digest, bool)> = Vec::new();
        for digest in self.manifests.keys() {
            stack.push((*digest, false));
            while let Some((digest, expanded)) = stack.pop() {
                let Some(manifest) = self.manifests.get(&digest) else { continue };
                if expanded {
                    out.push(manifest);
                    continue;
                }
                if !seen.insert(digest) {
                    continue;
                }
                stack.push((digest, true));
                // Reversed, so the first child is visited first, as a recursive walk would.
                let children = manifest.children();
                stack.extend(
                    children.iter().rev().filter(|child| !seen.contains(&child.digest)).map(|c| (c.digest, false)),
                );
            }
        }
        out
    }

    /// How many manifests the longest chain from each manifest down holds (itself counted).
    fn chain_lengths(&self) -> BTreeMap<Digest, usize> {
        let mut lengths = BTreeMap::new();
        for manifest in self.manifests_children_first() {
            let below = manifest.children().iter().filter_map(|child| lengths.get(&child.digest)).max().copied();
            lengths.insert(manifest.digest(), 1 + below.unwrap_or(0));
        }
        lengths
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

    /// Bytes of an artifact with everything it references, each blob once; an error when they
    /// do not add up within [`MAX_BLOB_SIZE`](crate::model::manifest::MAX_BLOB_SIZE) (forged sizes, AR-R13).
    pub fn artifact_bytes(&self, artifact: &Artifact) -> Result<u64, SizeOverflow> {
        checked_total(&|| format!("artifact {}", artifact.label()), self.closure(&artifact.descriptor))
    }

    /// Bytes of every top-level artifact with everything it references, each artifact counted
    /// on its own: what the content would take without deduplication. Checked like
    /// [`Graph::artifact_bytes`].
    pub fn checked_bytes_without_dedup(&self) -> Result<u64, SizeOverflow> {
        let totals = self
            .artifacts
            .iter()
            .map(|artifact| Ok((artifact.label(), self.artifact_bytes(artifact)?)))
            .collect::<Result<Vec<_>, SizeOverflow>>()?;
        checked_total(&|| "all artifacts together".to_string(), totals)
    }

    /// [`Graph::checked_bytes_without_dedup`] for a statistic: the walk already made a graph
    /// whose sizes overflow a problem (AR-R13), so for a graph without problems this is exact;
    /// otherwise it saturates, never wraps.
    pub fn bytes_without_dedup(&self) -> u64 {
        self.checked_bytes_without_dedup().unwrap_or(u64::MAX)
    }

    /// The artifact entry for a digest, if it is top-level.
    pub fn artifact(&self, digest: &Digest) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.descriptor.digest == *digest)
    }

    fn problem(&mut self, subject: Option<Digest>, message: String, integrity: bool) {
        self.problems.push(Problem { subject, message, integrity, details: Vec::new() });
    }
}

/// Walks from `roots`; see the module documentation.
pub fn walk(source: &dyn Source, roots: Vec<Artifact>, options: &WalkOptions) -> Graph {
    walk_passes(source, roots, options, None)
}

/// [`walk`], asking `more` about every manifest as soon as it is known, on `options.workers`
/// workers beside the walk (spec/archive.md AR-RF1); the artifacts it gives are walked the same
/// way, until it gives none. Its answers are taken in the order asked, so timing never changes
/// the graph. The first answer that is a problem (in that order) ends the walk, unless the walk
/// has problems of its own, which are reported instead.
pub fn walk_with(source: &dyn Source, roots: Vec<Artifact>, options: &WalkOptions, more: &dyn MoreArtifacts) -> Graph {
    let beside = Beside::new(more);
    std::thread::scope(|scope| {
        let _closing = beside.start(scope, options.workers);
        walk_passes(source, roots, options, Some(&beside))
    })
}

/// The walk, pass by pass: each pass walks the artifacts the pass before found beside it.
fn walk_passes(source: &dyn Source, roots: Vec<Artifact>, options: &WalkOptions, beside: Option<&Beside>) -> Graph {
    let mut graph = Graph::default();
    let mut known_artifacts: HashSet<(Digest, Option<String>)> = HashSet::new();
    let mut pending = roots;
    loop {
        let mut fresh = Vec::new();
        for artifact in pending {
            if known_artifacts.insert((artifact.descriptor.digest, artifact.ref_name.clone())) {
                fresh.push(artifact);
            }
        }
        if fresh.is_empty() {
            break;
        }
        walk_artifacts(source, &mut graph, fresh, &mut known_artifacts, options, beside);
        let Some(beside) = beside else { break };
        if !graph.problems.is_empty() {
            beside.give_up();
            break;
        }
        match beside.answers().into_iter().collect::<Result<Vec<Vec<Artifact>>, Problem>>() {
            Ok(found) => pending = found.into_iter().flatten().collect(),
            Err(problem) => {
                graph.problems.push(problem);
                break;
            }
        }
    }
    check_nesting(&mut graph);
    check_totals(&mut graph);
    graph
}

/// Walks `pending_artifacts` (and the lock entries of the bundles among them) into `graph`.
fn walk_artifacts(
    source: &dyn Source,
    graph: &mut Graph,
    mut pending_artifacts: Vec<Artifact>,
    known_artifacts: &mut HashSet<(Digest, Option<String>)>,
    options: &WalkOptions,
    beside: Option<&Beside>,
) {
    // Each round holds the bundles' lock entries of the round before: one bundle level deeper.
    let mut bundle_depth = 0;
    // Manifests read while resolving lock entries, taken by the next round instead of a GET.
    let mut prefetched: HashMap<Digest, RawManifest> = HashMap::new();
    // Lock references already resolved, by name: a bundle nested in another often lists the
    // same images, which are then not asked for again.
    let mut resolved: HashMap<String, Descriptor> = HashMap::new();
    while !pending_artifacts.is_empty() {
        bundle_depth += 1;
        if bundle_depth > MAX_NESTING_DEPTH {
            for artifact in std::mem::take(&mut pending_artifacts) {
                let message = format!(
                    "{} is a lock entry of bundles nested {bundle_depth} deep, past the limit of {MAX_NESTING_DEPTH} (AR-R14)",
                    artifact.label()
                );
                graph.problem(Some(artifact.descriptor.digest), message, true);
            }
            break;
        }
        let new_artifacts = std::mem::take(&mut pending_artifacts);
        let first_index = graph.artifacts.len();
        let tops: Vec<(Descriptor, usize)> =
            new_artifacts.iter().enumerate().map(|(i, a)| (a.descriptor.clone(), first_index + i)).collect();
        graph.artifacts.extend(new_artifacts);
        fetch_manifests(source, graph, tops, options, beside, &mut prefetched);
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
        // Each config once, however many images share it.
        let mut unique: Vec<&Descriptor> = Vec::new();
        let mut seen: HashSet<Digest> = HashSet::new();
        for (_, config) in &candidates {
            if seen.insert(config.digest) {
                unique.push(config);
            }
        }
        let read = run_all(&unique, options.workers, false, |config| source.small_blob(config));
        let configs: HashMap<Digest, Result<bool, StoreError>> = unique
            .iter()
            .zip(read)
            .map(|(config, result)| {
                let bundle = result
                    .expect("run_all without stop runs every job")
                    .and_then(|bytes| is_bundle_config(config, &bytes));
                (config.digest, bundle)
            })
            .collect();
        for (i, config) in &candidates {
            match &configs[&config.digest] {
                Ok(true) => graph.artifacts[*i].is_bundle = true,
                Ok(false) => {}
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
                let entries =
                    expand_bundle(source, graph, i, known_artifacts, options.workers, &mut prefetched, &mut resolved);
                pending_artifacts.extend(entries);
            }
        }
    }
}

/// AR-R14 for the longest chain, whichever manifests `index.json` lists at the top: the
/// manifest heading a chain one longer than the limit is a problem (the walk's own depth limit
/// only sees depths from the entries it started at).
fn check_nesting(graph: &mut Graph) {
    let too_long: Vec<Digest> = graph
        .chain_lengths()
        .into_iter()
        .filter(|&(_, length)| length == MAX_NESTING_DEPTH + 1)
        .map(|(digest, _)| digest)
        .collect();
    for digest in too_long {
        let message = format!(
            "manifest {digest} heads a chain of {} nested manifests, past the limit of {MAX_NESTING_DEPTH} (AR-R14)",
            MAX_NESTING_DEPTH + 1
        );
        graph.problem(Some(digest), message, true);
    }
}

/// AR-R13: the sizes of everything the graph names (each digest once, at the largest size any
/// descriptor gives it) add up within [`MAX_BLOB_SIZE`](crate::model::manifest::MAX_BLOB_SIZE).
/// Every artifact's closure is a part of that, so no per-artifact total, plan or archive layout
/// built from a graph without problems can wrap; checked in one pass, not once per artifact.
fn check_totals(graph: &mut Graph) {
    let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
    let descriptors = graph
        .artifacts
        .iter()
        .map(|artifact| &artifact.descriptor)
        .chain(graph.manifests.values().flat_map(RawManifest::children));
    for descriptor in descriptors {
        let size = sizes.entry(descriptor.digest).or_insert(0);
        *size = (*size).max(descriptor.size);
    }
    if let Err(overflow) = checked_total(&|| "everything the archive's artifacts reference".to_string(), sizes) {
        graph.problem(None, overflow.to_string(), true);
    }
}

/// Reads a bundle's lock and returns its entries not yet known as artifacts.
fn expand_bundle(
    source: &dyn Source,
    graph: &mut Graph,
    index: usize,
    known: &mut HashSet<(Digest, Option<String>)>,
    workers: usize,
    prefetched: &mut HashMap<Digest, RawManifest>,
    resolved: &mut HashMap<String, Descriptor>,
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
    // One request per lock entry another bundle did not already list, `workers` at a time; the
    // answers are taken in the lock's order. A manifest named by digest comes with its answer
    // where the source can give it.
    let names: Vec<String> = content.entries.iter().map(|entry| entry.reference.to_string()).collect();
    let asked: Vec<&super::LockEntry> =
        content.entries.iter().zip(&names).filter(|(_, name)| !resolved.contains_key(*name)).map(|(e, _)| e).collect();
    let mut answers =
        run_all(&asked, workers, false, |entry| source.resolve_with_manifest(&entry.reference)).into_iter();
    for (entry, name) in content.entries.iter().zip(names) {
        let answer = match resolved.get(&name) {
            Some(descriptor) => Ok((descriptor.clone(), None)),
            None => answers.next().flatten().expect("run_all without stop runs every job"),
        };
        match answer {
            Ok((descriptor, manifest)) => {
                resolved.insert(name.clone(), descriptor.clone());
                if let Some(manifest) = manifest.filter(|_| !graph.manifests.contains_key(&descriptor.digest)) {
                    prefetched.insert(descriptor.digest, manifest);
                }
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
        let message = format!(
            "bundle {} lists {} image(s) that {} does not hold: {}",
            bundle.label(),
            missing.len(),
            source.name(),
            first_few(&missing)
        );
        graph.problems.push(Problem { subject: Some(digest), message, integrity: false, details: missing });
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
/// records configs and layers. `tops` are the top-level artifacts' descriptors with their
/// places in `graph.artifacts`; each manifest fetched is handed to `beside` as soon as it is
/// known, with the artifact through which it was first reached.
fn fetch_manifests(
    source: &dyn Source,
    graph: &mut Graph,
    tops: Vec<(Descriptor, usize)>,
    options: &WalkOptions,
    beside: Option<&Beside>,
    prefetched: &mut HashMap<Digest, RawManifest>,
) {
    // Each manifest to fetch, with the artifact (its place) it is fetched for.
    let mut frontier: Vec<(Descriptor, usize)> = Vec::new();
    let mut queued: HashSet<Digest> = HashSet::new();
    for (descriptor, owner) in tops {
        if !graph.manifests.contains_key(&descriptor.digest) && queued.insert(descriptor.digest) {
            frontier.push((descriptor, owner));
        }
    }
    // Breadth first, so every manifest of the frontier is at `depth` (AR-R14).
    let mut depth = 1;
    while !frontier.is_empty() {
        // Manifests already read (with their lock entries) are taken as they are; the rest fetched.
        let mut fetched: Vec<Option<Result<RawManifest, StoreError>>> =
            frontier.iter().map(|(descriptor, _)| prefetched.remove(&descriptor.digest).map(Ok)).collect();
        let missing: Vec<usize> = (0..frontier.len()).filter(|&i| fetched[i].is_none()).collect();
        let answers = run_all(&missing, options.workers, false, |&i| source.manifest(&frontier[i].0));
        for (i, answer) in missing.into_iter().zip(answers) {
            fetched[i] = answer;
        }
        let mut next = Vec::new();
        for ((descriptor, owner), result) in frontier.iter().zip(fetched) {
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
            if let Some(beside) = beside {
                beside.ask(&graph.artifacts[*owner], descriptor.digest);
            }
            for child in children {
                if is_index || media::is_manifest_kind(&child.media_type) {
                    if !graph.manifests.contains_key(&child.digest) && queued.insert(child.digest) {
                        next.push((child, *owner));
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
        depth += 1;
        if depth > MAX_NESTING_DEPTH {
            for (child, _) in &next {
                let message = format!(
                    "manifest {} is nested {depth} deep, past the limit of {MAX_NESTING_DEPTH} (AR-R14)",
                    child.digest
                );
                graph.problem(Some(child.digest), message, true);
            }
            break;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::MAX_BLOB_SIZE;
    use crate::store::memory::MemorySource;

    fn index_of(child: &Descriptor) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [child],
        }))
        .unwrap()
    }

    /// An image manifest with a real config and layers of the given declared sizes.
    fn image(source: &mut MemorySource, layer_sizes: &[u64]) -> Descriptor {
        let config = source.insert(b"{}".to_vec());
        let layers: Vec<Descriptor> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Descriptor::new(media::OCI_LAYER_GZIP, crate::model::sha256_digest(&[i as u8]), size))
            .collect();
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": Descriptor::new(media::OCI_CONFIG, config, 2), "layers": layers,
        }))
        .unwrap();
        let size = bytes.len() as u64;
        Descriptor::new(media::OCI_MANIFEST, source.insert(bytes), size)
    }

    /// A chain of `length` indexes over one image; the descriptors from the top down.
    fn chain(source: &mut MemorySource, length: usize) -> Vec<Descriptor> {
        let mut chain = vec![image(source, &[1])];
        for _ in 0..length {
            let bytes = index_of(chain.last().unwrap());
            let size = bytes.len() as u64;
            chain.push(Descriptor::new(media::OCI_INDEX, source.insert(bytes), size));
        }
        chain.reverse();
        chain
    }

    fn depth_problems(graph: &Graph) -> Vec<&Problem> {
        graph.problems.iter().filter(|p| p.message.contains("AR-R14")).collect()
    }

    /// AR-R14: nesting up to the limit walks; one more is an integrity problem naming the depth
    /// and the digest, found from the top alone or with every 8th manifest listed at the top.
    #[test]
    fn nesting_past_the_limit_is_refused() {
        let mut source = MemorySource::new();
        let fits = chain(&mut source, MAX_NESTING_DEPTH - 1);
        let graph = walk(&source, vec![Artifact::new(fits[0].clone())], &WalkOptions::default());
        assert!(graph.problems.is_empty(), "{:?}", graph.problems);

        let deep = chain(&mut source, MAX_NESTING_DEPTH);
        let graph = walk(&source, vec![Artifact::new(deep[0].clone())], &WalkOptions::default());
        let problems = depth_problems(&graph);
        assert_eq!(problems.len(), 1, "{:?}", graph.problems);
        assert!(problems[0].integrity && problems[0].subject == Some(deep[MAX_NESTING_DEPTH].digest));
        assert!(problems[0].message.contains(&format!("nested {} deep", MAX_NESTING_DEPTH + 1)), "{problems:?}");
    }

    /// AR-R14: a chain of 30,000 indexes (deeper than a
    /// recursive walk of a test thread's stack goes), with every 8th listed at the top so the walk fetches
    /// all of it, is refused, and ordering it children first does not recurse.
    #[test]
    fn a_very_deep_chain_listed_in_parts_neither_recurses_nor_passes() {
        let mut source = MemorySource::new();
        let deep = chain(&mut source, 30_000);
        let tops = deep.iter().step_by(8).map(|d| Artifact::new(d.clone())).collect();
        let graph = walk(&source, tops, &WalkOptions::default());
        assert_eq!(graph.manifests.len(), deep.len());
        assert!(!depth_problems(&graph).is_empty(), "{:?}", graph.problems.first());
        let ordered = graph.manifests_children_first();
        assert_eq!(ordered.len(), deep.len());
        assert_eq!(ordered[0].digest(), deep[deep.len() - 1].digest, "the image comes first");
    }

    /// AR-R13: sizes that each fit the int64 but add up past it are an integrity problem naming
    /// a descriptor; totals are never wrapped.
    #[test]
    fn sizes_that_add_up_past_the_int64_are_refused() {
        let mut source = MemorySource::new();
        let huge = image(&mut source, &[MAX_BLOB_SIZE - 1, MAX_BLOB_SIZE - 1]);
        let graph = walk(&source, vec![Artifact::new(huge.clone())], &WalkOptions::default());
        let problem = graph.problems.iter().find(|p| p.message.contains("AR-R13")).expect("a size problem");
        assert!(problem.integrity && problem.message.contains("sha256:"), "{problem:?}");
        assert!(graph.artifact_bytes(&graph.artifacts[0]).is_err());
        assert_eq!(graph.bytes_without_dedup(), u64::MAX, "saturates, never wraps");
    }
}
