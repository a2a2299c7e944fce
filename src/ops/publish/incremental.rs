//! Import cost that follows what the target lacks (spec/cli.md "import", IM-1 and IM-2; issue 14
//! item 1): what the target repository already holds, asked for top down, and the checks of an
//! archive that read only what will be sent.
//!
//! A manifest the target holds by digest has its whole subtree there (a registry refuses a
//! manifest whose blobs are missing), so nothing under it is read, hashed or asked for. Each
//! other blob is asked for once; [`KnownTarget`] carries the answers to publishing, whose sink
//! then sends no second `HEAD` ([`KnownSink`]). Every blob that will be pushed is hashed by
//! [`verify_to_push`] before anything is pushed, so failing closed stays true for what is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;

use crate::engine::{Graph, Items, Reporter, run_all};
use crate::model::{Descriptor, Digest, RawManifest, Repository};
use crate::ops::archive::Archive;
use crate::ops::publish::relocate::{PublishError, TagPlan};
use crate::ops::verify::{Unhashed, check_graph};
use crate::store::layout_tar::header::Trailer;
use crate::store::registry::{RegistryClient, RegistryErrorKind, RegistrySink, RegistrySource};
use crate::store::{BlobReader, Plan, Sink, Source, StoreError};

/// What the target repository holds of a graph, as far as an import needs to know.
#[derive(Debug, Clone, Default)]
pub struct KnownTarget {
    /// Manifests the target holds by digest.
    pub manifests_present: BTreeSet<Digest>,
    /// Blobs under a present manifest: known there without asking.
    pub blobs_implied: BTreeSet<Digest>,
    /// Blobs asked for and found.
    pub blobs_found: BTreeSet<Digest>,
    /// Blobs asked for and missing: these are sent.
    pub blobs_missing: BTreeSet<Digest>,
}

impl KnownTarget {
    /// Whether the target is known to hold `digest` (a blob or a manifest).
    pub fn holds(&self, digest: &Digest) -> bool {
        self.manifests_present.contains(digest)
            || self.blobs_implied.contains(digest)
            || self.blobs_found.contains(digest)
    }

    /// Narrows a plan of the whole graph to what must be sent: the missing blobs and manifests.
    pub fn narrow(&self, plan: &mut Plan) {
        plan.blobs.retain(|blob| !self.holds(&blob.descriptor.digest));
        plan.manifests.retain(|manifest| !self.manifests_present.contains(&manifest.digest()));
    }

    /// Blobs the target held (implied or found).
    pub fn blobs_present(&self) -> u64 {
        (self.blobs_implied.len() + self.blobs_found.len()) as u64
    }
}

/// How far [`probe_target`] trusts the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A manifest held by digest vouches for its subtree (IM-2).
    ManifestsFirst,
    /// Every blob is asked for: the target was found holding a manifest whose blobs it lacks
    /// (blobs deleted under it), so its manifests vouch for nothing.
    EveryBlob,
}

/// Asks `repository` for the graph's manifests top down, then for each blob not under a
/// present manifest (IM-2). Any answer other than "there" or "not there" is an error.
pub fn probe_target(
    graph: &Graph,
    client: &Arc<RegistryClient>,
    repository: &Repository,
    probe: Probe,
    workers: usize,
    reporter: &dyn Reporter,
) -> Result<KnownTarget, StoreError> {
    let target = RegistrySource::new(Arc::clone(client));
    let mut known = KnownTarget::default();
    let mut asked: BTreeSet<Digest> = BTreeSet::new();
    let mut level: Vec<Digest> = match probe {
        Probe::ManifestsFirst => graph.artifacts.iter().map(|artifact| artifact.descriptor.digest).collect(),
        Probe::EveryBlob => Vec::new(),
    };
    while !level.is_empty() {
        level.retain(|digest| graph.manifests.contains_key(digest) && asked.insert(*digest));
        let answers = run_all(&level, workers, true, |digest| manifest_present(&target, repository, digest));
        let mut next = Vec::new();
        for (digest, answer) in level.iter().zip(answers) {
            match answer {
                Some(Ok(true)) => {
                    known.manifests_present.insert(*digest);
                }
                Some(Ok(false)) => next.extend(child_manifests(&graph.manifests[digest], graph)),
                Some(Err(err)) => return Err(err),
                None => {}
            }
        }
        level = next;
    }
    for digest in &known.manifests_present {
        let manifest = &graph.manifests[digest];
        for (below, _) in graph.closure(&manifest.descriptor()) {
            if graph.blobs.contains_key(&below) {
                known.blobs_implied.insert(below);
            }
        }
    }
    let to_ask: Vec<Descriptor> = graph
        .blobs
        .iter()
        .filter(|(digest, _)| !known.blobs_implied.contains(digest))
        .map(|(_, (descriptor, _))| descriptor.clone())
        .collect();
    reporter.phase("asking the target", Items::blobs(to_ask.len()), 0);
    let sink = RegistrySink::new(Arc::clone(client), repository.clone());
    let answers = run_all(&to_ask, workers, true, |descriptor| sink.has_blob(descriptor));
    for (descriptor, answer) in to_ask.iter().zip(answers) {
        match answer {
            Some(Ok(true)) => known.blobs_found.insert(descriptor.digest),
            Some(Ok(false)) => known.blobs_missing.insert(descriptor.digest),
            Some(Err(err)) => return Err(err),
            None => false,
        };
    }
    Ok(known)
}

/// `HEAD` of a manifest by digest in `repository`: there or not.
fn manifest_present(target: &RegistrySource, repository: &Repository, digest: &Digest) -> Result<bool, StoreError> {
    match target.resolve(&repository.at_digest(*digest)) {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(err) => Err(err),
    }
}

/// The manifests a manifest points at (an index's children) that the graph holds.
fn child_manifests(manifest: &RawManifest, graph: &Graph) -> Vec<Digest> {
    manifest.children().into_iter().map(|child| child.digest).filter(|d| graph.manifests.contains_key(d)).collect()
}

/// IM-1: the checks of an archive that read no blob: its structure, `index.json`, every
/// manifest (read through `reader` and verified) and every referenced blob present with its
/// size. Returns the failures (empty when sound), the warnings and the walked graph.
pub fn check_structure(archive: &Archive, reader: &dyn Source, workers: usize) -> (Vec<String>, Vec<String>, Graph) {
    let stored = archive.stored_blobs();
    let (deviations, trailer) = match archive {
        Archive::Layout(layout) => (layout.deviations(), layout.trailer()),
        Archive::Imgpkg(_) => (&[][..], Trailer::FERRYS),
    };
    let unhashed = Unhashed { index: archive.index(), index_bytes: archive.index_bytes(), deviations, trailer };
    let mut failures = BTreeMap::new();
    let mut warnings = Vec::new();
    let graph = check_graph(reader, unhashed, &stored, workers, &mut failures, &mut warnings);
    (failures.into_values().collect(), warnings, graph)
}

/// IM-1: reads every blob in `digests` to its end through `reader`'s verifying reader, before
/// anything is pushed; returns every failure, not only the first.
pub fn verify_to_push(
    graph: &Graph,
    reader: &dyn Source,
    digests: &BTreeSet<Digest>,
    workers: usize,
    reporter: &dyn Reporter,
) -> Vec<String> {
    let descriptors: Vec<&Descriptor> =
        digests.iter().filter_map(|digest| graph.blobs.get(digest)).map(|(descriptor, _)| descriptor).collect();
    let bytes = descriptors.iter().map(|d| d.size).fold(0, u64::saturating_add);
    reporter.phase("hashing what will be sent", Items::blobs(descriptors.len()), bytes);
    let outcomes = run_all(&descriptors, workers, false, |descriptor| {
        let mut blob = reader.blob(descriptor)?;
        let read = io::copy(&mut blob, &mut io::sink())
            .map_err(|e| StoreError::io(format!("{}: reading blob {}", reader.name(), descriptor.digest), e))?;
        reporter.bytes(read);
        Ok::<(), StoreError>(())
    });
    outcomes.into_iter().filter_map(|outcome| outcome.and_then(Result::err)).map(|err| err.to_string()).collect()
}

/// Whether publishing failed because the target refused a manifest for a blob it lacks: the
/// sign of a target whose manifests do not vouch for their blobs ([`Probe::EveryBlob`]).
pub fn is_blob_unknown(err: &PublishError) -> bool {
    let unknown = |err: &StoreError| match err {
        StoreError::Registry(remote) => matches!(
            &remote.kind,
            RegistryErrorKind::Status { code: Some(code), .. } if code == "MANIFEST_BLOB_UNKNOWN" || code == "BLOB_UNKNOWN"
        ),
        _ => false,
    };
    match err {
        PublishError::Store(err) => unknown(err),
        PublishError::Transfer(err) => err.failures.iter().any(unknown),
        PublishError::Mismatch { .. } => false,
    }
}

/// A registry sink that answers "do you hold this blob?" from what [`probe_target`] learned,
/// so no blob is asked for twice (IM-2); everything else is the registry sink's.
pub struct KnownSink<'a> {
    pub inner: &'a mut RegistrySink,
    pub known: &'a KnownTarget,
}

impl Sink for KnownSink<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn prepare(&mut self, plan: &Plan) -> Result<(), StoreError> {
        self.inner.prepare(plan)
    }

    fn has_blob(&self, descriptor: &Descriptor) -> Result<bool, StoreError> {
        if self.known.holds(&descriptor.digest) {
            return Ok(true);
        }
        if self.known.blobs_missing.contains(&descriptor.digest) {
            return Ok(false);
        }
        self.inner.has_blob(descriptor)
    }

    fn link_blob(&self, descriptor: &Descriptor) -> Result<bool, StoreError> {
        self.inner.link_blob(descriptor)
    }

    fn put_blob(&self, descriptor: &Descriptor, reader: &mut BlobReader<'_>) -> Result<(), StoreError> {
        self.inner.put_blob(descriptor, reader)
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<(), StoreError> {
        self.inner.put_manifest(manifest)
    }

    fn finish(&mut self, plan: &Plan) -> Result<(), StoreError> {
        self.inner.finish(plan)
    }
}

/// The tags of `tags` that `repository` already points at their manifest (one `HEAD` each):
/// they need no push and have been checked (spec/cli.md "import" step 4 holds for them).
pub(crate) fn tags_in_place(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    tags: &[TagPlan],
    workers: usize,
) -> Result<BTreeSet<String>, StoreError> {
    let target = RegistrySource::new(Arc::clone(client));
    let answers = run_all(tags, workers, true, |tag| match target.resolve(&repository.at_tag(&tag.tag)) {
        Ok(found) => Ok(found.digest == tag.manifest.digest()),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(err) => Err(err),
    });
    let mut in_place = BTreeSet::new();
    for (tag, answer) in tags.iter().zip(answers) {
        match answer {
            Some(Ok(true)) => {
                in_place.insert(tag.tag.clone());
            }
            Some(Ok(false)) | None => {}
            Some(Err(err)) => return Err(err),
        }
    }
    Ok(in_place)
}
