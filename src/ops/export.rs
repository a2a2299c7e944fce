//! `ferry export`: write everything a set of artifacts needs into one archive.
//!
//! The source here is an OCI layout directory (`--oci-layout`); the walk, plan and transfer are
//! the engine's, so registry sources plug in without changing this flow.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::artifacts_of_index;
use crate::engine::{Graph, Reporter, TransferError, TransferOptions, WalkOptions, build_plan, transfer, walk};
use crate::model::{Digest, sha256_digest};
use crate::store::layout_dir::LayoutDirSource;
use crate::store::layout_tar::LayoutTarSink;
use crate::store::{Source, StoreError};

/// What an export did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSummary {
    pub archive: String,
    pub identity: Digest,
    pub artifacts: usize,
    pub bundles: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub archive_bytes: u64,
    pub blob_bytes: u64,
    /// Bytes that would have been written again without deduplication.
    pub dedup_saved_bytes: u64,
    pub omitted_layers: Vec<String>,
    pub seconds: f64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot export from {source_name}:\n  {}", .problems.join("\n  "))]
    Incomplete { source_name: String, problems: Vec<String>, integrity: bool },
    #[error(transparent)]
    Transfer(#[from] TransferError),
}

impl ExportError {
    pub fn is_integrity(&self) -> bool {
        match self {
            ExportError::Store(err) => err.is_integrity(),
            ExportError::Incomplete { integrity, .. } => *integrity,
            ExportError::Transfer(err) => err.is_integrity(),
        }
    }
}

/// Options of an export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub transfer: TransferOptions,
    pub include_non_distributable: bool,
}

/// Archives the OCI layout directory `layout` into `output`.
pub fn export_layout(
    layout: &Path,
    output: &Path,
    options: &ExportOptions,
    reporter: &dyn Reporter,
) -> Result<ExportSummary, ExportError> {
    let started = Instant::now();
    let source = LayoutDirSource::open(layout)?;
    let mut roots = artifacts_of_index(source.index());
    for root in &mut roots {
        root.is_root = true;
    }
    let walk_options =
        WalkOptions { workers: options.transfer.workers, include_non_distributable: options.include_non_distributable };
    let graph = walk(&source, roots, &walk_options);
    fail_on_problems(&source, &graph)?;
    for omitted in graph.omitted.values() {
        let users: Vec<String> = graph
            .artifacts
            .iter()
            .filter(|artifact| graph.closure(&artifact.descriptor).contains_key(&omitted.digest))
            .map(|artifact| artifact.label())
            .collect();
        reporter.warn(&format!(
            "leaving out non-distributable layer {} ({} bytes) of {}; pass --include-non-distributable-layers to carry it",
            omitted.digest,
            omitted.size,
            users.join(", ")
        ));
    }
    let plan = build_plan(&graph);
    let mut sink = LayoutTarSink::new(output);
    transfer(&source, &mut sink, &plan, &options.transfer, reporter)?;

    let archive_bytes =
        std::fs::metadata(output).map_err(|e| StoreError::io(format!("reading {}", output.display()), e))?.len();
    let unique: u64 = plan.blob_bytes() + plan.manifest_bytes();
    let per_artifact: u64 = graph.artifacts.iter().map(|a| graph.closure(&a.descriptor).values().sum::<u64>()).sum();
    Ok(ExportSummary {
        archive: output.display().to_string(),
        identity: sha256_digest(&plan.index.to_canonical_json()),
        artifacts: plan.index.manifests.len(),
        bundles: graph.bundles.len(),
        manifests: plan.manifests.len(),
        blobs: plan.blobs.len(),
        archive_bytes,
        blob_bytes: plan.blob_bytes(),
        dedup_saved_bytes: per_artifact.saturating_sub(unique),
        omitted_layers: plan.omitted.iter().map(|d| d.digest.to_string()).collect(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// An export carries everything or nothing: any problem found by the walk stops it, and every
/// problem is named.
fn fail_on_problems(source: &dyn Source, graph: &Graph) -> Result<(), ExportError> {
    if graph.problems.is_empty() {
        return Ok(());
    }
    Err(ExportError::Incomplete {
        source_name: source.name().to_string(),
        problems: graph.problems.iter().map(|p| p.message.clone()).collect(),
        integrity: graph.problems.iter().any(|p| p.integrity),
    })
}
