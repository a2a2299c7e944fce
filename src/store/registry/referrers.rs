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
use super::error::RegistryErrorKind;
use super::source::{RegistrySource, read_manifest};
use super::tags::list_tags;
use crate::model::referrers::{COSIGN_SUFFIXES, ReferrerKind, cosign_tag, schema_tag};
use crate::model::{Descriptor, Digest, ManifestKind, Reference, Repository, media};
use crate::store::referrers::{FoundReferrer, LookupMemo, ReferrerLookup};
use crate::store::{Source, StoreError};

/// The most pages of one subject's referrers followed (each up to 4 MiB of descriptors).
pub const MAX_REFERRER_PAGES: usize = 1000;

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
    /// `GET /v2/<name>/referrers/<digest>`: the descriptors of its index, every page of it
    /// (distribution-spec 1.1: a registry may paginate with `Link: <..>; rel="next"`), or
    /// `None` when the registry answers 404 (it has no referrers API; distribution-spec 1.1
    /// forbids a 404 from one that has). Pages are followed only on the registry, never twice,
    /// and at most [`MAX_REFERRER_PAGES`] of them.
    fn referrers_api(&self, repository: &Repository, subject: &Digest) -> Result<Option<Vec<Descriptor>>, StoreError> {
        let op = Operation {
            registry: repository.registry.clone(),
            repository: repository.path.clone(),
            what: format!("listing the referrers of {subject}"),
            scopes: vec![format!("repository:{}:pull", repository.path)],
        };
        let refuse = |reason: String| StoreError::from(op.error(RegistryErrorKind::Protocol(reason)));
        let mut url =
            format!("{}/v2/{}/referrers/{subject}", self.client().base_url(&repository.registry), repository.path);
        let mut visited = HashSet::new();
        let mut descriptors = Vec::new();
        while visited.insert(url.clone()) {
            if visited.len() > MAX_REFERRER_PAGES {
                return Err(refuse(format!("the referrers of {subject} run past {MAX_REFERRER_PAGES} pages")));
            }
            let accept = [("Accept", media::OCI_INDEX.to_string())];
            let mut response = self
                .client()
                .send(&op, Method::GET, &url, &accept, RequestBody::Empty, true)
                .map_err(StoreError::from)?;
            if response.status() == 404 {
                if descriptors.is_empty() && visited.len() == 1 {
                    return Ok(None);
                }
                return Err(refuse(format!("a page of the referrers of {subject} is missing (404)")));
            }
            let link = response.headers().get("link").and_then(|v| v.to_str().ok()).map(str::to_string);
            let index = read_manifest(&mut response, Some(media::OCI_INDEX), repository, &op)?;
            match index.kind() {
                ManifestKind::Index(index) => descriptors.extend(index.manifests.iter().cloned()),
                ManifestKind::Image(_) => {
                    return Err(StoreError::Invalid {
                        store: repository.to_string(),
                        reason: format!("the referrers of {subject} are not an index"),
                    });
                }
            }
            let what = format!("the referrers of {subject}");
            match self.client().next_page(&repository.registry, &url, link.as_deref(), &what).map_err(refuse)? {
                Some(next) => url = next,
                None => return Ok(Some(descriptors)),
            }
        }
        Err(refuse(format!("the referrers of {subject} link back to a page already read (a pagination loop)")))
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
