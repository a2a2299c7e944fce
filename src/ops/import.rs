//! `ferry import ARCHIVE --to-repo REPO`: verify every byte, seed one repository, tag it the
//! imgpkg way and record where everything landed (spec/imgpkg.md "Import", spec/archive.md "Reading").
//!
//! Fail closed: the archive is verified completely before anything is pushed. Then blobs
//! (skipping those the repository has), manifests children first, then tags, then one
//! ImageLocations record per bundle; finally every tag is resolved and compared. The source
//! registries named in the archive are never contacted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::relocate::{Publication, PublishError, PublishOptions, publish};
use super::verify;
use crate::engine::{Reporter, TransferOptions};
use crate::model::layout::LayoutIndex;
use crate::model::{Digest, Repository};
use crate::store::StoreError;
use crate::store::registry::RegistryClient;

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub transfer: TransferOptions,
    /// Write a BundleLock (bundle archives) or ImagesLock (image archives) here.
    pub lock_output: Option<PathBuf>,
    /// Refuse the archive unless its identity (AR-6) is this one.
    pub identity: Option<Digest>,
    /// Refuse it unless its signatures verify with these keys (spec/archive.md AR-RF4).
    pub signatures: super::signatures::SignatureOptions,
}

/// What an import did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    pub archive: String,
    pub repository: String,
    pub identity: Digest,
    #[serde(flatten)]
    pub published: Publication,
    pub seconds: f64,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{archive} failed verification; nothing was pushed:\n  {}", .failures.join("\n  "))]
    Integrity { archive: String, failures: Vec<String> },
    #[error(
        "{archive} was exported without its non-distributable layers ({}); importing needs them and ferry never contacts the source registries: re-export with --include-non-distributable-layers",
        .layers.join(", ")
    )]
    MissingNonDistributable { archive: String, layers: Vec<String> },
    /// `import -`: the registry failed while the stream was being read (RF-4). The stream was
    /// not found damaged; what it had delivered was verified.
    #[error(
        "{cause}\nthe registry failed during the import from {stream}: {blobs_uploaded} blob(s) ({bytes_uploaded} bytes) \
         had been uploaded before the failure and {blobs_verified} blob(s) of the stream had arrived verified; \
         no manifest and no tag was pushed; run the import again (blobs already uploaded are skipped)",
        stream = super::stream::STREAM_NAME
    )]
    Interrupted { cause: Box<StoreError>, blobs_verified: usize, blobs_uploaded: u64, bytes_uploaded: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl ImportError {
    pub fn is_integrity(&self) -> bool {
        match self {
            ImportError::Integrity { .. } => true,
            ImportError::Store(err) => err.is_integrity(),
            ImportError::Publish(err) => err.is_integrity(),
            ImportError::MissingNonDistributable { .. } | ImportError::Interrupted { .. } => false,
        }
    }
}

/// Imports the archive at `path` into `repository`.
pub fn import_archive(
    path: &Path,
    client: Arc<RegistryClient>,
    repository: &Repository,
    options: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let archive_name = path.display().to_string();
    // The check walks the archive's graph (walk problems are verify failures), so a sound
    // archive comes back opened and walked.
    let verify_options = verify::VerifyOptions { workers: options.transfer.workers, volume_digests: false };
    let (mut report, checked) = verify::check_archive(path, &verify_options, reporter)?;
    if let Some(expected) = &options.identity {
        report.expect_identity(expected);
    }
    // Signatures are checked before anything is pushed (AR-RF4).
    report.check_signatures(checked.as_ref(), &options.signatures);
    let (archive, graph) = match checked {
        Some(checked) if report.ok => checked,
        _ => return Err(ImportError::Integrity { archive: archive_name, failures: report.failures }),
    };
    refuse_omitted_layers(&archive_name, archive.index())?;
    let publish_options = PublishOptions {
        transfer: options.transfer.clone(),
        lock_output: options.lock_output.clone(),
        ..PublishOptions::default()
    };
    let published = publish(&archive, &graph, &client, repository, &publish_options, reporter)?;
    Ok(ImportSummary {
        archive: archive_name,
        repository: repository.to_string(),
        identity: crate::model::sha256_digest(archive.index_bytes()),
        published,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Non-distributable layers left out at export cannot be fetched offline.
fn refuse_omitted_layers(archive: &str, index: &LayoutIndex) -> Result<(), ImportError> {
    let layers = index.omitted_layers();
    if layers.is_empty() {
        return Ok(());
    }
    Err(ImportError::MissingNonDistributable { archive: archive.to_string(), layers })
}
