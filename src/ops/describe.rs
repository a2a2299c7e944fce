//! `ferry describe`: a bundle's tree (spec/cli.md "describe"): the bundle, every image and
//! nested bundle its lock lists, recursively, with where each lives now and where it came
//! from. A relocated bundle (PL-2) is described from its repository alone; its images' origins
//! are shown, never contacted. Built on the engine's walk, like every other command.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::bundle::located::bundle_source;
use super::export::reference_root;
use crate::engine::{Artifact, Graph, WalkOptions, walk};
use crate::model::{Digest, ManifestKind, Reference};
use crate::store::registry::{RegistryClient, RegistrySource};
use crate::store::{Source, StoreError};

/// One artifact of the tree.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Where it is read from now.
    pub reference: String,
    /// The reference its bundle's lock names (its origin), if it is a lock entry.
    pub origin: Option<String>,
    pub digest: Digest,
    /// `bundle`, `image` or `index`.
    pub kind: &'static str,
    pub platforms: Vec<String>,
    /// Bytes of the manifest and everything it references, shared blobs counted once.
    pub size: u64,
    /// The lock entry's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Whether it was found in the relocated bundle's repository rather than at its origin.
    pub relocated: bool,
    pub children: Vec<Node>,
}

/// Why a description failed.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotABundle(String),
    #[error("cannot describe {reference}:\n  {}", .problems.join("\n  "))]
    Incomplete { reference: String, problems: Vec<String>, integrity: bool },
}

impl DescribeError {
    pub fn is_integrity(&self) -> bool {
        match self {
            DescribeError::Store(err) => err.is_integrity(),
            DescribeError::Incomplete { integrity, .. } => *integrity,
            DescribeError::NotABundle(_) => false,
        }
    }
}

/// Describes the bundle `reference` names in its registry.
pub fn describe_in_registry(
    client: &Arc<RegistryClient>,
    reference: &Reference,
    workers: usize,
) -> Result<Node, DescribeError> {
    let plain = RegistrySource::new(Arc::clone(client));
    let root = reference_root(&plain, reference)?;
    let home = reference.repository.clone();
    let (source, relocated) = bundle_source(client, &plain, &root, &home)?;
    let graph = walk_from(&source, vec![root.clone()], workers)?;
    let place = |digest: Digest, origin: Option<&Reference>| match (relocated, origin) {
        (true, _) | (false, None) => home.at_digest(digest).to_string(),
        (false, Some(origin)) => origin.to_string(),
    };
    let walked = graph.artifact(&root.descriptor.digest).unwrap_or(&root);
    let mut node = tree(&graph, walked, None, &place, &mut BTreeSet::new());
    node.reference = root.label();
    mark_relocated(&mut node, relocated);
    Ok(node)
}

/// Describes every root bundle of an archive.
pub fn describe_archive(
    source: &dyn Source,
    artifacts: Vec<Artifact>,
    workers: usize,
) -> Result<Vec<Node>, DescribeError> {
    // Another tool's OCI layout marks no roots: every artifact of its index.json is one.
    let any_root = artifacts.iter().any(|artifact| artifact.is_root);
    let roots: Vec<Artifact> = artifacts
        .into_iter()
        .filter(|artifact| artifact.is_root || !any_root)
        .map(|artifact| Artifact { is_root: true, ..artifact })
        .collect();
    let graph = walk_from(source, roots.clone(), workers)?;
    let place =
        |digest: Digest, origin: Option<&Reference>| origin.map_or_else(|| digest.to_string(), |o| o.to_string());
    let nodes: Vec<Node> = graph
        .artifacts
        .iter()
        .filter(|artifact| artifact.is_root && artifact.is_bundle)
        .map(|root| Node { reference: root.label(), ..tree(&graph, root, None, &place, &mut BTreeSet::new()) })
        .collect();
    if nodes.is_empty() {
        return Err(DescribeError::NotABundle(format!(
            "{} holds no bundle; ferry inspect lists its images",
            source.name()
        )));
    }
    Ok(nodes)
}

fn walk_from(source: &dyn Source, roots: Vec<Artifact>, workers: usize) -> Result<Graph, DescribeError> {
    let label = roots.iter().map(Artifact::label).collect::<Vec<_>>().join(", ");
    let graph = walk(source, roots, &WalkOptions { workers: workers.max(1), include_non_distributable: true });
    if !graph.problems.is_empty() {
        return Err(DescribeError::Incomplete {
            reference: label,
            problems: graph.problems.iter().map(|p| p.message.clone()).collect(),
            integrity: graph.problems.iter().any(|p| p.integrity),
        });
    }
    if !graph.artifacts.iter().any(|artifact| artifact.is_root && artifact.is_bundle) {
        return Err(DescribeError::NotABundle(format!("{label} is not a bundle (its config has no bundle label)")));
    }
    Ok(graph)
}

/// The node of `artifact`, with its lock entries below it when it is a bundle. `seen` holds the
/// bundles on the path from the root, so a bundle listing itself cannot recurse forever.
fn tree(
    graph: &Graph,
    artifact: &Artifact,
    entry: Option<(&Reference, &BTreeMap<String, String>)>,
    place: &dyn Fn(Digest, Option<&Reference>) -> String,
    seen: &mut BTreeSet<Digest>,
) -> Node {
    let digest = artifact.descriptor.digest;
    let manifest = graph.manifests.get(&digest);
    let (kind, platforms) = match manifest.map(|m| m.kind()) {
        Some(ManifestKind::Index(index)) => {
            let platforms: BTreeSet<String> =
                index.manifests.iter().filter_map(|child| child.platform.as_ref().map(ToString::to_string)).collect();
            ("index", platforms.into_iter().collect())
        }
        _ if artifact.is_bundle => ("bundle", Vec::new()),
        _ => ("image", Vec::new()),
    };
    let mut children = Vec::new();
    if artifact.is_bundle && seen.insert(digest) {
        if let Some(content) = graph.bundles.get(&digest) {
            for lock_entry in &content.entries {
                let Some(child) = lock_entry.reference.digest.and_then(|d| graph.artifact(&d)) else { continue };
                let child_entry = Some((&lock_entry.reference, &lock_entry.entry.annotations));
                children.push(tree(graph, child, child_entry, place, seen));
            }
        }
        seen.remove(&digest);
    }
    Node {
        reference: place(digest, entry.map(|(origin, _)| origin)),
        origin: entry.map(|(origin, _)| origin.to_string()),
        digest,
        kind,
        platforms,
        size: graph.closure(&artifact.descriptor).values().sum(),
        annotations: entry.map(|(_, notes)| notes.clone()).unwrap_or_default(),
        relocated: false,
        children,
    }
}

fn mark_relocated(node: &mut Node, relocated: bool) {
    for child in &mut node.children {
        child.relocated = relocated;
        mark_relocated(child, relocated);
    }
}
