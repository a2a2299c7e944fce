//! Signatures, attestations, SBOMs and OCI 1.1 referrers as ordinary artifacts (spec/archive.md
//! "Referrers"): found at export by the store's [`ReferrerLookup`] for every manifest of the
//! walk, as soon as the walk knows it and beside the rest of the walk, to a bounded depth, and walked into the graph as top-level artifacts annotated with
//! what they refer to (AR-RF1, AR-RF2); counted for summaries; and, at import and copy, tied to
//! their subjects again in the target (AR-RF3): cosign's tags, and the referrers tag-schema
//! index merged with what the target already lists where it has no referrers API.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use ureq::http::Method;

use crate::engine::{Artifact, Graph, MoreArtifacts, Problem, WalkOptions, walk, walk_with};
use crate::model::referrers::{
    COSIGN_SIMPLE_SIGNING, DSSE_ENVELOPE, MAX_REFERRER_DEPTH, ReferrerKind, parse_cosign_tag, schema_tag,
};
use crate::model::{Descriptor, Digest, ManifestKind, RawManifest, Repository, annotations, media};
use crate::store::Source;
use crate::store::StoreError;
use crate::store::referrers::{FoundReferrer, LookupMemo, ReferrerLookup};
use crate::store::registry::{Operation, RegistryClient, RegistrySink, RegistrySource, RequestBody};

/// Which referrers an export carries (`--referrers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReferrerChoice {
    /// Everything found (the default).
    #[default]
    All,
    /// Signatures only (cosign `.sig` tags and signature referrers).
    Signatures,
    /// None: only the artifacts themselves (ferry before issue 15, skopeo, imgpkg by default).
    None,
}

impl ReferrerChoice {
    fn carries(self, kind: ReferrerKind) -> bool {
        match self {
            ReferrerChoice::All => true,
            ReferrerChoice::Signatures => kind == ReferrerKind::Signature,
            ReferrerChoice::None => false,
        }
    }
}

/// Finds referrers for a walk: the hook [`crate::engine::walk_with`] asks about each manifest
/// as soon as it is known, on the workers it runs beside the walk.
pub struct Discovery<'a> {
    lookup: &'a dyn ReferrerLookup,
    choice: ReferrerChoice,
    /// Tag listings and what each registry answered, shared by every lookup.
    memo: LookupMemo,
    /// How far each referrer is from an artifact that is not one (1: a signature of an image),
    /// as of the walk's last pass: what lookups rely on while they run beside the next one.
    settled: RwLock<HashMap<Digest, usize>>,
    /// The same, found by the lookups of the pass under way; merged by [`MoreArtifacts::settle`],
    /// so a lookup never sees what another of its pass found first (timing changes nothing).
    found: Mutex<HashMap<Digest, usize>>,
}

impl<'a> Discovery<'a> {
    /// Discovery in `source`, if it can hold referrers and `choice` wants any.
    pub fn of(source: &'a dyn Source, choice: ReferrerChoice) -> Option<Self> {
        if choice == ReferrerChoice::None {
            return None;
        }
        let lookup = source.referrer_lookup()?;
        Some(Discovery {
            lookup,
            choice,
            memo: LookupMemo::default(),
            settled: RwLock::new(HashMap::new()),
            found: Mutex::new(HashMap::new()),
        })
    }

    fn settled_depth(&self, digest: &Digest) -> usize {
        self.settled.read().expect("depth lock").get(digest).copied().unwrap_or(0)
    }
}

impl MoreArtifacts for Discovery<'_> {
    /// The referrers of `manifest` as new artifacts, looked for in the repository of `owner`.
    fn more(&self, owner: &Artifact, manifest: &Digest) -> Result<Vec<Artifact>, Problem> {
        let Some(original) = &owner.original else { return Ok(Vec::new()) };
        let level = self.settled_depth(&owner.descriptor.digest);
        // A referrer's own referrers are asked about through the referrer itself; the other
        // manifests a referrer reaches (its subject, an index's children) belong to a lower
        // level, and were asked about there.
        if level >= MAX_REFERRER_DEPTH || self.settled_depth(manifest) != level {
            return Ok(Vec::new());
        }
        let found = self.lookup.referrers_of(original, manifest, &self.memo).map_err(|err| Problem {
            subject: None,
            message: format!("looking for signatures, attestations, SBOMs and referrers: {err}"),
            integrity: err.is_integrity(),
            details: Vec::new(),
        })?;
        let mut artifacts = Vec::new();
        let mut depths = self.found.lock().expect("depth lock");
        for referrer in found.into_iter().filter(|found| self.choice.carries(found.kind)) {
            let entry = depths.entry(referrer.descriptor.digest).or_insert(level + 1);
            *entry = (*entry).min(level + 1);
            artifacts.push(referrer_artifact(referrer));
        }
        Ok(artifacts)
    }

    fn settle(&self) {
        let found = std::mem::take(&mut *self.found.lock().expect("depth lock"));
        let mut settled = self.settled.write().expect("depth lock");
        for (digest, level) in found {
            let entry = settled.entry(digest).or_insert(level);
            *entry = (*entry).min(level);
        }
    }
}

/// The engine's walk from `roots`, with the referrers `choice` wants found for every manifest
/// (when `source` can hold any) and walked in too.
pub fn walk_with_referrers(
    source: &dyn Source,
    roots: Vec<Artifact>,
    options: &WalkOptions,
    choice: ReferrerChoice,
) -> Graph {
    match Discovery::of(source, choice) {
        Some(discovery) => walk_with(source, roots, options, &discovery),
        None => walk(source, roots, options),
    }
}

/// A found referrer as a top-level artifact, with the annotations that tie it to its subject.
fn referrer_artifact(found: FoundReferrer) -> Artifact {
    let mut artifact =
        Artifact::new(Descriptor::new(&found.descriptor.media_type, found.descriptor.digest, found.descriptor.size));
    artifact.ref_name = Some(found.reference.to_string());
    artifact.original = Some(found.reference);
    artifact.annotations.insert(annotations::REFERRER_OF.into(), found.subject.to_string());
    if let Some(tag) = found.tag {
        artifact.annotations.insert(annotations::REFERRER_TAG.into(), tag);
    }
    artifact
}

/// The subject an artifact refers to, if it is a referrer.
pub fn subject_of(artifact: &Artifact) -> Option<Digest> {
    artifact.annotations.get(annotations::REFERRER_OF).and_then(|text| text.parse().ok())
}

/// Whether an artifact is a referrer (carried for another one, not named by the user).
pub fn is_referrer(artifact: &Artifact) -> bool {
    artifact.annotations.contains_key(annotations::REFERRER_OF)
}

/// What a referrer is: by its cosign tag, else its manifest's `artifactType`, config media
/// type or layers.
pub fn kind_of(artifact: &Artifact, manifest: Option<&RawManifest>) -> ReferrerKind {
    if let Some((_, kind)) = artifact.annotations.get(annotations::REFERRER_TAG).and_then(|tag| parse_cosign_tag(tag)) {
        return kind;
    }
    let Some(manifest) = manifest else { return ReferrerKind::Other };
    if let Some(artifact_type) = artifact_type(manifest) {
        return ReferrerKind::of_artifact_type(&artifact_type);
    }
    match manifest.kind() {
        ManifestKind::Image(image) => {
            if image.layers.iter().any(|layer| layer.media_type == COSIGN_SIMPLE_SIGNING) {
                ReferrerKind::Signature
            } else if image.layers.iter().any(|layer| layer.media_type == DSSE_ENVELOPE) {
                ReferrerKind::Attestation
            } else {
                ReferrerKind::of_artifact_type(&image.config.media_type)
            }
        }
        ManifestKind::Index(_) => ReferrerKind::Other,
    }
}

/// A manifest's `artifactType`, or its config's media type when that is not an image config.
pub fn artifact_type(manifest: &RawManifest) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "artifactType")]
        artifact_type: Option<String>,
    }
    let typed = serde_json::from_slice::<Typed>(manifest.bytes()).ok().and_then(|typed| typed.artifact_type);
    typed.or_else(|| match manifest.kind() {
        ManifestKind::Image(image)
            if image.config.media_type != media::OCI_CONFIG
                && image.config.media_type != media::DOCKER_CONFIG
                && image.config.media_type != "application/vnd.oci.empty.v1+json" =>
        {
            Some(image.config.media_type.clone())
        }
        _ => None,
    })
}

/// One referrer of an artifact, as `inspect` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerInfo {
    pub kind: ReferrerKind,
    pub digest: Digest,
    /// The cosign tag it travels under, if any.
    pub tag: Option<String>,
    pub artifact_type: Option<String>,
    /// An attestation's predicate types (its layers' `predicateType` annotations).
    pub predicate_types: Vec<String>,
}

/// The referrers of every subject in `graph`, each once per subject, by digest: one pass over
/// the artifacts (asking per subject would be quadratic, minutes for an archive of 100,000).
pub fn referrers_by_subject(graph: &Graph) -> HashMap<Digest, Vec<ReferrerInfo>> {
    let mut by_subject: HashMap<Digest, BTreeMap<Digest, ReferrerInfo>> = HashMap::new();
    for artifact in &graph.artifacts {
        let Some(subject) = subject_of(artifact) else { continue };
        let out = by_subject.entry(subject).or_default();
        let manifest = graph.manifests.get(&artifact.descriptor.digest);
        let predicate_types = match manifest.map(RawManifest::kind) {
            Some(ManifestKind::Image(image)) => image
                .layers
                .iter()
                .filter_map(|layer| layer.annotations.get(crate::model::referrers::PREDICATE_TYPE_ANNOTATION).cloned())
                .collect(),
            _ => Vec::new(),
        };
        out.entry(artifact.descriptor.digest).or_insert_with(|| ReferrerInfo {
            kind: kind_of(artifact, manifest),
            digest: artifact.descriptor.digest,
            tag: artifact.annotations.get(annotations::REFERRER_TAG).cloned(),
            artifact_type: manifest.and_then(artifact_type),
            predicate_types,
        });
    }
    by_subject.into_iter().map(|(subject, referrers)| (subject, referrers.into_values().collect())).collect()
}

/// How many referrers of each kind a graph carries, for summaries (`--json` too).
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerCounts {
    pub signatures: usize,
    pub attestations: usize,
    pub sboms: usize,
    /// Other OCI 1.1 referrers.
    pub other_referrers: usize,
}

impl ReferrerCounts {
    /// Each referrer digest once.
    pub fn of(graph: &Graph) -> Self {
        let mut kinds: BTreeMap<Digest, ReferrerKind> = BTreeMap::new();
        for artifact in graph.artifacts.iter().filter(|artifact| is_referrer(artifact)) {
            let kind = kind_of(artifact, graph.manifests.get(&artifact.descriptor.digest));
            kinds.insert(artifact.descriptor.digest, kind);
        }
        let mut counts = ReferrerCounts::default();
        for kind in kinds.values() {
            match kind {
                ReferrerKind::Signature => counts.signatures += 1,
                ReferrerKind::Attestation => counts.attestations += 1,
                ReferrerKind::Sbom => counts.sboms += 1,
                ReferrerKind::Other => counts.other_referrers += 1,
            }
        }
        counts
    }

    pub fn total(&self) -> usize {
        self.signatures + self.attestations + self.sboms + self.other_referrers
    }
}

/// The OCI 1.1 referrers of the graph (those without a cosign tag), by subject: what the
/// target's referrers API or tag-schema index must list after an import (AR-RF3).
fn api_referrers(graph: &Graph) -> BTreeMap<Digest, BTreeMap<Digest, Descriptor>> {
    let mut out: BTreeMap<Digest, BTreeMap<Digest, Descriptor>> = BTreeMap::new();
    for artifact in &graph.artifacts {
        let Some(subject) = subject_of(artifact) else { continue };
        if artifact.annotations.contains_key(annotations::REFERRER_TAG) {
            continue;
        }
        let Some(manifest) = graph.manifests.get(&artifact.descriptor.digest) else { continue };
        let mut descriptor = manifest.descriptor();
        descriptor.artifact_type = artifact_type(manifest);
        descriptor.annotations = match manifest.kind() {
            ManifestKind::Image(image) => image.annotations.clone(),
            ManifestKind::Index(index) => index.annotations.clone(),
        };
        out.entry(subject).or_default().insert(descriptor.digest, descriptor);
    }
    out
}

/// After the push (AR-RF3): for each subject with OCI 1.1 referrers, a target with a referrers
/// API has indexed them from their `subject` field; a target without one (it answers 404) gets
/// the tag-schema index `sha256-<hex>`, merged with the index already there (never replacing
/// what it lists). Returns the schema tags written.
pub fn publish_schema_indexes(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    graph: &Graph,
) -> Result<Vec<String>, StoreError> {
    let target = RegistrySource::new(Arc::clone(client));
    let sink = RegistrySink::new(Arc::clone(client), repository.clone());
    let mut written = Vec::new();
    for (subject, ours) in api_referrers(graph) {
        if target_has_api(client, repository, &subject)? {
            continue;
        }
        let tag = schema_tag(&subject);
        let mut listed: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        let mut order: Vec<Digest> = Vec::new();
        match target.resolve(&repository.at_tag(&tag)) {
            Ok(descriptor) => {
                if let ManifestKind::Index(index) = target.manifest(&descriptor)?.kind() {
                    for child in &index.manifests {
                        if listed.insert(child.digest, child.clone()).is_none() {
                            order.push(child.digest);
                        }
                    }
                }
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(err) => return Err(err),
        }
        let before = order.len();
        for (digest, descriptor) in ours {
            if listed.insert(digest, descriptor).is_none() {
                order.push(digest);
            }
        }
        if order.len() == before && before > 0 {
            continue;
        }
        let manifests: Vec<&Descriptor> = order.iter().map(|digest| &listed[digest]).collect();
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests,
        }))
        .expect("descriptors serialise");
        let index = RawManifest::parse(bytes, Some(media::OCI_INDEX))
            .map_err(|source| StoreError::Manifest { store: repository.to_string(), source })?;
        sink.put_tag(&tag, &index)?;
        written.push(tag);
    }
    Ok(written)
}

/// Whether the target answers the referrers API (anything but 404; distribution-spec 1.1).
fn target_has_api(client: &RegistryClient, repository: &Repository, subject: &Digest) -> Result<bool, StoreError> {
    let op = Operation {
        registry: repository.registry.clone(),
        repository: repository.path.clone(),
        what: format!("listing the referrers of {subject}"),
        scopes: vec![format!("repository:{}:pull,push", repository.path)],
    };
    let url = format!("{}/v2/{}/referrers/{subject}", client.base_url(&repository.registry), repository.path);
    let response = client.send(&op, Method::GET, &url, &[], RequestBody::Empty, true).map_err(StoreError::from)?;
    Ok(response.status() != 404)
}
