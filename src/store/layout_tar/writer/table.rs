//! The table of contents of an archive written in volumes (spec/archive.md AR-S2): each volume
//! hashed whole, in parallel, read back from the page cache.

use std::io::Read;
use std::sync::Arc;

use rayon::prelude::*;

use super::LayoutTarSink;
use crate::model::volume_table::{self, MEDIA_TYPE, VolumeEntry, VolumeTable};
use crate::model::{Digest, sha256_digest};
use crate::store::StoreError;
use crate::store::layout_tar::layout::{ArchiveLayout, EntryKind};
use crate::store::region::FileRegion;
use crate::store::volumes::Volumes;
use crate::verify::Hasher;

impl LayoutTarSink {
    /// The table of contents of the volumes just written: each volume hashed (in parallel,
    /// read back from the page cache).
    pub(super) fn table(
        &self,
        file: &Arc<Volumes>,
        layout: &ArchiveLayout,
        volume_size: u64,
    ) -> Result<VolumeTable, StoreError> {
        let index = layout
            .entries
            .iter()
            .find(|entry| entry.kind == EntryKind::Index)
            .expect("every archive has an index.json");
        let mut index_bytes = vec![0u8; index.size as usize];
        file.read_exact_at(&mut index_bytes, index.data_offset())
            .map_err(|e| StoreError::io(format!("reading back {}", self.partial.display()), e))?;
        let digests: Vec<Result<Digest, StoreError>> = file
            .parts()
            .par_iter()
            .map(|part| {
                let mut region = FileRegion::new(Arc::clone(file), part.start, part.len);
                let mut hasher = Hasher::new();
                let mut buffer = vec![0u8; 1 << 20];
                loop {
                    match region.read(&mut buffer) {
                        Ok(0) => return Ok(hasher.finish().0),
                        Ok(n) => hasher.update(&buffer[..n]),
                        Err(e) => return Err(StoreError::io(format!("hashing {}", part.path.display()), e)),
                    }
                }
            })
            .collect();
        let archive = self.archive_name();
        let mut volumes = Vec::new();
        for (number, (part, digest)) in file.parts().iter().zip(digests).enumerate() {
            volumes.push(VolumeEntry {
                name: volume_table::volume_name(&archive, number + 1),
                size: part.len,
                digest: digest?,
            });
        }
        Ok(VolumeTable {
            media_type: MEDIA_TYPE.to_string(),
            archive,
            identity: sha256_digest(&index_bytes),
            size: file.len(),
            volume_size,
            volumes,
        })
    }
}
