//! Reading an imgpkg bundle: its config label and the `.imgpkg/images.yml` inside its layer
//! (spec/imgpkg.md "Bundles", spec/archive.md BL-6), without extracting anything to disk.

use std::io;

use super::layer::{self, LayerError};
use crate::model::lock::{BundleMetadata, ImageRef, ImagesLock, LockError};
use crate::model::manifest::ImageConfigView;
use crate::model::media;
use crate::model::{Descriptor, ImageManifest, Reference};
use crate::store::{KEPT_BLOB_MAX, Source, StoreError};

const IMAGES_LOCK_PATH: &str = ".imgpkg/images.yml";
const BUNDLE_FILE_PATH: &str = ".imgpkg/bundle.yml";

/// One entry of a bundle's lock, parsed.
#[derive(Debug, Clone)]
pub struct LockEntry {
    pub entry: ImageRef,
    pub reference: Reference,
}

/// What a bundle's layer says.
#[derive(Debug, Clone)]
pub struct BundleContent {
    pub lock: ImagesLock,
    pub entries: Vec<LockEntry>,
    pub metadata: Option<BundleMetadata>,
}

/// Why a bundle's lock could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bundle {bundle}: {reason}")]
    Invalid { bundle: String, reason: String },
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The layer breaks the layer rules (spec/archive.md BL-*).
    #[error(transparent)]
    Layer(LayerError),
}

impl BundleError {
    /// A digest mismatch or a hostile layer, as opposed to a missing or unreadable one.
    pub fn is_integrity(&self) -> bool {
        match self {
            BundleError::Store(err) => err.is_integrity(),
            BundleError::Layer(err) => err.is_integrity(),
            BundleError::Invalid { .. } | BundleError::Lock(_) => false,
        }
    }
}

/// Whether a config (already read and verified; `config` is its descriptor) marks its image as
/// a bundle. A config that is not JSON of a config is not a bundle's; one with a key imgpkg would
/// read as another field (`"labels"` beside `"Labels"`, AR-R16) is refused as an integrity
/// failure, since ferry and imgpkg could disagree on whether it is a bundle.
pub fn is_bundle_config(config: &Descriptor, bytes: &[u8]) -> Result<bool, StoreError> {
    match ImageConfigView::parse(bytes) {
        Ok(view) => Ok(view.is_bundle()),
        Err(problem) if problem.is_malformed() => Ok(false),
        Err(problem) => {
            Err(StoreError::Rejected { store: format!("config {}", config.digest), reason: problem.to_string() })
        }
    }
}

/// Reads `.imgpkg/images.yml` (required) and `.imgpkg/bundle.yml` (optional) from a bundle's
/// single layer. The whole layer is read through its verifying reader before the lock is
/// trusted; `bundle` names the bundle in errors.
pub fn read_bundle(source: &dyn Source, manifest: &ImageManifest, bundle: &str) -> Result<BundleContent, BundleError> {
    let invalid = |reason: String| BundleError::Invalid { bundle: bundle.to_string(), reason };
    let [layer] = manifest.layers.as_slice() else {
        return Err(invalid(format!(
            "expected exactly one layer holding {IMAGES_LOCK_PATH}, found {}",
            manifest.layers.len()
        )));
    };
    let compression = media::layer_compression(&layer.media_type)
        .ok_or_else(|| invalid(format!("its layer has media type {:?}, which is not a tar layer", layer.media_type)))?;
    // A layer small enough to be kept is read whole, so a registry keeps it for the next read
    // of it (a second walk's, the transfer's): one GET, not one per read.
    let mut verified: Box<dyn io::Read + '_> = if layer.size <= KEPT_BLOB_MAX {
        Box::new(io::Cursor::new(source.small_blob(layer)?))
    } else {
        Box::new(source.blob(layer)?)
    };
    let read_error = |e: io::Error| BundleError::Store(StoreError::io(format!("reading bundle {bundle}'s layer"), e));
    let layer_name = format!("the layer of bundle {bundle} ({})", layer.digest);
    let found = {
        let stream = layer::decompress(compression, &mut verified).map_err(read_error)?;
        let stream = layer::Bounded::new(stream, layer::bundle_layer_limit(layer.size));
        layer::read_small_files(stream, &layer_name, true, &[IMAGES_LOCK_PATH, BUNDLE_FILE_PATH])
    };
    let [lock_text, metadata_text]: [Option<String>; 2] = match found {
        Ok(found) => found.try_into().expect("one slot per wanted file"),
        // A digest mismatch found while reading is the store's integrity error, not the layer's.
        Err(err) => match err.io_source().filter(|e| crate::verify::verify_error(e).is_some()) {
            Some(_) => {
                let LayerError::Io { source, .. } = err else { unreachable!("io_source is Some") };
                return Err(read_error(source));
            }
            None => return Err(BundleError::Layer(err)),
        },
    };
    // Drain what the tar reader left so the verifying reader sees the end and checks the digest.
    io::copy(&mut verified, &mut io::sink()).map_err(read_error)?;
    let lock_text = lock_text.ok_or_else(|| invalid(format!("expected {IMAGES_LOCK_PATH} in the bundle's layer")))?;
    let what = format!("{IMAGES_LOCK_PATH} of bundle {bundle}");
    let lock = ImagesLock::parse(&lock_text, &what)?;
    let entries = lock
        .references(&what)?
        .into_iter()
        .zip(&lock.images)
        .map(|(reference, entry)| LockEntry { entry: entry.clone(), reference })
        .collect();
    let metadata = match metadata_text {
        Some(text) => Some(BundleMetadata::parse(&text, &format!("{BUNDLE_FILE_PATH} of bundle {bundle}"))?),
        None => None,
    };
    Ok(BundleContent { lock, entries, metadata })
}
