//! Taking up the partial archive an interrupted export left behind (spec/archive.md AR-W7):
//! the file is reused only when its length and every header, `oci-layout` and `index.json`
//! byte are what this plan lays out; its blob regions are then hashed again in parallel and the
//! intact ones kept, and every padding and the end marker are zeroed again, so the archive
//! comes out byte-identical to an uninterrupted one.

use std::io::{self, Read};
use std::sync::Arc;

use super::{LayoutTarSink, Skeleton, ZEROS};
use crate::store::layout_tar::header::{BLOCK, padded};
use crate::store::layout_tar::layout::{ArchiveLayout, EntryKind};
use crate::store::region::FileRegion;
use crate::store::volumes::{Volumes, open_owned_file};
use crate::store::{Plan, StoreError};
use crate::verify::{BlobCheck, hash_all};

impl LayoutTarSink {
    /// Takes up the partial file an interrupted export of the same plan left behind (spec/archive.md
    /// AR-W7); call it before [`Sink::prepare`]. The file is reused only when its length and
    /// every header, `oci-layout` and `index.json` byte are those this plan lays out; then every
    /// blob region is hashed again (in parallel, largest first, `on_hashed` called with each
    /// blob's size) and the intact blobs are kept: [`Sink::has_blob`] reports them, so only the
    /// missing or damaged ones are fetched.
    ///
    /// Returns why an existing partial file is not reused, if it is not; [`Sink::prepare`] then
    /// starts over. Returns `None` when there is no partial file or when it was taken up
    /// ([`LayoutTarSink::intact_blobs`] tells how much it held).
    pub fn resume(&mut self, plan: &Plan, on_hashed: &(dyn Fn(u64) + Sync)) -> Result<Option<String>, StoreError> {
        let skeleton = Skeleton::of(plan)?;
        let mut files = Vec::new();
        for (index, (path, len)) in self.partial_files(skeleton.layout.total_size).into_iter().enumerate() {
            // Never through a link, never a FIFO or device (AR-W2a), with --resume too.
            let file = match open_owned_file(&path, false) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound && index == 0 => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(Some(format!("{} is missing (this export lays out more volumes)", path.display())));
                }
                Err(e) => return Err(StoreError::io(format!("opening {} to resume", path.display()), e)),
            };
            let actual = file.metadata().map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?.len();
            if actual != len && self.volume_size.is_some() {
                return Ok(Some(format!(
                    "{} is {actual} bytes, but this export lays out {len} bytes there (it was written for other content)",
                    path.display()
                )));
            }
            files.push((path, file, actual));
        }
        let file = Volumes::new(files);
        if let Some(reason) = self.skeleton_mismatch(&file, &skeleton)? {
            return Ok(Some(reason));
        }

        let file = Arc::new(file);
        let checks: Vec<BlobCheck<'_>> = skeleton
            .layout
            .entries
            .iter()
            .filter(|entry| matches!(entry.kind, EntryKind::Blob(_)))
            .map(|entry| {
                let (file, offset, size) = (Arc::clone(&file), entry.data_offset(), entry.size);
                BlobCheck {
                    digest: entry.digest.expect("blob entries are named by digest"),
                    size,
                    open: Box::new(move || {
                        Ok(Box::new(FileRegion::new(Arc::clone(&file), offset, size)) as Box<dyn Read>)
                    }),
                }
            })
            .collect();
        let outcomes = hash_all(&checks, &self.partial.display().to_string(), on_hashed);
        // A damaged or unwritten region is simply fetched again: the bytes on disk are ours to
        // overwrite, so no failure here is an error.
        for (check, outcome) in checks.iter().zip(outcomes) {
            if outcome.is_ok() {
                self.intact.insert(check.digest);
                self.intact_bytes += check.size;
            }
        }
        self.resumed_for = Some(skeleton.digest());
        self.file = Some(file);
        self.layout = Some(skeleton.layout);
        Ok(None)
    }

    /// The blobs [`LayoutTarSink::resume`] found intact and will not fetch again: how many,
    /// and their bytes.
    pub fn intact_blobs(&self) -> (u64, u64) {
        (self.intact.len() as u64, self.intact_bytes)
    }

    /// Why `file` cannot be the partial archive of `skeleton`'s plan, if it cannot.
    fn skeleton_mismatch(&self, file: &Volumes, skeleton: &Skeleton) -> Result<Option<String>, StoreError> {
        let context = || format!("reading {} to resume", self.partial.display());
        let len = file.len();
        let total = skeleton.layout.total_size;
        if len != total {
            return Ok(Some(format!(
                "it is {len} bytes, but this export lays out {total} bytes (it was written for other content)"
            )));
        }
        let differs = |offset: u64, expected: &[u8]| -> Result<bool, StoreError> {
            let mut actual = vec![0u8; expected.len()];
            file.read_exact_at(&mut actual, offset).map_err(|e| StoreError::io(context(), e))?;
            Ok(actual != expected)
        };
        for entry in &skeleton.layout.entries {
            if differs(entry.header_offset, &Skeleton::header(entry))? {
                return Ok(Some(format!(
                    "its tar header for {} differs from this export's (it was written for other content, or is damaged)",
                    entry.name
                )));
            }
            let metadata_differs = match skeleton.metadata(entry) {
                Some(data) => differs(entry.data_offset(), data)?,
                None => false,
            };
            if metadata_differs {
                return Ok(Some(format!(
                    "its {} differs from this export's (it was written for other content, or is damaged)",
                    entry.name
                )));
            }
        }
        Ok(None)
    }

    /// Zeroes every padding and the end marker of a resumed file: whatever happened to those
    /// bytes, the archive comes out byte-identical to an uninterrupted one (AR-W6).
    pub(super) fn rewrite_zeros(&self, layout: &ArchiveLayout) -> Result<(), StoreError> {
        for entry in &layout.entries {
            let end = entry.data_offset() + entry.size;
            let padding = padded(entry.size) - entry.size;
            self.write_at(&ZEROS[..padding as usize], end)?;
        }
        self.write_at(&ZEROS, layout.total_size - 2 * BLOCK)
    }
}
