//! `ferry inventory` (spec/cli.md "inventory", spec/archive.md DL-1): what a repository holds
//! (its tags' manifests walked) or what archives hold, as an [`Inventory`], to be carried back
//! across the gap and given to `ferry export --base`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::archive::{Archive, open_archive};
use super::artifacts_of_index;
use super::delta::delta_record;
use crate::engine::{Artifact, Graph, WalkOptions, walk};
use crate::model::inventory::{Inventory, Kind};
use crate::model::{ManifestKind, Repository, sha256_digest};
use crate::store::registry::{RegistryClient, RegistrySource, list_tags};
use crate::store::{BlobRole, Source, StoreError};

/// The manifests and blobs reachable from every tag of `repository` (internal `.imgpkg` tags
/// included), bundles' lock entries looked for in the same repository (where an import puts
/// them). A manifest a tag points at means its subtree is there.
pub fn of_repository(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    workers: usize,
) -> Result<Inventory, StoreError> {
    let source = RegistrySource::relocated_to(Arc::clone(client), repository.clone());
    // A repository that does not exist yet holds nothing: an empty inventory, not an error.
    let tags = match list_tags(client, repository) {
        Ok(tags) => tags,
        Err(err) if err.is_not_found() => Vec::new(),
        Err(err) => return Err(StoreError::from(err)),
    };
    let mut seen = BTreeSet::new();
    let mut roots = Vec::new();
    for tag in tags {
        let descriptor = source.resolve(&repository.at_tag(&tag))?;
        if seen.insert(descriptor.digest) {
            roots.push(Artifact::new(descriptor));
        }
    }
    let graph = walk(&source, roots, &WalkOptions { workers, include_non_distributable: true });
    let mut inventory = Inventory { sources: vec![format!("repository {repository}")], ..Inventory::default() };
    add_graph(&mut inventory, &graph, &|_| true);
    Ok(inventory)
}

/// What the archives at `paths` hold together (their stored blobs and manifests, and for a
/// delta what it relies on: a target that imported it holds those too).
pub fn of_archives(paths: &[&Path], workers: usize) -> Result<Inventory, StoreError> {
    let mut inventory = Inventory::default();
    for path in paths {
        let archive = open_archive(path, workers)?;
        let one = of_archive(&archive, &path.display().to_string(), workers, true)?;
        inventory.sources.extend(one.sources);
        inventory.entries.extend(one.entries);
    }
    Ok(inventory)
}

/// What one opened archive holds; with `relied_on`, a delta's relied-on blobs count too.
pub fn of_archive(archive: &Archive, name: &str, workers: usize, relied_on: bool) -> Result<Inventory, StoreError> {
    let stored = archive.stored_blobs();
    let record = delta_record(archive, archive.index())?;
    let relied: BTreeSet<_> = match (&record, relied_on) {
        (Some(record), true) => record.relies_on.iter().map(|r| r.digest).collect(),
        _ => BTreeSet::new(),
    };
    let graph =
        walk(archive, artifacts_of_index(archive.index()), &WalkOptions { workers, include_non_distributable: true });
    let identity = sha256_digest(archive.index_bytes());
    let mut inventory = Inventory { sources: vec![format!("archive {name} {identity}")], ..Inventory::default() };
    add_graph(&mut inventory, &graph, &|digest| stored.contains_key(digest) || relied.contains(digest));
    Ok(inventory)
}

/// Adds every manifest and blob of `graph` that `holds` says is there.
fn add_graph(inventory: &mut Inventory, graph: &Graph, holds: &dyn Fn(&crate::model::Digest) -> bool) {
    for (digest, manifest) in &graph.manifests {
        let kind = match manifest.kind() {
            ManifestKind::Index(_) => Kind::Index,
            ManifestKind::Image(_) => Kind::Manifest,
        };
        inventory.entries.insert(*digest, (manifest.bytes().len() as u64, kind));
    }
    for (digest, (descriptor, role)) in &graph.blobs {
        if holds(digest) {
            let kind = if *role == BlobRole::Config { Kind::Config } else { Kind::Layer };
            inventory.entries.insert(*digest, (descriptor.size, kind));
        }
    }
}
