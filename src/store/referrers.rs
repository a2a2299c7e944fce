//! Finding the referrers of manifests in a store (spec/archive.md AR-RF1): cosign's tag scheme,
//! the OCI 1.1 referrers API and its tag-schema fallback. Only registries have them; every
//! other store finds none.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::model::referrers::ReferrerKind;
use crate::model::{Descriptor, Digest, Reference, Repository};

use super::StoreError;

/// One referrer found: the manifest it refers to, its own descriptor, how it was found and
/// the reference it can be read back by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundReferrer {
    pub subject: Digest,
    pub descriptor: Descriptor,
    /// The cosign tag it was found under (`sha256-<hex>.sig`), or `None` for an OCI 1.1
    /// referrer (found through the API or the tag-schema index), whose manifest names its subject.
    pub tag: Option<String>,
    pub kind: ReferrerKind,
    /// Where it was found (repository, with the tag when there is one, and its digest).
    pub reference: Reference,
}

/// A store that can say which referrers its manifests have.
pub trait ReferrerLookup: Sync {
    /// The referrers of `subject`, held by the repository of `artifact` (the artifact through
    /// which the walk reached it). A registry that has no referrers API (it answers 404) is
    /// asked through its tags instead; any other failure is an error, never "none found".
    /// Lookups of one discovery share `memo`, and may run at the same time.
    fn referrers_of(
        &self,
        artifact: &Reference,
        subject: &Digest,
        memo: &LookupMemo,
    ) -> Result<Vec<FoundReferrer>, StoreError>;
}

/// What the lookups of one discovery learn once and share: each repository's tags (listed once
/// per repository, AR-RF1, however many lookups ask at the same time) and the registries that
/// answered the referrers API with 404 (asked through tags from then on).
#[derive(Debug, Default)]
pub struct LookupMemo {
    tags: Mutex<HashMap<Repository, Arc<TagsSlot>>>,
    without_api: Mutex<HashSet<String>>,
}

/// One repository's tags: empty until its first listing succeeds; held while listing.
type TagsSlot = Mutex<Option<Arc<HashSet<String>>>>;

impl LookupMemo {
    /// The tags of `repository`, listed by `list` the first time they are asked for; callers
    /// asking meanwhile wait for that listing. A failed listing is not kept: the error goes to
    /// its caller, and the next caller lists again.
    pub fn tags_of(
        &self,
        repository: &Repository,
        list: impl FnOnce() -> Result<HashSet<String>, StoreError>,
    ) -> Result<Arc<HashSet<String>>, StoreError> {
        let slot = Arc::clone(self.tags.lock().expect("tags lock").entry(repository.clone()).or_default());
        let mut listed = slot.lock().expect("repository tags lock");
        if let Some(tags) = listed.as_ref() {
            return Ok(Arc::clone(tags));
        }
        let tags = Arc::new(list()?);
        *listed = Some(Arc::clone(&tags));
        Ok(tags)
    }

    /// Whether `registry` answered the referrers API with 404 already.
    pub fn lacks_api(&self, registry: &str) -> bool {
        self.without_api.lock().expect("api lock").contains(registry)
    }

    /// `registry` answered the referrers API with 404: it has none.
    pub fn note_no_api(&self, registry: &str) {
        self.without_api.lock().expect("api lock").insert(registry.to_string());
    }
}
