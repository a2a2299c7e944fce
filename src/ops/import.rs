//! `ferry import ARCHIVE --to-repo REPO`: verify every byte, seed one repository, tag it the
//! imgpkg way and record where everything landed (spec/imgpkg.md "Import", spec/archive.md "Reading").
//!
//! Fail closed for what is sent (spec/cli.md "import", IM-1): the archive's structure and every
//! manifest are checked, and every blob that will be pushed is hashed, before anything is pushed.
//! The target is asked first, top down (IM-2, [`super::publish::incremental`]): what it holds is neither
//! read nor hashed. Then the missing blobs, manifests children first, then tags, then one
//! ImageLocations record per bundle; finally every tag is resolved and compared. The source
//! registries named in the archive are never contacted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::archive::{Archive, open_archive};
use super::delta;
use super::publish::incremental;
use super::publish::incremental::Probe;
use super::publish::relocate::{Publication, PublishError, PublishOptions, publish};
use super::verify;
use crate::engine::{Reporter, TransferOptions};
use crate::model::layout::LayoutIndex;
use crate::model::{Digest, Repository};
use crate::store::registry::RegistryClient;
use crate::store::{Source, StoreError};

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
    /// How the `.imgpkg` tags are named (`--repo-based-tags`).
    pub tag_scheme: super::publish::relocate::TagScheme,
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
    /// A delta whose relied-on blobs the target lacks (spec/archive.md DL-5): nothing pushed.
    #[error(
        "{archive} is a delta, and {repository} lacks {} blob(s) it relies on; nothing was pushed: import its base first\n  {}",
        .missing.len(),
        .missing.join("\n  ")
    )]
    MissingBase { archive: String, repository: String, missing: Vec<String> },
    /// `import -` of a delta (spec/archive.md DL-5): refused at `index.json`, nothing pushed.
    #[error(
        "{stream} is a delta (it relies on blobs of an earlier archive, spec/archive.md DL-2); nothing was pushed: \
         import it from its file (`ferry import FILE --to-repo REPO`), which makes sure the target holds what it relies \
         on before anything is pushed (DL-5)",
        stream = super::stream::STREAM_NAME
    )]
    StreamedDelta,
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
            ImportError::MissingNonDistributable { .. }
            | ImportError::Interrupted { .. }
            | ImportError::MissingBase { .. }
            | ImportError::StreamedDelta => false,
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
    let archive_name = path.display().to_string();
    verify::refuse_non_file(path)?;
    let archive = match open_archive(path, options.transfer.workers) {
        Ok(archive) => archive,
        Err(err) if err.is_integrity() || matches!(err, StoreError::Invalid { .. }) => {
            return Err(ImportError::Integrity { archive: archive_name, failures: vec![err.to_string()] });
        }
        Err(err) => return Err(err.into()),
    };
    import_opened(&archive_name, &archive, &archive, client, repository, options, reporter)
}

/// Imports an opened archive, reading every manifest and blob through `reader` (the archive
/// itself; a test counts what is read through a wrapper). Fail closed for what is sent (spec/cli.md
/// "import", IM-1): the structure is checked and every blob that will be pushed is hashed before
/// anything is pushed; blobs the target holds are never read (IM-2).
pub fn import_opened(
    archive_name: &str,
    archive: &Archive,
    reader: &dyn Source,
    client: Arc<RegistryClient>,
    repository: &Repository,
    options: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let integrity = |failures: Vec<String>| ImportError::Integrity { archive: archive_name.to_string(), failures };
    let identity = crate::model::sha256_digest(archive.index_bytes());
    if let Some(mismatch) =
        options.identity.as_ref().and_then(|expected| verify::identity_mismatch(Some(&identity), expected))
    {
        return Err(integrity(vec![mismatch]));
    }
    let workers = options.transfer.workers;
    let (failures, _warnings, graph) = incremental::check_structure(archive, reader, workers);
    if !failures.is_empty() {
        return Err(integrity(failures));
    }
    refuse_omitted_layers(archive_name, archive.index())?;
    let relied = match delta::delta_record(reader, archive.index()) {
        Ok(record) => record.as_ref().map(delta::relied_on_by_digest).unwrap_or_default(),
        Err(err) => return Err(integrity(vec![err.to_string()])),
    };
    // Signatures are checked before anything is pushed (AR-RF4); their payloads are read
    // through the verifying reader.
    if options.signatures.wanted() {
        let signatures = super::signatures::check_signatures(reader, &graph, &options.signatures);
        if !signatures.failures.is_empty() {
            return Err(integrity(signatures.failures));
        }
    };
    let send = |probe: Probe| -> Result<Publication, ImportError> {
        let known = incremental::probe_target(&graph, &client, repository, probe, workers, reporter)?;
        // DL-5: every blob the delta relies on must already be in the target.
        let missing: Vec<String> = relied
            .iter()
            .filter(|(digest, _)| known.blobs_missing.contains(digest))
            .map(|(digest, base)| format!("{digest}, from {base}"))
            .collect();
        // IM-3: sessions the asking opened are cancelled when nothing will be sent.
        let abandon = |known: incremental::KnownTarget| {
            incremental::cancel_uploads(&client, repository, known.uploads_opened.into_values().collect(), workers)
        };
        if !missing.is_empty() {
            abandon(known);
            return Err(ImportError::MissingBase {
                archive: archive_name.to_string(),
                repository: repository.to_string(),
                missing,
            });
        }
        let failures = incremental::verify_to_push(&graph, reader, &known.blobs_missing, workers, reporter);
        if !failures.is_empty() {
            abandon(known);
            return Err(integrity(failures));
        }
        let publish_options = PublishOptions {
            transfer: options.transfer.clone(),
            lock_output: options.lock_output.clone(),
            known: Some(known),
            tag_scheme: options.tag_scheme,
            ..PublishOptions::default()
        };
        Ok(publish(reader, &graph, &client, repository, &publish_options, reporter)?)
    };
    let published = match send(Probe::ManifestsFirst) {
        Err(ImportError::Publish(err)) if incremental::is_blob_unknown(&err) => {
            // A target whose manifests outlived their blobs (blobs deleted under them): ask
            // for every blob instead, as if nothing were known.
            reporter.warn(&format!(
                "{repository} holds manifests whose blobs are missing ({err}); asking for every blob and sending what it lacks"
            ));
            send(Probe::EveryBlob)?
        }
        other => other?,
    };
    Ok(ImportSummary {
        archive: archive_name.to_string(),
        repository: repository.to_string(),
        identity,
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
