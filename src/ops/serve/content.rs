//! The bytes a served archive hands out (spec/serve.md SV-3): manifests and ImageLocations
//! records from memory (checked when read), blobs in place from the archive by positional
//! reads, each blob with a state (unverified, verified, failed) so a blob that failed its
//! digest is never served again, and a `Range` is cut only from a verified blob, checked piece
//! by piece against the hashes its one whole-blob check kept ([`super::ranges`]).

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::ranges::{CheckedRange, ChunkTable, TableWriter};

use crate::model::{Digest, RawManifest};
use crate::store::layout_tar::LayoutTarSource;
use crate::store::{Source, StoreError};
use crate::verify::{VerifyingReader, copy_verified, verify_error};

const UNVERIFIED: u8 = 0;
const VERIFIED: u8 = 1;
const FAILED: u8 = 2;

/// The largest chunk one read hands to a response: what one response holds in memory.
pub const CHUNK: usize = 256 * 1024;

/// Where a blob's bytes are.
pub enum BlobAt {
    /// Built by ferry (a record's config or layer), served from memory.
    Memory(hyper::body::Bytes),
    /// An archive entry.
    Archive { size: u64, state: BlobState },
}

/// What is known of an archive blob's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    Unverified,
    Verified,
    Failed,
}

/// Everything served, shared by every connection.
pub struct Content {
    archive: Arc<LayoutTarSource>,
    manifests: HashMap<Digest, Arc<RawManifest>>,
    memory_blobs: HashMap<Digest, hyper::body::Bytes>,
    states: HashMap<Digest, AtomicU8>,
    /// Each archive blob's piece hashes, made by its first whole-blob check for a `Range`;
    /// the lock makes that check run once however many ranges ask at the same time.
    tables: HashMap<Digest, Mutex<Option<ChunkTable>>>,
}

impl Content {
    /// `verified`: every archive blob was hashed before serving (`--verify eager`).
    pub fn new(
        archive: Arc<LayoutTarSource>,
        manifests: impl IntoIterator<Item = RawManifest>,
        memory_blobs: Vec<(Digest, Vec<u8>)>,
        verified: bool,
    ) -> Self {
        let initial = if verified { VERIFIED } else { UNVERIFIED };
        let states = archive.blob_entries().map(|(digest, _)| (digest, AtomicU8::new(initial))).collect();
        let tables = archive.blob_entries().map(|(digest, _)| (digest, Mutex::new(None))).collect();
        Content {
            tables,
            manifests: manifests.into_iter().map(|manifest| (manifest.digest(), Arc::new(manifest))).collect(),
            memory_blobs: memory_blobs.into_iter().map(|(digest, bytes)| (digest, bytes.into())).collect(),
            states,
            archive,
        }
    }

    pub fn archive_name(&self) -> &str {
        self.archive.name()
    }

    pub fn manifest(&self, digest: &Digest) -> Option<Arc<RawManifest>> {
        self.manifests.get(digest).cloned()
    }

    /// Where a blob is, if anything holds it.
    pub fn blob(&self, digest: &Digest) -> Option<BlobAt> {
        if let Some(bytes) = self.memory_blobs.get(digest) {
            return Some(BlobAt::Memory(bytes.clone()));
        }
        if let Some(entry) = self.archive.entry(digest) {
            return Some(BlobAt::Archive { size: entry.size, state: self.state(digest) });
        }
        // A record manifest read through the blobs endpoint.
        self.manifests.get(digest).map(|manifest| BlobAt::Memory(manifest.bytes().to_vec().into()))
    }

    pub fn state(&self, digest: &Digest) -> BlobState {
        match self.states.get(digest).map(|state| state.load(Ordering::Acquire)) {
            Some(VERIFIED) => BlobState::Verified,
            Some(FAILED) => BlobState::Failed,
            _ => BlobState::Unverified,
        }
    }

    fn set_state(&self, digest: &Digest, value: u8) {
        if let Some(state) = self.states.get(digest) {
            if value == FAILED {
                state.store(FAILED, Ordering::Release);
            } else {
                // A failure is final: a later good read (the media changed back) does not undo it.
                let _ = state.compare_exchange(UNVERIFIED, value, Ordering::AcqRel, Ordering::Acquire);
            }
        }
    }

    /// A reader of the whole blob through the verifying reader: the last bytes are withheld
    /// unless the blob matches its digest (SV-3).
    pub fn full_reader(&self, digest: Digest, size: u64) -> Result<Box<dyn Read + Send>, StoreError> {
        let entry = self.entry(&digest)?;
        let region = self.archive.open_entry(entry);
        Ok(Box::new(VerifyingReader::new(region, digest, size, self.archive.name().to_string())))
    }

    /// A reader of `start..start + len` of a blob checked against `table` (from
    /// [`Content::checked_table`]) piece by piece: a changed piece fails the read, which marks
    /// the blob failed.
    pub fn range_reader(
        &self,
        digest: &Digest,
        table: ChunkTable,
        start: u64,
        len: u64,
    ) -> Result<Box<dyn Read + Send>, StoreError> {
        let entry = self.entry(digest)?;
        let aligned = start / CHUNK as u64 * CHUNK as u64;
        let pieces = self.archive.open_range(entry.data_offset + aligned, entry.size - aligned);
        let blob = (*digest, entry.size);
        Ok(Box::new(CheckedRange::new(pieces, table, blob, self.archive.name().to_string(), start, len)))
    }

    /// The blob's piece hashes, made by hashing it whole (blocking) the first time: marks it
    /// verified or failed and says why it failed. Concurrent callers wait for one check.
    pub fn checked_table(&self, digest: &Digest) -> Result<ChunkTable, String> {
        let entry = self.entry(digest).map_err(|err| err.to_string())?;
        let slot = self.tables.get(digest).ok_or_else(|| format!("blob {digest} is not in the archive"))?;
        let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(table) = slot.as_ref() {
            return Ok(Arc::clone(table));
        }
        if self.state(digest) == BlobState::Failed {
            return Err(format!("blob {digest} failed its digest earlier"));
        }
        let mut reader = VerifyingReader::new(self.archive.open_entry(entry), *digest, entry.size, self.archive.name());
        let mut table = TableWriter::default();
        match copy_verified(&mut reader, &mut table, CHUNK) {
            Ok(_) => {
                self.set_state(digest, VERIFIED);
                let table = table.finish();
                *slot = Some(Arc::clone(&table));
                Ok(table)
            }
            Err(err) => Err(self.read_failed(digest, &err).unwrap_or_else(|| err.to_string())),
        }
    }

    /// A full read reached the end with every byte verified.
    pub fn full_read_verified(&self, digest: &Digest) {
        self.set_state(digest, VERIFIED);
    }

    /// A read failed: when the blob failed its digest or size, it is marked failed for good and
    /// the message is returned for the log; other errors (I/O) leave the state alone.
    pub fn read_failed(&self, digest: &Digest, err: &io::Error) -> Option<String> {
        let mismatch = verify_error(err)?;
        self.set_state(digest, FAILED);
        Some(mismatch.to_string())
    }

    fn entry(&self, digest: &Digest) -> Result<&crate::store::layout_tar::ArchiveEntry, StoreError> {
        self.archive.entry(digest).ok_or_else(|| StoreError::NotFound {
            store: self.archive.name().to_string(),
            what: format!("blob {digest}"),
        })
    }
}
