//! Reading an imgpkg bundle: its config label and the `.imgpkg/images.yml` inside its layer
//! (IMGPKG-COMPAT "Recognising a bundle"), without extracting anything to disk.

use std::io::{self, Read};

use crate::model::lock::{BundleMetadata, ImageRef, ImagesLock, LockError, MAX_LOCK_BYTES};
use crate::model::manifest::ImageConfigView;
use crate::model::media::{self, Compression};
use crate::model::{ImageManifest, Reference};
use crate::store::{Source, StoreError};

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
}

/// Whether a config (already read and verified) marks its image as a bundle.
pub fn is_bundle_config(config: &[u8]) -> bool {
    ImageConfigView::parse(config).is_ok_and(|view| view.is_bundle())
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
    let mut verified = source.blob(layer)?;
    let read_error = |e: io::Error| BundleError::Store(StoreError::io(format!("reading bundle {bundle}'s layer"), e));
    let (lock_text, metadata_text) = {
        let decompressed: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut verified),
            Compression::Gzip => Box::new(flate2::read::GzDecoder::new(&mut verified)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(&mut verified).map_err(read_error)?),
        };
        find_lock_files(decompressed).map_err(read_error)?
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

/// Scans a tar stream for the two files; bounded in size, nothing written anywhere.
fn find_lock_files(stream: impl Read) -> io::Result<(Option<String>, Option<String>)> {
    let mut archive = tar::Archive::new(stream);
    let (mut lock, mut metadata) = (None, None);
    for entry in archive.entries()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let clean = path.trim_start_matches("./");
        let slot = match clean {
            IMAGES_LOCK_PATH if lock.is_none() => &mut lock,
            BUNDLE_FILE_PATH if metadata.is_none() => &mut metadata,
            _ => continue,
        };
        if entry.size() > MAX_LOCK_BYTES as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{clean} is {} bytes, over the {MAX_LOCK_BYTES}-byte limit", entry.size()),
            ));
        }
        let mut text = String::new();
        entry.take(MAX_LOCK_BYTES as u64).read_to_string(&mut text)?;
        *slot = Some(text);
    }
    Ok((lock, metadata))
}
