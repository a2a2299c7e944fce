//! `ferry push (-b|-i) REF -f PATH..`: build a bundle or image from files (ops::bundle::build) and push it
//! through the engine into one repository, tagged with the given tag and `sha256-<hex>.imgpkg`
//! as imgpkg does; the tag is read back and checked, and `--lock-output` written.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::bundle::build::{BuildError, BuildOptions, build};
use super::publish::relocate::write_private;
use crate::engine::{Reporter, TransferError, TransferOptions, transfer};
use crate::model::lock::{BundleLock, ImageRef, ImagesLock};
use crate::model::{Digest, Reference};
use crate::store::registry::{RegistryClient, RegistrySink, RegistrySource};
use crate::store::{Source, StoreError};

/// Options of a push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub build: BuildOptions,
    pub transfer: TransferOptions,
    pub lock_output: Option<PathBuf>,
}

/// What a push did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushSummary {
    /// `REPO@sha256:..` of what was pushed.
    pub image: String,
    pub digest: Digest,
    pub bundle: bool,
    pub tags: Vec<String>,
    pub files: usize,
    pub layer_bytes: u64,
    pub blobs_uploaded: u64,
    pub lock_output: Option<String>,
    pub seconds: f64,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error("after the push, {reference} points at {actual}, not {expected}")]
    Mismatch { reference: String, expected: Digest, actual: Digest },
}

impl PushError {
    pub fn is_integrity(&self) -> bool {
        match self {
            PushError::Store(err) => err.is_integrity(),
            PushError::Transfer(err) => err.is_integrity(),
            PushError::Build(_) | PushError::Mismatch { .. } => false,
        }
    }
}

/// Builds what `options` describe and pushes it to `reference` (`latest` when it names no tag).
pub fn push(
    client: &Arc<RegistryClient>,
    reference: &Reference,
    options: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<PushSummary, PushError> {
    let started = Instant::now();
    let built = build(&options.build)?;
    let digest = built.manifest().digest();
    let repository = &reference.repository;
    let tag = reference.tag.clone().unwrap_or_else(|| "latest".to_string());
    let tags = vec![tag.clone(), format!("{}.imgpkg", digest.tag_form())];
    let mut sink = RegistrySink::new(Arc::clone(client), repository.clone());
    for name in &tags {
        sink.add_tag(name.clone(), built.manifest().clone());
    }
    let plan = built.plan();
    let stats = transfer(&built, &mut sink, &plan, &options.transfer, reporter)?;

    let found = RegistrySource::new(Arc::clone(client)).resolve(&repository.at_tag(&tag))?;
    if found.digest != digest {
        return Err(PushError::Mismatch {
            reference: repository.at_tag(&tag).to_string(),
            expected: digest,
            actual: found.digest,
        });
    }
    let pushed = repository.at_digest(digest).to_string();
    let lock_output = match &options.lock_output {
        Some(file) => {
            let text = if options.build.bundle {
                BundleLock::new(pushed.clone(), Some(tag.clone())).to_yaml()
            } else {
                ImagesLock::new(vec![ImageRef { image: pushed.clone(), annotations: Default::default() }]).to_yaml()
            };
            write_private(file, &text).map_err(|e| StoreError::io(format!("writing {}", file.display()), e))?;
            Some(file.display().to_string())
        }
        None => None,
    };
    Ok(PushSummary {
        image: pushed,
        digest,
        bundle: options.build.bundle,
        tags,
        files: built.files,
        layer_bytes: plan.blob_bytes(),
        blobs_uploaded: stats.blobs_copied,
        lock_output,
        seconds: started.elapsed().as_secs_f64(),
    })
}
