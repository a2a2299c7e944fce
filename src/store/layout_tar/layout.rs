//! Where every entry of an archive goes, computed from the plan before any byte is written
//! (spec/archive.md AR-W1..AR-W3): the archive is laid out once and filled in place.

use std::collections::HashMap;

use super::header::{BLOCK, padded};
use crate::model::Digest;
use crate::model::layout::{BLOBS_DIR, INDEX_FILE, OCI_LAYOUT_FILE, SHA256_DIR};
use crate::model::manifest::{MAX_BLOB_SIZE, SizeOverflow};
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
    /// then manifests, configs and layers, each group sorted by digest. Offsets are added with
    /// checked arithmetic: sizes a source declared that would put an entry past 2^64 bytes are an
    /// error naming the entry, never a wrapped offset (spec/archive.md AR-R13).
    pub fn new(plan: &Plan, oci_layout_len: u64, index_len: u64) -> Result<Self, SizeOverflow> {
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

        let mut offset: u64 = 0;
        let mut by_digest = HashMap::new();
        let mut entries = Vec::with_capacity(named.len());
        for (i, (name, kind, digest, size)) in named.into_iter().enumerate() {
            let overflow = || SizeOverflow { what: "the archive's entries".to_string(), at: name.clone() };
            // `padded` rounds up: a size past the int64 is refused before it could wrap there.
            let next = Some(size)
                .filter(|&size| size <= MAX_BLOB_SIZE)
                .and_then(|size| offset.checked_add(BLOCK)?.checked_add(padded(size)))
                .ok_or_else(overflow)?;
            entries.push(PlannedEntry { name, kind, digest, size, header_offset: offset });
            offset = next;
            if let Some(digest) = digest {
                by_digest.insert(digest, i);
            }
        }
        // Two zero blocks end a tar archive (POSIX ustar).
        let total_size = offset
            .checked_add(2 * BLOCK)
            .ok_or_else(|| SizeOverflow { what: "the archive's entries".to_string(), at: "its end".to_string() })?;
        Ok(ArchiveLayout { entries, total_size, by_digest })
    }

    pub fn entry(&self, digest: &Digest) -> Option<&PlannedEntry> {
        self.by_digest.get(digest).map(|&i| &self.entries[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layout::LayoutIndex;
    use crate::model::{Descriptor, media, sha256_digest};
    use crate::store::PlannedBlob;

    fn plan_of(sizes: &[u64]) -> Plan {
        let blobs = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| PlannedBlob {
                descriptor: Descriptor::new(media::OCI_LAYER_GZIP, sha256_digest(&i.to_be_bytes()), size),
                role: BlobRole::Layer,
            })
            .collect();
        Plan {
            index: LayoutIndex::new(Vec::new(), Default::default()),
            manifests: Vec::new(),
            blobs,
            omitted: Vec::new(),
        }
    }

    /// AR-R13: a registry export whose plan declares sizes that cannot be laid out (each past
    /// the int64, or summing past 2^64) is an error naming an entry, never wrapped offsets.
    #[test]
    fn huge_declared_sizes_are_an_error_not_wrapped_offsets() {
        for sizes in [
            vec![u64::MAX],
            vec![MAX_BLOB_SIZE + 1],
            vec![MAX_BLOB_SIZE - 1, MAX_BLOB_SIZE - 1, 5000],
            vec![MAX_BLOB_SIZE, MAX_BLOB_SIZE, MAX_BLOB_SIZE],
        ] {
            let err = ArchiveLayout::new(&plan_of(&sizes), 30, 300).unwrap_err();
            assert!(err.at.starts_with("blobs/sha256/") || err.at == "its end", "{sizes:?}: {err}");
            assert!(err.to_string().contains("AR-R13"), "{err}");
        }
        let layout = ArchiveLayout::new(&plan_of(&[MAX_BLOB_SIZE - 4096]), 30, 300).unwrap();
        let mut end = 0;
        for entry in &layout.entries {
            assert!(entry.header_offset >= end, "offsets only grow");
            end = entry.data_offset() + padded(entry.size);
        }
        assert_eq!(layout.total_size, end + 2 * BLOCK);
    }
}
