//! Where every entry of an archive goes, computed from the plan before any byte is written
//! (spec/archive.md AR-W1..AR-W3): the archive is laid out once and filled in place.

use std::collections::HashMap;

use super::header::{BLOCK, padded};
use crate::model::Digest;
use crate::model::layout::{BLOBS_DIR, INDEX_FILE, OCI_LAYOUT_FILE, SHA256_DIR};
use crate::store::{BlobRole, Plan};

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    OciLayout,
    Index,
    Manifest,
    Blob(BlobRole),
}

/// One entry at its place in the archive.
#[derive(Debug, Clone)]
pub struct PlannedEntry {
    pub name: String,
    pub kind: EntryKind,
    pub digest: Option<Digest>,
    pub size: u64,
    pub header_offset: u64,
}

impl PlannedEntry {
    pub fn data_offset(&self) -> u64 {
        self.header_offset + BLOCK
    }
}

/// The complete layout of an archive.
#[derive(Debug, Clone)]
pub struct ArchiveLayout {
    pub entries: Vec<PlannedEntry>,
    pub total_size: u64,
    by_digest: HashMap<Digest, usize>,
}

impl ArchiveLayout {
    /// Lays out `oci-layout`, `index.json` (of `index_len` bytes), the two blob directories,
    /// then manifests, configs and layers, each group sorted by digest.
    pub fn new(plan: &Plan, oci_layout_len: u64, index_len: u64) -> Self {
        let mut named: Vec<(String, EntryKind, Option<Digest>, u64)> = vec![
            (OCI_LAYOUT_FILE.to_string(), EntryKind::OciLayout, None, oci_layout_len),
            (INDEX_FILE.to_string(), EntryKind::Index, None, index_len),
            (format!("{BLOBS_DIR}/"), EntryKind::Directory, None, 0),
            (format!("{SHA256_DIR}/"), EntryKind::Directory, None, 0),
        ];
        let mut manifests: Vec<_> = plan.manifests.iter().map(|m| (m.digest(), m.bytes().len() as u64)).collect();
        manifests.sort();
        named.extend(
            manifests.into_iter().map(|(digest, size)| (digest.blob_path(), EntryKind::Manifest, Some(digest), size)),
        );
        let mut blobs: Vec<_> = plan.blobs.iter().map(|b| (b.role, b.descriptor.digest, b.descriptor.size)).collect();
        blobs.sort();
        named.extend(
            blobs
                .into_iter()
                .map(|(role, digest, size)| (digest.blob_path(), EntryKind::Blob(role), Some(digest), size)),
        );

        let mut offset = 0;
        let mut by_digest = HashMap::new();
        let entries = named
            .into_iter()
            .enumerate()
            .map(|(i, (name, kind, digest, size))| {
                let entry = PlannedEntry { name, kind, digest, size, header_offset: offset };
                offset += BLOCK + padded(size);
                if let Some(digest) = digest {
                    by_digest.insert(digest, i);
                }
                entry
            })
            .collect();
        // Two zero blocks end a tar archive (POSIX ustar).
        ArchiveLayout { entries, total_size: offset + 2 * BLOCK, by_digest }
    }

    pub fn entry(&self, digest: &Digest) -> Option<&PlannedEntry> {
        self.by_digest.get(digest).map(|&i| &self.entries[i])
    }
}
