//! `ferry copy (-b|-i|--lock) SRC --to-repo REPO`: from registries straight into one repository,
//! with no archive between. The same walk as export and the same publication as import (tags,
//! ImageLocations records, `--lock-output`); blobs already in another repository of the target
//! registry are mounted instead of uploaded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::export::{Expect, ExportError, check_expectation, fail_on_problems, warn_omitted};
use super::publish::relocate::{Publication, PublishError, PublishOptions, publish};
use crate::engine::{Artifact, Graph, Reporter, TransferOptions, WalkOptions};
use crate::model::{Digest, Repository};
use crate::store::registry::{RegistryClient, RegistrySource};

/// Options of a copy between registries.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    pub transfer: TransferOptions,
    pub include_non_distributable: bool,
    pub lock_output: Option<PathBuf>,
    /// Which signatures, attestations, SBOMs and referrers to carry (spec/archive.md AR-RF1).
    pub referrers: super::referrers::ReferrerChoice,
    /// How the `.imgpkg` tags are named (`--repo-based-tags`).
    pub tag_scheme: super::publish::relocate::TagScheme,
}

/// What a copy did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopySummary {
    /// The roots copied, as they were named.
    pub sources: Vec<String>,
    pub repository: String,
    pub bundles: usize,
    pub images: usize,
    pub referrers: super::referrers::ReferrerCounts,
    #[serde(flatten)]
    pub published: Publication,
    pub seconds: f64,
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Walk(#[from] ExportError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl CopyError {
    pub fn is_integrity(&self) -> bool {
        match self {
            CopyError::Walk(err) => err.is_integrity(),
            CopyError::Publish(err) => err.is_integrity(),
        }
    }
}

/// Walks from `roots` in the registries and publishes everything into `repository`.
pub fn copy_to_repo(
    source: &RegistrySource,
    roots: Vec<Artifact>,
    expect: Expect,
    client: &Arc<RegistryClient>,
    repository: &Repository,
    options: &CopyOptions,
    reporter: &dyn Reporter,
) -> Result<CopySummary, CopyError> {
    let started = Instant::now();
    let sources = roots.iter().map(Artifact::label).collect();
    let walk_options =
        WalkOptions { workers: options.transfer.workers, include_non_distributable: options.include_non_distributable };
    let graph = super::referrers::walk_with_referrers(source, roots, &walk_options, options.referrers);
    fail_on_problems(source, &graph)?;
    check_expectation(&graph, expect)?;
    warn_omitted(&graph, reporter);
    let publish_options = PublishOptions {
        transfer: options.transfer.clone(),
        lock_output: options.lock_output.clone(),
        mount_sources: mount_sources(source, &graph, repository),
        known: None,
        tag_scheme: options.tag_scheme,
    };
    let published = publish(source, &graph, client, repository, &publish_options, reporter)?;
    Ok(CopySummary {
        sources,
        repository: repository.to_string(),
        bundles: graph.bundles.len(),
        images: graph
            .artifacts
            .iter()
            .filter(|artifact| !artifact.is_bundle && !super::referrers::is_referrer(artifact))
            .count(),
        referrers: super::referrers::ReferrerCounts::of(&graph),
        published,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// For every blob of an artifact that lives in the target's registry, the repository it can be
/// mounted from (the first artifact naming it wins; the mount falls back to an upload anyway).
fn mount_sources(source: &RegistrySource, graph: &Graph, target: &Repository) -> HashMap<Digest, String> {
    let mut sources = HashMap::new();
    for artifact in &graph.artifacts {
        let Some(original) = &artifact.original else { continue };
        let from = &source.locate(original).repository;
        if from.registry != target.registry || from.path == target.path {
            continue;
        }
        for digest in graph.closure(&artifact.descriptor).into_keys() {
            if graph.blobs.contains_key(&digest) && !graph.manifests.contains_key(&digest) {
                sources.entry(digest).or_insert_with(|| from.path.clone());
            }
        }
    }
    sources
}
