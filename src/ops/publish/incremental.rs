//! Import cost that follows what the target lacks (spec/cli.md "import", IM-1 and IM-2; issue 14
//! item 1): what the target repository already holds, asked for top down, and the checks of an
//! archive that read only what will be sent.
//!
//! A manifest the target holds by digest has its whole subtree there (a registry refuses a
//! manifest whose blobs are missing), so nothing under it is read, hashed or asked for. Each
//! other blob is asked for once; [`KnownTarget`] carries the answers to publishing, whose sink
//! then asks no second time ([`KnownSink`]). Every blob that will be pushed is hashed by
//! [`verify_to_push`] before anything is pushed, so failing closed stays true for what is sent.
//!
//! A small blob is asked for by opening its upload (IM-3, [`RegistrySink::probe_blob`]): the
//! session a missing blob's question opened is carried to publishing and used by its upload,
//! and cancelled if the import ends before sending it ([`cancel_uploads`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex};

use crate::engine::{Graph, Items, Reporter, run_all};
use crate::model::{Descriptor, Digest, RawManifest, Repository};
use crate::ops::archive::Archive;
use crate::ops::publish::relocate::{PublishError, TagPlan};
use crate::ops::verify::{Unhashed, check_graph};
use crate::store::layout_tar::header::Trailer;
use crate::store::registry::{BlobProbe, RegistryClient, RegistryErrorKind, RegistrySink, RegistrySource};
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
    /// Upload sessions (their `Location`) that asking for missing blobs opened (IM-3): each
    /// blob's upload uses its own; whatever is not sent must be [`cancel_uploads`]ed.
    pub uploads_opened: BTreeMap<Digest, String>,
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
/// present manifest (IM-2), a small one by opening its upload (IM-3). Any answer other than
/// "there" or "not there" is an error (and the sessions opened until then are cancelled).
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
    let answers = run_all(&to_ask, workers, true, |descriptor| sink.probe_blob(descriptor));
    let mut failure = None;
    for (descriptor, answer) in to_ask.iter().zip(answers) {
        match answer {
            Some(Ok(BlobProbe::Present)) => {
                known.blobs_found.insert(descriptor.digest);
            }
            Some(Ok(BlobProbe::Missing { upload })) => {
                known.blobs_missing.insert(descriptor.digest);
                if let Some(upload) = upload {
                    known.uploads_opened.insert(descriptor.digest, upload);
                }
            }
            Some(Err(err)) => failure = failure.or(Some(err)),
            None => {}
        };
    }
    if let Some(err) = failure {
        cancel_uploads(client, repository, known.uploads_opened.into_values().collect(), workers);
        return Err(err);
    }
    Ok(known)
}

/// Cancels upload sessions opened by asking (IM-3) that will not be sent, `workers` at a time,
/// best effort (a registry also expires forgotten sessions).
pub fn cancel_uploads(client: &Arc<RegistryClient>, repository: &Repository, uploads: Vec<String>, workers: usize) {
    if uploads.is_empty() {
        return;
    }
    let sink = RegistrySink::new(Arc::clone(client), repository.clone());
    run_all(&uploads, workers, false, |upload| {
        sink.cancel_upload(upload);
        Ok::<(), ()>(())
    });
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
    let (deviations, trailer, imgpkg) = match archive {
        Archive::Layout(layout) => (layout.deviations(), layout.trailer(), false),
        Archive::Imgpkg(_) => (&[][..], Trailer::FERRYS, true),
    };
    let unhashed = Unhashed { index: archive.index(), index_bytes: archive.index_bytes(), deviations, trailer, imgpkg };
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
/// so no blob is asked for twice (IM-2), and uploads a blob into the session its question
/// opened (IM-3); everything else is the registry sink's.
pub struct KnownSink<'a> {
    inner: &'a mut RegistrySink,
    known: &'a KnownTarget,
    /// Sessions not yet used; each is taken once, so a blob whose upload is restarted (RF-2)
    /// opens a new one.
    uploads: Mutex<BTreeMap<Digest, String>>,
}

impl<'a> KnownSink<'a> {
    pub fn new(inner: &'a mut RegistrySink, known: &'a KnownTarget) -> Self {
        KnownSink { inner, known, uploads: Mutex::new(known.uploads_opened.clone()) }
    }

    /// The sessions no upload used (publishing stopped early), to [`cancel_uploads`].
    pub fn unused_uploads(&self) -> Vec<String> {
        std::mem::take(&mut *self.uploads.lock().unwrap_or_else(|e| e.into_inner())).into_values().collect()
    }
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
        let opened = self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(&descriptor.digest);
        match opened {
            Some(upload) => self.inner.put_blob_in(descriptor, reader, upload),
            None => self.inner.put_blob(descriptor, reader),
        }
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<(), StoreError> {
        self.inner.put_manifest(manifest)
    }

    fn takes_manifests_concurrently(&self) -> bool {
        self.inner.takes_manifests_concurrently()
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
    let plans: Vec<&TagPlan> = tags.iter().collect();
    let now = tags_now(client, repository, &plans, workers)?;
    let in_place = tags.iter().zip(now).filter(|(tag, now)| *now == Some(tag.manifest.digest()));
    Ok(in_place.map(|(tag, _)| tag.tag.clone()).collect())
}

/// What each of `tags` points at in `repository` now (one `HEAD` each, `workers` at a time):
/// `None` where the tag does not exist.
pub(crate) fn tags_now(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    tags: &[&TagPlan],
    workers: usize,
) -> Result<Vec<Option<Digest>>, StoreError> {
    let target = RegistrySource::new(Arc::clone(client));
    let answers = run_all(tags, workers, true, |tag| match target.resolve(&repository.at_tag(&tag.tag)) {
        Ok(found) => Ok(Some(found.digest)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    });
    let mut now = Vec::with_capacity(tags.len());
    for answer in answers {
        match answer {
            Some(Ok(digest)) => now.push(digest),
            None => now.push(None),
            Some(Err(err)) => return Err(err),
        }
    }
    Ok(now)
}
