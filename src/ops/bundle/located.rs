//! Where a bundle's images are now, and so where every command reads them from (spec/imgpkg.md
//! "Where a bundle is read from", spec/cli.md PL-2): a bundle relocated into a repository
//! carries its images there, which the record `sha256-<hex>.image-locations.imgpkg` says;
//! without a record, each lock entry is looked up there by digest. The origins a lock names are
//! never contacted to decide this, nor afterwards when the bundle is relocated. [`read_from`]
//! is the one decision every command reading a bundle from a registry takes.

use std::sync::Arc;

use crate::engine::{LockEntry, run_all};
use crate::model::lock::ImageLocations;
use crate::model::{Digest, ManifestKind, Repository};
use crate::ops::bundle::locations::{self, record_tag};
use crate::store::registry::{RegistryClient, RegistrySource};
use crate::store::{Source, StoreError};

/// What a bundle's repository holds of its lock entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whereabouts {
    /// The repository has the bundle's ImageLocations record: every entry is there.
    Recorded(ImageLocations),
    /// No record, but every entry was found there by digest.
    AllPresent,
    /// No record, and these entries (their lock references) are not there.
    Missing { missing: Vec<String>, total: usize },
}

/// Finds out whether `repository` holds the images of bundle `digest`, whose lock lists
/// `entries`.
pub fn whereabouts(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    digest: Digest,
    entries: &[LockEntry],
) -> Result<Whereabouts, StoreError> {
    find_whereabouts(client, repository, digest, entries, false)
}

/// Whether `repository` holds the images of bundle `digest`: [`whereabouts`] without the list
/// of what is missing, so the lookups stop at the first entry that is not there (a bundle read
/// where its lock names its images, the usual export, asked about all of them).
pub fn is_relocated(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    digest: Digest,
    entries: &[LockEntry],
) -> Result<bool, StoreError> {
    let found = find_whereabouts(client, repository, digest, entries, true)?;
    Ok(!matches!(found, Whereabouts::Missing { .. }))
}

/// [`whereabouts`]; with `first_only`, `Missing` lists at least the first absent entry found,
/// not necessarily all.
fn find_whereabouts(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    digest: Digest,
    entries: &[LockEntry],
    first_only: bool,
) -> Result<Whereabouts, StoreError> {
    if let Some(record) = read_record(client, repository, digest)? {
        return Ok(Whereabouts::Recorded(record));
    }
    let missing = absent_entries(client, repository, entries, first_only)?;
    if missing.is_empty() {
        Ok(Whereabouts::AllPresent)
    } else {
        Ok(Whereabouts::Missing { missing, total: entries.len() })
    }
}

/// The lock references of `entries` that `repository` does not hold by digest (all of them, or
/// with `first_only` at least the first found). One HEAD per entry, as many at once as the
/// client keeps connections (they were one after another: a bundle of 19 images waited 19
/// round trips before its walk began).
fn absent_entries(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    entries: &[LockEntry],
    first_only: bool,
) -> Result<Vec<String>, StoreError> {
    let there = RegistrySource::relocated_to(Arc::clone(client), repository.clone());
    // An absent entry is an `Err(None)`, so that `first_only` stops taking new entries there.
    let answers =
        run_all(entries, client.options().connections, first_only, |entry| match there.resolve(&entry.reference) {
            Ok(_) => Ok(()),
            Err(err) if is_absent(&err) => Err(None),
            Err(err) => Err(Some(err)),
        });
    let mut missing = Vec::new();
    for (entry, answer) in entries.iter().zip(answers) {
        match answer {
            None | Some(Ok(())) => {}
            Some(Err(None)) => missing.push(entry.reference.to_string()),
            Some(Err(Some(err))) => return Err(err),
        }
    }
    Ok(missing)
}

/// Reads the ImageLocations record of bundle `digest` in `repository`; a 404, 401 or 403 on its
/// tag means there is none (imgpkg's rule).
pub fn read_record(
    client: &Arc<RegistryClient>,
    repository: &Repository,
    digest: Digest,
) -> Result<Option<ImageLocations>, StoreError> {
    let source = RegistrySource::new(Arc::clone(client));
    let tag = record_tag(&digest);
    let descriptor = match source.resolve(&repository.at_tag(&tag)) {
        Ok(descriptor) => descriptor,
        Err(err) if is_absent(&err) => return Ok(None),
        Err(err) => return Err(err),
    };
    let what = format!("{repository}:{tag}");
    let invalid = |reason: String| StoreError::Invalid { store: what.clone(), reason };
    let manifest = source.manifest(&descriptor)?;
    let ManifestKind::Image(image) = manifest.kind() else {
        return Err(invalid("the ImageLocations record is an index, not an image".into()));
    };
    let [layer] = image.layers.as_slice() else {
        return Err(invalid(format!("the ImageLocations record has {} layers, not one", image.layers.len())));
    };
    let bytes = source.small_blob(layer)?;
    let yaml = locations::read_layer(&bytes, &format!("the layer of {what}")).map_err(|e| invalid(e.to_string()))?;
    ImageLocations::parse(&yaml, &what).map(Some).map_err(|e| invalid(e.to_string()))
}

/// Not there, or not readable with these credentials: both mean "no" to imgpkg.
fn is_absent(err: &StoreError) -> bool {
    match err {
        StoreError::NotFound { .. } => true,
        StoreError::Registry(remote) => matches!(remote.status(), Some(401 | 403 | 404)),
        _ => false,
    }
}

/// The source to read bundle `root`'s tree from, and whether it is relocated: when `home` (the
/// repository `root` was resolved in through `plain`) holds the bundle's images, every lock
/// entry is read there by digest and the origins are never contacted; otherwise entries are
/// read where the locks name them. A root that is not a bundle reads as named.
pub fn bundle_source(
    client: &Arc<RegistryClient>,
    plain: &RegistrySource,
    root: &crate::engine::Artifact,
    home: &Repository,
) -> Result<(RegistrySource, bool), StoreError> {
    let unrelocated = || {
        let source = RegistrySource::new(Arc::clone(client));
        source.remember(root.descriptor.digest, home);
        (source, false)
    };
    let manifest = plain.manifest(&root.descriptor)?;
    // The walk reads it next, through `plain` when the bundle is read where its lock says.
    plain.keep_manifest(manifest.clone());
    let ManifestKind::Image(image) = manifest.kind() else { return Ok(unrelocated()) };
    if !crate::engine::is_bundle_config(&image.config, &plain.small_blob(&image.config)?)? {
        return Ok(unrelocated());
    }
    let content = crate::engine::read_bundle(plain, image, &root.label()).map_err(|e| match e.is_integrity() {
        true => StoreError::Rejected { store: root.label(), reason: e.to_string() },
        false => StoreError::Invalid { store: root.label(), reason: e.to_string() },
    })?;
    if !is_relocated(client, home, root.descriptor.digest, &content.entries)? {
        return Ok(unrelocated());
    }
    let source = RegistrySource::relocated_to(Arc::clone(client), home.clone());
    source.remember(root.descriptor.digest, home);
    Ok((source, true))
}

/// The source every command that reads from a registry (export -b/-i/--lock, copy --to-tar and
/// --to-repo) reads `roots` through: for one root that is a bundle relocated into the repository
/// it was named in, that repository for everything (its lock's origins are never contacted);
/// otherwise `plain`, reading each artifact where it is named. Also says whether it relocated.
pub fn read_from(
    client: &Arc<RegistryClient>,
    plain: RegistrySource,
    roots: &[crate::engine::Artifact],
) -> Result<(RegistrySource, bool), StoreError> {
    let [root] = roots else { return Ok((plain, false)) };
    let Some(original) = &root.original else { return Ok((plain, false)) };
    let (there, relocated) = bundle_source(client, &plain, root, &original.repository)?;
    Ok(if relocated { (there, true) } else { (plain, false) })
}
