//! `ferry tag list` and `ferry tag resolve` (spec/cli.md "tag"): a repository's tags, optionally
//! with the digest each points at, and a reference resolved to `REPO@sha256:..`.

use serde::Serialize;

use crate::engine::run_all;
use crate::model::{Digest, Reference, Repository};
use crate::store::registry::{RegistryClient, RegistrySource, list_tags};
use crate::store::{Source, StoreError};

/// One tag of a listing.
#[derive(Debug, Serialize)]
pub struct TagInfo {
    pub tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// Whether a tag is one of the internal tags imgpkg and ferry write (`sha256-<hex>.imgpkg`,
/// `....image-locations.imgpkg`).
pub fn is_internal_tag(tag: &str) -> bool {
    tag.ends_with(".imgpkg")
}

/// Lists `repository`'s tags, hiding internal ones unless `internal`, resolving each to its
/// digest when `digests` (with `workers` requests in flight).
pub fn list(
    client: &std::sync::Arc<RegistryClient>,
    repository: &Repository,
    internal: bool,
    digests: bool,
    workers: usize,
) -> Result<Vec<TagInfo>, StoreError> {
    let mut tags: Vec<String> = list_tags(client, repository)?;
    tags.retain(|tag| internal || !is_internal_tag(tag));
    tags.sort();
    // A registry may repeat a tag across pages; it is one tag.
    tags.dedup();
    if !digests {
        return Ok(tags.into_iter().map(|tag| TagInfo { tag, digest: None }).collect());
    }
    let source = RegistrySource::new(std::sync::Arc::clone(client));
    let resolved = run_all(&tags, workers, true, |tag| source.resolve(&repository.at_tag(tag)));
    tags.into_iter()
        .zip(resolved)
        .map(|(tag, result)| match result {
            Some(Ok(descriptor)) => Ok(TagInfo { tag, digest: Some(descriptor.digest) }),
            Some(Err(err)) => Err(err),
            None => Err(StoreError::Invalid {
                store: repository.to_string(),
                reason: format!("tag {tag} was not resolved"),
            }),
        })
        .collect()
}

/// Resolves a reference to the digest form `registry/repo@sha256:..`.
pub fn resolve(client: &std::sync::Arc<RegistryClient>, reference: &Reference) -> Result<Reference, StoreError> {
    let source = RegistrySource::new(std::sync::Arc::clone(client));
    let descriptor = source.resolve(reference)?;
    Ok(reference.repository.at_digest(descriptor.digest))
}
