//! `ferry inspect`: what an archive holds, for a person or a program (spec/cli.md "inspect").
//! Reads metadata only (manifests, configs, bundle layers); `verify` is what hashes layers.
//! An archive whose graph has an integrity problem (a malformed or missing manifest, a forged
//! size, nesting past the limit; spec/archive.md AR-R13..AR-R15) is refused, not listed: its
//! totals would mean nothing. Every total is added with checked arithmetic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use super::artifacts_of_index;
use super::referrers::ReferrerInfo;
use crate::engine::{Graph, WalkOptions, walk};
use crate::model::manifest::{SizeOverflow, checked_total};
use crate::model::{Digest, ManifestKind, sha256_digest};
use crate::store::StoreError;
use crate::store::layout_tar::{ArchiveError, ArchiveProblem};

/// The whole listing.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectReport {
    pub archive: String,
    pub identity: Digest,
    pub artifacts: Vec<ArtifactInfo>,
    pub blobs: usize,
    /// Bytes of all blob entries, each counted once (what the archive stores).
    pub unique_bytes: u64,
    /// Bytes of every artifact counted separately (what it would take without deduplication).
    pub total_bytes: u64,
    pub omitted_layers: Vec<String>,
    pub problems: Vec<String>,
    /// What verify would warn of and still pass (a blob nothing references in another tool's
    /// layout, AR-V3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// For a delta: what it relies on and its bases (spec/archive.md DL-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<crate::model::delta::DeltaRecord>,
}

/// One top-level artifact.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactInfo {
    pub name: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    /// `bundle`, `image` or `index`.
    pub kind: &'static str,
    pub root: bool,
    pub original_ref: Option<String>,
    pub root_tag: Option<String>,
    /// Bytes of the artifact with everything it references.
    pub bytes: u64,
    pub layers: usize,
    pub platforms: Vec<String>,
    pub lock: Vec<LockInfo>,
    /// Bundles (by digest) whose locks list this artifact.
    pub listed_by: Vec<Digest>,
    pub annotations: BTreeMap<String, String>,
    /// Its signatures, attestations, SBOMs and other referrers (spec/archive.md AR-RF2).
    pub referrers: Vec<super::referrers::ReferrerInfo>,
    /// For a referrer: what it refers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer_of: Option<Digest>,
}

/// One entry of a bundle's lock.
#[derive(Debug, Serialize)]
pub struct LockInfo {
    pub image: String,
    pub annotations: BTreeMap<String, String>,
}

/// Lists the archive at `path`.
pub fn inspect_archive(path: &Path, workers: usize) -> Result<InspectReport, StoreError> {
    let archive = super::archive::open_archive(path, workers)?;
    let options = WalkOptions { workers, include_non_distributable: true };
    let graph = walk(&archive, artifacts_of_index(archive.index()), &options);
    let refused = |reason: String| {
        StoreError::Archive(ArchiveError {
            archive: path.display().to_string(),
            problem: ArchiveProblem::Graph { reason },
        })
    };
    let integrity: Vec<&str> =
        graph.problems.iter().filter(|problem| problem.integrity).map(|problem| problem.message.as_str()).collect();
    if !integrity.is_empty() {
        return Err(refused(integrity.join("\n  ")));
    }
    let overflow = |err: SizeOverflow| refused(err.to_string());
    let referrers = super::referrers::referrers_by_subject(&graph);
    let artifacts = graph
        .artifacts
        .iter()
        .map(|artifact| describe(&graph, artifact, &referrers))
        .collect::<Result<_, _>>()
        .map_err(overflow)?;
    let stored = archive.stored_blobs();
    let unique_bytes =
        checked_total(&|| "the archive's blob entries".to_string(), stored.iter().map(|(d, s)| (*d, *s)))
            .map_err(overflow)?;
    let total_bytes = graph.checked_bytes_without_dedup().map_err(overflow)?;
    let omitted_layers = archive.index().omitted_layers();
    // What verify says of a blob nothing references (AR-R11, AR-V3), inspect says too.
    let mut problems: Vec<String> = graph.problems.iter().map(|p| p.message.clone()).collect();
    let unreferenced = super::verify::unreferenced_blobs(archive.index(), &graph, &stored)
        .into_iter()
        .map(|digest| format!("blob {digest} is not referenced by any artifact"));
    let mut warnings = Vec::new();
    match &archive {
        // In ferry's own archives such a blob was added after export: a failure, as in verify.
        super::archive::Archive::Layout(layout) if crate::model::index_rules::is_ferry_archive(layout.index()) => {
            problems.extend(unreferenced.map(|text| format!("{text} (AR-R11)")))
        }
        _ => warnings.extend(unreferenced),
    }
    Ok(InspectReport {
        archive: path.display().to_string(),
        identity: sha256_digest(archive.index_bytes()),
        artifacts,
        blobs: stored.len(),
        unique_bytes,
        total_bytes,
        omitted_layers,
        problems,
        warnings,
        delta: super::delta::delta_record(&archive, archive.index())?,
    })
}

/// `referrers`: every subject's referrers ([`super::referrers::referrers_by_subject`]).
fn describe(
    graph: &Graph,
    artifact: &crate::engine::Artifact,
    referrers: &HashMap<Digest, Vec<ReferrerInfo>>,
) -> Result<ArtifactInfo, SizeOverflow> {
    let digest = artifact.descriptor.digest;
    let manifest = graph.manifests.get(&digest);
    let (kind, layers, platforms) = match manifest.map(|m| m.kind()) {
        Some(ManifestKind::Index(index)) => {
            let platforms: BTreeSet<String> =
                index.manifests.iter().filter_map(|child| child.platform.as_ref().map(ToString::to_string)).collect();
            ("index", 0, platforms.into_iter().collect())
        }
        Some(ManifestKind::Image(image)) => {
            let kind = if artifact.is_bundle {
                "bundle"
            } else if super::referrers::is_referrer(artifact) {
                "referrer"
            } else {
                "image"
            };
            (kind, image.layers.len(), Vec::new())
        }
        None => ("unreadable", 0, Vec::new()),
    };
    let lock = graph
        .bundles
        .get(&digest)
        .map(|bundle| {
            bundle
                .lock
                .images
                .iter()
                .map(|entry| LockInfo { image: entry.image.clone(), annotations: entry.annotations.clone() })
                .collect()
        })
        .unwrap_or_default();
    let notes = &artifact.annotations;
    Ok(ArtifactInfo {
        name: artifact.ref_name.clone(),
        digest,
        media_type: artifact.descriptor.media_type.clone(),
        kind,
        root: artifact.is_root,
        original_ref: artifact.original.as_ref().map(ToString::to_string),
        // The tag import gives it (its root-tag, else its original reference's tag), so that
        // what a reviewer reads is what the import does.
        root_tag: artifact.root_tag(),
        bytes: graph.artifact_bytes(artifact)?,
        layers,
        platforms,
        lock,
        listed_by: artifact.listed_by.clone(),
        annotations: notes.clone(),
        referrers: referrers.get(&digest).cloned().unwrap_or_default(),
        referrer_of: super::referrers::subject_of(artifact),
    })
}
