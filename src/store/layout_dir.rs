//! An OCI image layout directory (image-spec `image-layout.md`), such as skopeo, crane or
//! buildah write: a source that refuses symlinks and non-regular files, and a sink that
//! publishes each blob atomically (temporary file, verify, rename) and `index.json` last.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::layout::{
    INDEX_FILE, LayoutIndex, MAX_INDEX_BYTES, MAX_OCI_LAYOUT_BYTES, OCI_LAYOUT_FILE, SHA256_DIR, check_oci_layout,
    oci_layout_bytes,
};
use crate::model::{Descriptor, RawManifest, Reference};
use crate::store::{BlobReader, Plan, Sink, Source, StoreError, resolve_in_layout};
use crate::verify::{VerifyingReader, copy_verified};

/// Reads an OCI layout directory.
pub struct LayoutDirSource {
    name: String,
    root: PathBuf,
    index: LayoutIndex,
}

impl LayoutDirSource {
    /// Opens a layout: `oci-layout` must say 1.0.0 and `index.json` must parse.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let name = root.display().to_string();
        let invalid = |reason: String| StoreError::Invalid { store: name.clone(), reason };
        let meta = fs::metadata(root).map_err(|e| StoreError::io(format!("opening layout {name}"), e))?;
        if !meta.is_dir() {
            return Err(invalid("is not a directory (expected an OCI image layout)".into()));
        }
        let layout = read_regular(root, OCI_LAYOUT_FILE, MAX_OCI_LAYOUT_BYTES, &name)?;
        check_oci_layout(&layout, &format!("{name}/{OCI_LAYOUT_FILE}")).map_err(|e| invalid(e.to_string()))?;
        let index_bytes = read_regular(root, INDEX_FILE, MAX_INDEX_BYTES, &name)?;
        let index =
            LayoutIndex::parse(&index_bytes, &format!("{name}/{INDEX_FILE}")).map_err(|e| invalid(e.to_string()))?;
        for dir in ["blobs", SHA256_DIR] {
            let meta = fs::symlink_metadata(root.join(dir)).map_err(|e| StoreError::io(format!("{name}/{dir}"), e))?;
            if !meta.is_dir() {
                return Err(invalid(format!("{dir} is not a directory (symlinks are refused)")));
            }
        }
        Ok(LayoutDirSource { name, root: root.to_path_buf(), index })
    }

    pub fn index(&self) -> &LayoutIndex {
        &self.index
    }

    /// A blob's size on disk, if the layout holds it as a regular file.
    fn blob_size(&self, relative: &str) -> Result<Option<u64>, StoreError> {
        match fs::symlink_metadata(self.root.join(relative)) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Err(StoreError::Invalid {
                store: self.name.clone(),
                reason: format!("{relative} is not a regular file (symlinks and special files are refused)"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(format!("{}/{relative}", self.name), e)),
        }
    }
}

/// Reads a small regular file of the layout, refusing symlinks and oversize files.
fn read_regular(root: &Path, relative: &str, limit: u64, store: &str) -> Result<Vec<u8>, StoreError> {
    let path = root.join(relative);
    let context = || format!("reading {}", path.display());
    let meta = fs::symlink_metadata(&path).map_err(|e| StoreError::io(context(), e))?;
    let invalid = |reason: String| StoreError::Invalid { store: store.to_string(), reason };
    if !meta.is_file() {
        return Err(invalid(format!("{relative} is not a regular file (symlinks and special files are refused)")));
    }
    if meta.len() > limit {
        return Err(invalid(format!("{relative} is {} bytes, over the {limit}-byte limit", meta.len())));
    }
    fs::read(&path).map_err(|e| StoreError::io(context(), e))
}

impl Source for LayoutDirSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        resolve_in_layout(self, &self.index, reference, |digest| self.blob_size(&digest.blob_path()))
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError> {
        let relative = descriptor.digest.blob_path();
        let size = self.blob_size(&relative)?.ok_or_else(|| StoreError::NotFound {
            store: self.name.clone(),
            what: format!("blob {}", descriptor.digest),
        })?;
        if size != descriptor.size {
            return Err(StoreError::Invalid {
                store: self.name.clone(),
                reason: format!(
                    "blob {}: a descriptor says {} bytes but the file holds {size}",
                    descriptor.digest, descriptor.size
                ),
            });
        }
        let path = self.root.join(&relative);
        let file = File::open(&path).map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        let inner: Box<dyn Read + Send> = Box::new(file);
        Ok(VerifyingReader::new(inner, descriptor.digest, descriptor.size, self.name.clone()))
    }
}

/// Writes an OCI layout directory.
pub struct LayoutDirSink {
    name: String,
    root: PathBuf,
    temp_counter: AtomicU64,
}

impl LayoutDirSink {
    pub fn new(root: &Path) -> Self {
        LayoutDirSink { name: root.display().to_string(), root: root.to_path_buf(), temp_counter: AtomicU64::new(0) }
    }

    /// Writes `relative` atomically: a temporary file beside it, synced, then renamed.
    fn publish(&self, relative: &str, write: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<(), StoreError> {
        let path = self.root.join(relative);
        let temp = path.with_file_name(format!(
            ".ferry-tmp-{}-{}",
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let context = || format!("writing {}", path.display());
        let result = File::create(&temp).and_then(|mut file| {
            write(&mut file)?;
            file.sync_all()
        });
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(StoreError::io(context(), e));
        }
        fs::rename(&temp, &path).map_err(|e| StoreError::io(context(), e))
    }
}

impl Sink for LayoutDirSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self, _plan: &Plan) -> Result<(), StoreError> {
        let blobs = self.root.join(SHA256_DIR);
        fs::create_dir_all(&blobs).map_err(|e| StoreError::io(format!("creating {}", blobs.display()), e))
    }

    fn has_blob(&self, descriptor: &Descriptor) -> Result<bool, StoreError> {
        // Blobs are published only after verifying, so a file of the right size is the blob.
        let path = self.root.join(descriptor.digest.blob_path());
        Ok(fs::symlink_metadata(path).is_ok_and(|meta| meta.is_file() && meta.len() == descriptor.size))
    }

    fn put_blob(&self, descriptor: &Descriptor, reader: &mut BlobReader<'_>) -> Result<(), StoreError> {
        self.publish(&descriptor.digest.blob_path(), |file| copy_verified(reader, file, 1 << 20).map(|_| ()))
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<(), StoreError> {
        self.publish(&manifest.digest().blob_path(), |file| file.write_all(manifest.bytes()))
    }

    fn finish(&mut self, plan: &Plan) -> Result<(), StoreError> {
        self.publish(OCI_LAYOUT_FILE, |file| file.write_all(&oci_layout_bytes()))?;
        self.publish(INDEX_FILE, |file| file.write_all(&plan.index.to_canonical_json()))
    }
}
