//! An in-memory source of small blobs ferry makes itself (the ImageLocations record image),
//! so they travel to a sink through the same engine as everything else.

use std::collections::HashMap;
use std::io::Cursor;

use crate::model::{Descriptor, Digest, Reference, sha256_digest};
use crate::store::{BlobReader, Source, StoreError};
use crate::verify::VerifyingReader;

/// Blobs held in memory, keyed by their digest.
#[derive(Default)]
pub struct MemorySource {
    blobs: HashMap<Digest, Vec<u8>>,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns their digest.
    pub fn insert(&mut self, bytes: Vec<u8>) -> Digest {
        let digest = sha256_digest(&bytes);
        self.blobs.insert(digest, bytes);
        digest
    }
}

impl Source for MemorySource {
    fn name(&self) -> &str {
        "ferry"
    }

    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        Err(StoreError::NotFound { store: "ferry".into(), what: reference.to_string() })
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError> {
        let bytes = self.blobs.get(&descriptor.digest).ok_or_else(|| StoreError::NotFound {
            store: "ferry".into(),
            what: format!("blob {}", descriptor.digest),
        })?;
        Ok(VerifyingReader::new(Box::new(Cursor::new(bytes.as_slice())), descriptor.digest, descriptor.size, "ferry"))
    }
}
