//! Finding referrers in a registry (spec/archive.md AR-RF1): per repository, one tag listing
//! (cosign's `sha256-<hex>.sig|.att|.sbom` and the referrers tag schema's `sha256-<hex>`), kept
//! in the discovery's [`LookupMemo`], and the OCI 1.1 referrers API (`GET
//! /v2/<name>/referrers/<digest>`) per digest, until a 404 says the registry has no such API
//! (distribution 2.8 and 3.x); from then on, that registry's referrers are read from the
//! tag-schema index instead. Lookups run at once from the walk's discovery workers. A failure
//! other than 404 is an error: a lookup that fails never reads as "none".

use std::collections::HashSet;

use ureq::http::Method;

use super::client::{Operation, RequestBody};
use super::source::{RegistrySource, read_manifest};
use super::tags::list_tags;
use crate::model::referrers::{COSIGN_SUFFIXES, ReferrerKind, cosign_tag, schema_tag};
use crate::model::{Descriptor, Digest, ManifestKind, Reference, Repository, media};
use crate::store::referrers::{FoundReferrer, LookupMemo, ReferrerLookup};
use crate::store::{Source, StoreError};

impl ReferrerLookup for RegistrySource {
    fn referrers_of(
        &self,
        artifact: &Reference,
        subject: &Digest,
        memo: &LookupMemo,
    ) -> Result<Vec<FoundReferrer>, StoreError> {
        let repository = self.locate(artifact).repository;
        let tags = memo.tags_of(&repository, || {
            Ok(list_tags(self.client(), &repository).map_err(StoreError::from)?.into_iter().collect::<HashSet<_>>())
        })?;
        let mut found = Vec::new();
        for suffix in COSIGN_SUFFIXES {
            let tag = cosign_tag(subject, suffix);
            if !tags.contains(&tag) {
                continue;
            }
            let descriptor = self.resolve(&repository.at_tag(&tag))?;
            let reference =
                Reference { repository: repository.clone(), tag: Some(tag.clone()), digest: Some(descriptor.digest) };
            let kind = ReferrerKind::of_suffix(suffix).expect("a cosign suffix");
            found.push(FoundReferrer { subject: *subject, descriptor, tag: Some(tag), kind, reference });
        }
        let listed =
            if memo.lacks_api(&repository.registry) { None } else { self.referrers_api(&repository, subject)? };
        let descriptors = match listed {
            Some(descriptors) => descriptors,
            None => {
                memo.note_no_api(&repository.registry);
                if tags.contains(&schema_tag(subject)) { self.schema_index(&repository, subject)? } else { Vec::new() }
            }
        };
        for descriptor in descriptors {
            self.remember(descriptor.digest, &repository);
            let kind = ReferrerKind::of_artifact_type(descriptor.artifact_type.as_deref().unwrap_or_default());
            let reference = repository.at_digest(descriptor.digest);
            found.push(FoundReferrer { subject: *subject, descriptor, tag: None, kind, reference });
        }
        Ok(found)
    }
}

impl RegistrySource {
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
        let index = read_manifest(&mut response, Some(media::OCI_INDEX), repository, &op)?;
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
