//! Two sources read as one: what the first holds, else the second (a bundle built on this
//! machine in front of the registries its lock names, for `ferry export -f`). Generic over any
//! pair of sources; it names no concrete store.

use super::{BlobReader, Source, StoreError};
use crate::model::{Descriptor, RawManifest, Reference};

/// Serves from `first` what it has, and everything else from `second`.
pub struct Overlay<'a> {
    first: &'a dyn Source,
    second: &'a dyn Source,
    name: String,
}

impl<'a> Overlay<'a> {
    pub fn new(first: &'a dyn Source, second: &'a dyn Source) -> Self {
        let name = format!("{} and {}", first.name(), second.name());
        Overlay { first, second, name }
    }
}

impl Source for Overlay<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        match self.first.resolve(reference) {
            Err(StoreError::NotFound { .. }) => self.second.resolve(reference),
            found => found,
        }
    }

    fn manifest(&self, descriptor: &Descriptor) -> Result<RawManifest, StoreError> {
        match self.first.manifest(descriptor) {
            Err(StoreError::NotFound { .. }) => self.second.manifest(descriptor),
            found => found,
        }
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError> {
        match self.first.blob(descriptor) {
            Err(StoreError::NotFound { .. }) => self.second.blob(descriptor),
            found => found,
        }
    }
}
