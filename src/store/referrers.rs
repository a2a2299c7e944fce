//! Finding the referrers of manifests in a store (spec/archive.md AR-RF1): cosign's tag scheme,
//! the OCI 1.1 referrers API and its tag-schema fallback. Only registries have them; every
//! other store finds none.

use crate::model::referrers::ReferrerKind;
use crate::model::{Descriptor, Digest, Reference};

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
    /// For each `(artifact, digests)`: the referrers of those digests, held by the repository
    /// of `artifact` (the artifact whose closure they are in), in the order asked. A registry
    /// that has no referrers API (it answers 404) is asked through its tags instead; any other
    /// failure is an error, never "none found".
    fn referrers_of(&self, wanted: &[(Reference, Vec<Digest>)]) -> Result<Vec<Vec<FoundReferrer>>, StoreError>;
}
