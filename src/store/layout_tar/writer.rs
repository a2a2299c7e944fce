//! The archive sink: lays the archive out from the plan, then lets many workers write blobs
//! at their offsets concurrently; publishes the file under its final name only at the end.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::header::write_header;
use super::layout::{ArchiveLayout, EntryKind};
use crate::model::layout::oci_layout_bytes;
use crate::model::{Descriptor, RawManifest};
use crate::store::{BlobReader, Plan, Sink, StoreError};
use crate::verify::copy_verified;

/// Copy buffer per worker: large enough for sequential disk throughput, small enough that N
/// workers stay within a few MiB.
const COPY_BUFFER: usize = 1 << 20;

/// Writes an OCI-layout tarball at `path`, through `path.partial`.
pub struct LayoutTarSink {
    name: String,
    path: PathBuf,
    partial: PathBuf,
    file: Option<Arc<File>>,
    layout: Option<ArchiveLayout>,
}

impl LayoutTarSink {
    pub fn new(path: &Path) -> Self {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        LayoutTarSink {
            name: path.display().to_string(),
            path: path.to_path_buf(),
            partial: PathBuf::from(partial),
            file: None,
            layout: None,
        }
    }

    /// The file being written until [`Sink::finish`] renames it.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    fn state(&self) -> (&Arc<File>, &ArchiveLayout) {
        match (&self.file, &self.layout) {
            (Some(file), Some(layout)) => (file, layout),
            _ => panic!("LayoutTarSink used before prepare()"),
        }
    }

    fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), StoreError> {
        let (file, _) = self.state();
        file.write_all_at(bytes, offset).map_err(|e| StoreError::io(format!("writing {}", self.partial.display()), e))
    }
}

/// A `Write` that writes at successive offsets of a shared file.
struct PositionalWriter<'a> {
    file: &'a File,
    offset: u64,
}

impl Write for PositionalWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for LayoutTarSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self, plan: &Plan) -> Result<(), StoreError> {
        let oci_layout = oci_layout_bytes();
        let index = plan.index.to_canonical_json();
        let layout = ArchiveLayout::new(plan, oci_layout.len() as u64, index.len() as u64);
        let context = || format!("creating {}", self.partial.display());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.partial)
            .map_err(|e| StoreError::io(context(), e))?;
        // Sizing the file up front reserves its length; the blocks are allocated as blobs land.
        file.set_len(layout.total_size).map_err(|e| StoreError::io(context(), e))?;
        self.file = Some(Arc::new(file));
        self.layout = Some(layout.clone());
        for entry in &layout.entries {
            let header = write_header(&entry.name, entry.size, entry.kind == EntryKind::Directory);
            self.write_at(&header, entry.header_offset)?;
            match entry.kind {
                EntryKind::OciLayout => self.write_at(&oci_layout, entry.data_offset())?,
                EntryKind::Index => self.write_at(&index, entry.data_offset())?,
                _ => {}
            }
        }
        Ok(())
    }

    fn has_blob(&self, _descriptor: &Descriptor) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn put_blob(&self, descriptor: &Descriptor, reader: &mut BlobReader<'_>) -> Result<(), StoreError> {
        let (file, layout) = self.state();
        let entry =
            layout.entry(&descriptor.digest).filter(|entry| entry.size == descriptor.size).ok_or_else(|| {
                StoreError::Invalid {
                    store: self.name.clone(),
                    reason: format!("blob {} is not in the plan", descriptor.digest),
                }
            })?;
        let mut out = PositionalWriter { file, offset: entry.data_offset() };
        copy_verified(reader, &mut out, COPY_BUFFER).map_err(|e| {
            StoreError::io(format!("writing blob {} to {}", descriptor.digest, self.partial.display()), e)
        })?;
        Ok(())
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<(), StoreError> {
        let (_, layout) = self.state();
        let entry = layout.entry(&manifest.digest()).ok_or_else(|| StoreError::Invalid {
            store: self.name.clone(),
            reason: format!("manifest {} is not in the plan", manifest.digest()),
        })?;
        self.write_at(manifest.bytes(), entry.data_offset())
    }

    fn finish(&mut self, _plan: &Plan) -> Result<(), StoreError> {
        let (file, _) = self.state();
        file.sync_all().map_err(|e| StoreError::io(format!("flushing {}", self.partial.display()), e))?;
        std::fs::rename(&self.partial, &self.path).map_err(|e| {
            StoreError::io(format!("renaming {} to {}", self.partial.display(), self.path.display()), e)
        })?;
        sync_parent_dir(&self.path);
        Ok(())
    }
}

/// Makes a rename durable; best effort, since not every filesystem supports syncing a directory.
fn sync_parent_dir(path: &Path) {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}
