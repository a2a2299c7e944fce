//! Publishing a walked graph into one repository the imgpkg way (spec/imgpkg.md "Import: one
//! repository, imgpkg's tags, the ImageLocations record"): every blob and manifest, `sha256-<hex>.imgpkg` tags on every
//! top-level artifact and the root's own tag, one ImageLocations record per bundle, every tag read
//! back and compared, and the `--lock-output` file. Shared by `import` (from an archive) and
//! `copy` (from a registry); the caller has already checked the graph.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::engine::{
    Artifact, Graph, NoReport, Reporter, TransferError, TransferOptions, build_plan, run_all, transfer,
};
use crate::model::layout::LayoutIndex;
use crate::model::lock::{BundleLock, ImageRef, ImagesLock};
use crate::model::{Digest, RawManifest, Repository, annotations};
use crate::ops::bundle::locations;
use crate::ops::publish::incremental::{KnownSink, KnownTarget, cancel_uploads};
pub use crate::ops::publish::tag_names::TagScheme;
use crate::store::memory::MemorySource;
use crate::store::registry::{RegistryClient, RegistrySink, RegistrySource};
use crate::store::user_file::write_user_file;
use crate::store::{Plan, Source, StoreError};

/// What publishing into a repository did.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    pub blobs_uploaded: u64,
    pub blobs_present: u64,
    /// Blobs mounted from another repository of the same registry instead of uploaded.
    pub blobs_mounted: u64,
    pub bytes_uploaded: u64,
    pub manifests: u64,
    /// Manifests the target held by digest (their subtrees were not read; spec/cli.md IM-2).
    pub manifests_present: u64,
    /// Blobs the target held that were not read from the source (IM-2).
    pub blobs_not_read: u64,
    pub bytes_not_read: u64,
    pub tags: Vec<String>,
    /// Signature, attestation and SBOM tags (cosign's `sha256-<hex>.sig|.att|.sbom`) that
    /// pointed at another manifest in the target and now point at the archive's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replaced_tags: Vec<ReplacedTag>,
    pub locations_records: usize,
    pub lock_output: Option<String>,
}

/// A tag the publication moved off a manifest the target had under it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplacedTag {
    pub tag: String,
    /// What the tag pointed at before: no longer tagged, so a registry may collect it.
    pub previous: Digest,
    pub now: Digest,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error("after the push, {reference} points at {actual}, not {expected} ({what})")]
    Mismatch { reference: String, expected: Digest, actual: Digest, what: String },
}

impl PublishError {
    pub fn is_integrity(&self) -> bool {
        match self {
            PublishError::Store(err) => err.is_integrity(),
            PublishError::Transfer(err) => err.is_integrity(),
            PublishError::Mismatch { .. } => false,
        }
    }
}

/// How to publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    pub transfer: TransferOptions,
    /// Write a BundleLock (a root bundle) or ImagesLock (image roots) here.
    pub lock_output: Option<PathBuf>,
    /// Repositories of the target's registry that hold blobs, by digest: those blobs are
    /// mounted (distribution-spec cross-repository mount) instead of uploaded.
    pub mount_sources: HashMap<Digest, String>,
    /// What the target is already known to hold (an import asked first, IM-2): only the rest
    /// is sent, and no blob is asked for again.
    pub known: Option<KnownTarget>,
    /// How the top-level artifacts' `.imgpkg` tags are named (`--repo-based-tags`).
    pub tag_scheme: TagScheme,
}

/// Copies everything in `graph` from `source` into `repository`, then tags, records and checks.
pub fn publish(
    source: &dyn Source,
    graph: &Graph,
    client: &Arc<RegistryClient>,
    repository: &Repository,
    options: &PublishOptions,
    reporter: &dyn Reporter,
) -> Result<Publication, PublishError> {
    // AR-R17: an import has refused such an archive already; a copy is refused here, before
    // anything is pushed (the tag would name whichever manifest went last).
    if let Some((_, message)) = tag_conflicts(graph, options.tag_scheme).into_iter().next() {
        return Err(PublishError::Store(StoreError::Invalid { store: repository.to_string(), reason: message }));
    }
    let mut plan = build_plan(graph);
    let mut sink = RegistrySink::new(Arc::clone(client), repository.clone());
    sink.mount_from(options.mount_sources.clone());
    let artifact_tags = artifact_tags(graph, options.tag_scheme);
    // IM-2: after asking first, a tag already pointing at its manifest is neither pushed again
    // (a manifest PUT makes the registry check every blob it names) nor read back twice.
    let in_place = match &options.known {
        Some(_) => crate::ops::publish::incremental::tags_in_place(
            client,
            repository,
            &artifact_tags,
            options.transfer.workers,
        )?,
        None => Default::default(),
    };
    let to_push: Vec<&TagPlan> = artifact_tags.iter().filter(|tag| !in_place.contains(&tag.tag)).collect();
    // Asked only to say so: a registry that will not answer these HEADs does not stop the import.
    let replaced_tags =
        signature_tags_replaced(client, repository, &to_push, options.transfer.workers).unwrap_or_else(|err| {
            reporter.warn(&format!("could not check which signature tags the import moves: {err}"));
            Vec::new()
        });
    for replaced in &replaced_tags {
        reporter.warn(&format!(
            "{repository}:{} pointed at {}; the archive's {} replaces it, and the target's manifest is no longer \
             tagged (a registry may collect it)",
            replaced.tag, replaced.previous, replaced.now
        ));
    }
    let known = options.known.clone().unwrap_or_default();
    known.narrow(&mut plan);
    let mut known_sink = KnownSink::new(&mut sink, &known);
    let sent = transfer(source, &mut known_sink, &plan, &options.transfer, reporter);
    // IM-3: a session the asking opened and no upload used (publishing stopped early).
    cancel_uploads(client, repository, known_sink.unused_uploads(), options.transfer.workers);
    let stats = sent?;
    let workers = options.transfer.workers;
    push_tags(&sink, &to_push, workers)?;
    let bytes_not_read = graph
        .blobs
        .iter()
        .filter(|(digest, _)| known.holds(digest))
        .map(|(_, (descriptor, _))| descriptor.size)
        .fold(0, u64::saturating_add);

    // One ImageLocations record per bundle, pushed and tagged after everything it lists.
    let (records, record_plan, record_blobs) = locations_plan(graph);
    let mut record_sink = RegistrySink::new(Arc::clone(client), repository.clone());
    let record_stats = transfer(&record_blobs, &mut record_sink, &record_plan, &options.transfer, &NoReport)?;
    push_tags(&record_sink, &records.iter().collect::<Vec<_>>(), workers)?;

    // OCI 1.1 referrers are tied to their subjects by the target's API, else its tag schema.
    let schema_tags = crate::ops::referrers::publish_schema_indexes(client, repository, graph)?;
    check_tags(client, repository, &to_push.into_iter().chain(&records).collect::<Vec<_>>(), workers)?;
    let lock_output = match &options.lock_output {
        Some(file) => Some(write_lock(file, repository, graph)?),
        None => None,
    };
    let mut tags: Vec<String> = artifact_tags.iter().chain(&records).map(|t| t.tag.clone()).collect();
    tags.extend(schema_tags);
    tags.sort();
    tags.dedup();
    Ok(Publication {
        blobs_uploaded: stats.blobs_copied + record_stats.blobs_copied,
        blobs_present: known.blobs_present() + stats.blobs_skipped + record_stats.blobs_skipped,
        blobs_mounted: stats.blobs_linked + record_stats.blobs_linked,
        bytes_uploaded: stats.bytes_copied + record_stats.bytes_copied,
        manifests: stats.manifests + record_stats.manifests,
        manifests_present: known.manifests_present.len() as u64,
        blobs_not_read: known.blobs_present(),
        bytes_not_read,
        tags,
        replaced_tags,
        locations_records: graph.bundles.len(),
        lock_output,
    })
}

/// One tag to write: the name and the manifest it points at, with what it is for messages.
/// `serve --repo` answers the same tags (spec/serve.md SV-2).
pub(crate) struct TagPlan {
    pub(crate) tag: String,
    pub(crate) manifest: RawManifest,
    pub(crate) what: String,
}

/// imgpkg's tags: `sha256-<hex>.imgpkg` (or as `scheme` names it) on every top-level artifact,
/// and the root's tag on the root (spec/imgpkg.md "Import").
pub(crate) fn artifact_tags(graph: &Graph, scheme: TagScheme) -> Vec<TagPlan> {
    let mut tags: BTreeMap<String, TagPlan> = BTreeMap::new();
    for plan in every_artifact_tag(graph, scheme) {
        // A digest tag goes to its own artifact; a root's or referrer's tag wins over it.
        if plan.tag.ends_with(".imgpkg") && tags.contains_key(&plan.tag) {
            continue;
        }
        tags.insert(plan.tag.clone(), plan);
    }
    tags.into_values().collect()
}

/// Each artifact's tags in the graph's order, every claim kept (one tag may come twice).
fn every_artifact_tag(graph: &Graph, scheme: TagScheme) -> Vec<TagPlan> {
    let mut tags = Vec::new();
    for artifact in &graph.artifacts {
        let Some(manifest) = graph.manifests.get(&artifact.descriptor.digest) else { continue };
        let what = artifact.label();
        // A referrer keeps the tie it came with (spec/archive.md AR-RF3), not imgpkg's tag.
        if crate::ops::referrers::is_referrer(artifact) {
            if let Some(tag) = artifact.annotations.get(annotations::REFERRER_TAG) {
                tags.push(TagPlan { tag: tag.clone(), manifest: manifest.clone(), what });
            }
            continue;
        }
        let digest_tag = scheme.tag(&artifact.descriptor.digest, artifact.original.as_ref());
        tags.push(TagPlan { tag: digest_tag, manifest: manifest.clone(), what: what.clone() });
        if let Some(tag) = artifact.root_tag() {
            tags.push(TagPlan { tag, manifest: manifest.clone(), what });
        }
    }
    tags
}

/// AR-R17: every tag an import of `graph` would point at two different manifests (a root's tag
/// naming another artifact's `sha256-<hex>.imgpkg` tag, a bundle's ImageLocations record or a
/// referrer's cosign tag, or two roots with one tag), each as the tag and what it would name.
/// Whichever was pushed last would win, so what inspect shows would not be what the target holds.
pub(crate) fn tag_conflicts(graph: &Graph, scheme: TagScheme) -> Vec<(String, String)> {
    let (records, _, _) = locations_plan(graph);
    let claimed = every_artifact_tag(graph, scheme);
    let mut first_claims: BTreeMap<&str, &TagPlan> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for plan in claimed.iter().chain(&records) {
        let first = *first_claims.entry(plan.tag.as_str()).or_insert(plan);
        if first.manifest.digest() != plan.manifest.digest() {
            let message = format!("tag {} would name both {} and {} (AR-R17)", plan.tag, first.what, plan.what);
            conflicts.push((plan.tag.clone(), message));
        }
    }
    conflicts
}

/// The record images of every bundle, as a plan over an in-memory source.
pub(crate) fn locations_plan(graph: &Graph) -> (Vec<TagPlan>, Plan, MemorySource) {
    let mut blobs = MemorySource::new();
    let mut tags = Vec::new();
    let mut manifests = Vec::new();
    let mut planned = Vec::new();
    for (bundle, content) in &graph.bundles {
        let entries: Vec<(String, bool)> = content
            .entries
            .iter()
            .map(|entry| {
                let is_bundle = entry
                    .reference
                    .digest
                    .and_then(|digest| graph.artifact(&digest))
                    .is_some_and(|artifact| artifact.is_bundle);
                // Listed as imgpkg lists it: `REPO:TAG@DIGEST` as `REPO@DIGEST`.
                let listed = entry.reference.digest_form().unwrap_or_else(|| entry.reference.to_string());
                (listed, is_bundle)
            })
            .collect();
        let image = locations::build(&entries, &mut blobs);
        let what = format!("image locations of bundle {bundle}");
        tags.push(TagPlan { tag: locations::record_tag(bundle), manifest: image.manifest.clone(), what: what.clone() });
        let own_tag = format!("{}.imgpkg", image.manifest.digest().tag_form());
        tags.push(TagPlan { tag: own_tag, manifest: image.manifest.clone(), what });
        planned.extend(image.blobs);
        manifests.push(image.manifest);
    }
    planned.sort_by_key(|blob| blob.descriptor.digest);
    planned.dedup_by_key(|blob| blob.descriptor.digest);
    manifests.sort_by_key(|manifest| manifest.digest());
    manifests.dedup_by_key(|manifest| manifest.digest());
    let plan =
        Plan { index: LayoutIndex::new(Vec::new(), BTreeMap::new()), manifests, blobs: planned, omitted: Vec::new() };
    (tags, plan, blobs)
}

/// The cosign tags among `to_push` that the target has pointing at another manifest: pushing
/// moves them, and what they named (the target's own signatures of that image) is no longer
/// tagged. cosign keeps one manifest per tag, so the two cannot both stay under it.
fn signature_tags_replaced(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    to_push: &[&TagPlan],
    workers: usize,
) -> Result<Vec<ReplacedTag>, StoreError> {
    let cosign: Vec<&TagPlan> =
        to_push.iter().copied().filter(|plan| crate::model::referrers::parse_cosign_tag(&plan.tag).is_some()).collect();
    if cosign.is_empty() {
        return Ok(Vec::new());
    }
    let now = crate::ops::publish::incremental::tags_now(client, repository, &cosign, workers)?;
    let replaced = cosign.into_iter().zip(now).filter_map(|(plan, previous)| {
        let ours = plan.manifest.digest();
        previous.filter(|previous| *previous != ours).map(|previous| ReplacedTag {
            tag: plan.tag.clone(),
            previous,
            now: ours,
        })
    });
    Ok(replaced.collect())
}

/// Points every tag at its manifest (all already pushed), `workers` requests at a time: an
/// import's tags are one request each, and a delta's or a re-import's time is mostly theirs.
fn push_tags(sink: &RegistrySink, tags: &[&TagPlan], workers: usize) -> Result<(), PublishError> {
    first_failure(run_all(tags, workers, true, |tag| sink.put_tag(&tag.tag, &tag.manifest)))
}

/// Resolves every tag in the target (`workers` at a time) and compares it with what was pushed.
fn check_tags(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    tags: &[&TagPlan],
    workers: usize,
) -> Result<(), PublishError> {
    let target = RegistrySource::new(Arc::clone(client));
    first_failure(run_all(tags, workers, true, |tag| {
        let reference = repository.at_tag(&tag.tag);
        let found = target.resolve(&reference)?;
        if found.digest != tag.manifest.digest() {
            return Err(PublishError::Mismatch {
                reference: reference.to_string(),
                expected: tag.manifest.digest(),
                actual: found.digest,
                what: tag.what.clone(),
            });
        }
        Ok(())
    }))
}

/// The first failure, in the order of the items (the same error whatever the timing).
fn first_failure<E: Into<PublishError>>(answers: Vec<Option<Result<(), E>>>) -> Result<(), PublishError> {
    answers.into_iter().flatten().find_map(Result::err).map_or(Ok(()), |err| Err(err.into()))
}

/// `--lock-output`: a BundleLock when the archive's root is a bundle, else an ImagesLock of its
/// roots, each rewritten to `REPO@sha256:..` (spec/imgpkg.md "Import").
fn write_lock(file: &Path, repository: &Repository, graph: &Graph) -> Result<String, PublishError> {
    let mut roots: Vec<_> = graph.artifacts.iter().filter(|artifact| artifact.is_root).collect();
    let text = match roots.as_slice() {
        [root] if root.is_bundle => {
            BundleLock::new(repository.at_digest(root.descriptor.digest).to_string(), root.root_tag()).to_yaml()
        }
        _ => {
            // An ImagesLock input's order and annotations, as recorded at export (AR-6).
            let position = |artifact: &Artifact| {
                artifact.annotations.get(annotations::LOCK_POSITION).and_then(|p| p.parse::<usize>().ok())
            };
            roots.sort_by_key(|artifact| position(artifact).unwrap_or(usize::MAX));
            ImagesLock::new(
                roots
                    .iter()
                    .map(|root| ImageRef {
                        annotations: root
                            .annotations
                            .get(annotations::LOCK_ANNOTATIONS)
                            .and_then(|json| serde_json::from_str(json).ok())
                            .unwrap_or_default(),
                        image: repository.at_digest(root.descriptor.digest).to_string(),
                    })
                    .collect(),
            )
            .to_yaml()
        }
    };
    write_private(file, &text).map_err(|e| StoreError::io(format!("writing {}", file.display()), e))?;
    Ok(file.display().to_string())
}

/// Lock files are written with mode 0600, as imgpkg writes them (spec/cli.md "import"), over
/// an existing file too, and never through a link, FIFO or device ([`write_user_file`]).
pub(crate) fn write_private(file: &Path, text: &str) -> std::io::Result<()> {
    write_user_file(file, text, true)
}
