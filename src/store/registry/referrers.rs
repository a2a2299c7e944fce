//! Finding referrers in a registry (spec/archive.md AR-RF1): per repository, one tag listing
//! (cosign's `sha256-<hex>.sig|.att|.sbom` and the referrers tag schema's `sha256-<hex>`) and
//! the OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`) per digest, until a 404
//! says the registry has no such API (distribution 2.8 and 3.x); from then on, that registry's
//! referrers are read from the tag-schema index instead. Repositories are looked up in
//! parallel. A failure other than 404 is an error: a lookup that fails never reads as "none".

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ureq::http::Method;

use super::client::{Operation, RequestBody};
use super::source::RegistrySource;
use super::tags::list_tags;
use crate::model::manifest::MAX_MANIFEST_BYTES;
use crate::model::referrers::{COSIGN_SUFFIXES, ReferrerKind, cosign_tag, schema_tag};
use crate::model::{Descriptor, Digest, ManifestKind, RawManifest, Reference, Repository, media};
use crate::store::referrers::{FoundReferrer, ReferrerLookup};
use crate::store::{Source, StoreError};

/// What one repository's lookup found: referrers with the position of the artifact asking.
type RepositoryReferrers = Result<Vec<(usize, FoundReferrer)>, StoreError>;

/// Repositories looked up at once.
const PARALLEL_REPOSITORIES: usize = 8;

impl ReferrerLookup for RegistrySource {
    /// Grouped by the repository each artifact is read from, each repository's tags listed
    /// once, repositories in parallel.
    fn referrers_of(&self, wanted: &[(Reference, Vec<Digest>)]) -> Result<Vec<Vec<FoundReferrer>>, StoreError> {
        let mut by_repository: BTreeMap<Repository, Vec<(usize, Digest)>> = BTreeMap::new();
        for (position, (artifact, digests)) in wanted.iter().enumerate() {
            let repository = self.locate(artifact).repository;
            by_repository.entry(repository).or_default().extend(digests.iter().map(|d| (position, *d)));
        }
        let groups: Vec<(Repository, Vec<(usize, Digest)>)> = by_repository.into_iter().collect();
        // Registries known to lack the referrers API (answered 404): asked through tags only.
        let without_api: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<(usize, RepositoryReferrers)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..groups.len().min(PARALLEL_REPOSITORIES) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some((repository, digests)) = groups.get(i) else { break };
                        let result = self.referrers_in_repository(repository, digests, &without_api);
                        results.lock().expect("results lock").push((i, result));
                    }
                });
            }
        });
        let mut results = results.into_inner().expect("results lock");
        results.sort_by_key(|(i, _)| *i);
        let mut out = vec![Vec::new(); wanted.len()];
        for (_, result) in results {
            for (position, found) in result? {
                out[position].push(found);
            }
        }
        Ok(out)
    }
}

impl RegistrySource {
    fn referrers_in_repository(
        &self,
        repository: &Repository,
        digests: &[(usize, Digest)],
        without_api: &Mutex<HashSet<String>>,
    ) -> RepositoryReferrers {
        let tags: HashSet<String> =
            list_tags(self.client(), repository).map_err(StoreError::from)?.into_iter().collect();
        let mut found = Vec::new();
        for &(position, subject) in digests {
            for suffix in COSIGN_SUFFIXES {
                let tag = cosign_tag(&subject, suffix);
                if !tags.contains(&tag) {
                    continue;
                }
                let descriptor = self.resolve(&repository.at_tag(&tag))?;
                let reference = Reference {
                    repository: repository.clone(),
                    tag: Some(tag.clone()),
                    digest: Some(descriptor.digest),
                };
                let kind = ReferrerKind::of_suffix(suffix).expect("a cosign suffix");
                found.push((position, FoundReferrer { subject, descriptor, tag: Some(tag), kind, reference }));
            }
            let api_known_missing = without_api.lock().expect("api lock").contains(&repository.registry);
            let listed = if api_known_missing { None } else { self.referrers_api(repository, &subject)? };
            let descriptors = match listed {
                Some(descriptors) => descriptors,
                None => {
                    without_api.lock().expect("api lock").insert(repository.registry.clone());
                    if tags.contains(&schema_tag(&subject)) {
                        self.schema_index(repository, &subject)?
                    } else {
                        Vec::new()
                    }
                }
            };
            for descriptor in descriptors {
                self.remember(descriptor.digest, repository);
                let kind = ReferrerKind::of_artifact_type(descriptor.artifact_type.as_deref().unwrap_or_default());
                let reference = repository.at_digest(descriptor.digest);
                found.push((position, FoundReferrer { subject, descriptor, tag: None, kind, reference }));
            }
        }
        Ok(found)
    }

    /// `GET /v2/<name>/referrers/<digest>`: the descriptors of its index, or `None` when the
    /// registry answers 404 (it has no referrers API; distribution-spec 1.1 forbids a 404 from
    /// one that has).
    fn referrers_api(&self, repository: &Repository, subject: &Digest) -> Result<Option<Vec<Descriptor>>, StoreError> {
        let op = Operation {
            registry: repository.registry.clone(),
            repository: repository.path.clone(),
            what: format!("listing the referrers of {subject}"),
            scopes: vec![format!("repository:{}:pull", repository.path)],
        };
        let url =
            format!("{}/v2/{}/referrers/{subject}", self.client().base_url(&repository.registry), repository.path);
        let mut response = self
            .client()
            .send(&op, Method::GET, &url, &[("Accept", media::OCI_INDEX.to_string())], RequestBody::Empty, true)
            .map_err(StoreError::from)?;
        if response.status() == 404 {
            return Ok(None);
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST_BYTES)
            .read_to_vec()
            .map_err(|e| StoreError::from(op.error(super::agent::transport_kind(e))))?;
        let index = RawManifest::parse(bytes, Some(media::OCI_INDEX))
            .map_err(|source| StoreError::Manifest { store: repository.to_string(), source })?;
        match index.kind() {
            ManifestKind::Index(index) => Ok(Some(index.manifests.clone())),
            ManifestKind::Image(_) => Err(StoreError::Invalid {
                store: repository.to_string(),
                reason: format!("the referrers of {subject} are not an index"),
            }),
        }
    }

    /// The referrers tag schema: the index tagged `sha256-<hex>` lists the referrers of that
    /// digest.
    fn schema_index(&self, repository: &Repository, subject: &Digest) -> Result<Vec<Descriptor>, StoreError> {
        let descriptor = self.resolve(&repository.at_tag(&schema_tag(subject)))?;
        let manifest = self.manifest(&descriptor)?;
        match manifest.kind() {
            ManifestKind::Index(index) => Ok(index.manifests.clone()),
            ManifestKind::Image(_) => Ok(Vec::new()),
        }
    }
}
