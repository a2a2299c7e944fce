//! `ferry pull`: a bundle's or image's files into a directory (spec/cli.md "pull"), from a
//! registry or from an archive. Layers are extracted by [`self::extract`] into a fresh sibling
//! directory that becomes the output only when everything is in place; a bundle pulled from a
//! registry gets its `.imgpkg/images.yml` pointed at its own repository when its images are
//! there (PL-2); `--recursive` adds every nested bundle under `.imgpkg/bundles/sha256-<hex>/`.

pub mod extract;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use self::extract::{ExtractError, Extracted, Extraction};
use super::bundle::located::{Whereabouts, bundle_source, whereabouts};
use super::export::Expect;
use super::interrupt::{RemovedOnInterrupt, publish_without_interrupt, remove_on_interrupt};
use crate::engine::layer::{self, read_small_file};
use crate::engine::{Artifact, LockEntry, WalkOptions, is_bundle_config, walk};
use crate::model::lock::{ImageRef, ImagesLock};
use crate::model::media;
use crate::model::{Descriptor, Digest, ImageManifest, ManifestKind, Reference, Repository};
use crate::store::registry::{RegistryClient, RegistrySource};
use crate::store::{Source, StoreError};

const LOCK_PATH: &str = ".imgpkg/images.yml";

/// Decides what becomes of a pulled bundle's lock, given the bundle and its entries.
type Locator<'a> = dyn Fn(&Artifact, &[LockEntry]) -> Result<LockOutcome, PullError> + 'a;

/// Options of a pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub recursive: bool,
    pub workers: usize,
}

/// What happened to a bundle's lock file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockOutcome {
    pub rewritten: bool,
    /// The repository the entries now point at, when rewritten.
    pub repository: Option<String>,
    /// Why the lock was kept as the bundle carries it.
    pub reason: Option<String>,
}

/// One bundle written by a pull.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PulledBundle {
    pub digest: Digest,
    /// Where its files are, relative to the output directory ("" for the root).
    pub path: String,
    pub lock: LockOutcome,
}

/// What a pull did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullSummary {
    pub reference: String,
    pub digest: Digest,
    pub bundle: bool,
    pub output: String,
    pub files: u64,
    pub bytes: u64,
    /// The root bundle first, then nested bundles (with `--recursive`); empty for an image.
    pub bundles: Vec<PulledBundle>,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("{0}")]
    WrongKind(String),
    #[error("output directory {path}: {reason}")]
    Output { path: String, reason: String },
    #[error("cannot pull {reference}:\n  {}", .problems.join("\n  "))]
    Incomplete { reference: String, problems: Vec<String>, integrity: bool },
}

impl PullError {
    pub fn is_integrity(&self) -> bool {
        match self {
            PullError::Store(err) => err.is_integrity(),
            PullError::Extract(err) => {
                matches!(err, ExtractError::Unsafe { .. })
                    || err.io_source().and_then(crate::verify::verify_error).is_some()
            }
            PullError::Incomplete { integrity, .. } => *integrity,
            PullError::WrongKind(_) | PullError::Output { .. } => false,
        }
    }
}

/// Pulls `reference` from its registry into `output`.
pub fn pull_from_registry(
    client: &Arc<RegistryClient>,
    reference: &Reference,
    expect: Expect,
    output: &Path,
    options: &PullOptions,
) -> Result<PullSummary, PullError> {
    let plain = RegistrySource::new(Arc::clone(client));
    let root = super::export::reference_root(&plain, reference)?;
    let home = reference.repository.clone();
    let located = |bundle: &Artifact, entries: &[LockEntry]| -> Result<LockOutcome, PullError> {
        // The root lives where it was pulled from; a nested bundle where the walk found it.
        let repository = if bundle.is_root { home.clone() } else { found_in(client, &home, bundle)? };
        Ok(lock_outcome(&repository, &whereabouts(client, &repository, bundle.descriptor.digest, entries)?))
    };
    // Nested bundles of a relocated root are looked up in its repository, never at origin.
    let relocated_source;
    let source: &dyn Source = if options.recursive {
        relocated_source = bundle_source(client, &plain, &root, &home)?.0;
        &relocated_source
    } else {
        &plain
    };
    pull(source, root, expect, output, options, &located)
}

/// Pulls the artifact `wanted` names from the archive `source` into `output`; the lock is kept
/// as carried (there is no repository to point it at).
pub fn pull_from_archive(
    source: &dyn Source,
    artifacts: Vec<Artifact>,
    wanted: &str,
    expect: Expect,
    output: &Path,
    options: &PullOptions,
) -> Result<PullSummary, PullError> {
    let mut root = find_artifact(artifacts, wanted).ok_or_else(|| {
        PullError::Store(StoreError::NotFound { store: source.name().to_string(), what: wanted.to_string() })
    })?;
    root.is_root = true;
    let kept = |_: &Artifact, _: &[LockEntry]| -> Result<LockOutcome, PullError> {
        Ok(LockOutcome {
            rewritten: false,
            repository: None,
            reason: Some("pulled from an archive: the lock names the images' origins".into()),
        })
    };
    pull(source, root, expect, output, options, &kept)
}

/// The archive artifact `wanted` names: by digest, by original reference or by name.
fn find_artifact(artifacts: Vec<Artifact>, wanted: &str) -> Option<Artifact> {
    // A repository alone means `:latest`, as an export names such a root (and as archives of
    // earlier versions named it `REPO`, so either spelling finds either).
    let wanted_ref = wanted.parse::<Reference>().ok();
    let wanted_digest = wanted.parse::<Digest>().ok().or_else(|| wanted_ref.as_ref().and_then(|r| r.digest));
    let matches = |artifact: &Artifact| {
        wanted_digest.is_some_and(|digest| digest == artifact.descriptor.digest)
            || artifact.ref_name.as_deref() == Some(wanted)
            || match (&wanted_ref, &artifact.original) {
                (Some(wanted), Some(original)) => wanted.or_latest() == original.or_latest(),
                _ => false,
            }
    };
    let mut found: Vec<Artifact> = artifacts.into_iter().filter(matches).collect();
    found.sort_by_key(|artifact| !artifact.is_root);
    found.into_iter().next()
}

/// Where a nested bundle lives: in the root's repository when it is there (a relocated tree),
/// else where its lock reference names.
fn found_in(client: &Arc<RegistryClient>, home: &Repository, bundle: &Artifact) -> Result<Repository, PullError> {
    let there = RegistrySource::relocated_to(Arc::clone(client), home.clone());
    match there.resolve(&home.at_digest(bundle.descriptor.digest)) {
        Ok(_) => Ok(home.clone()),
        Err(StoreError::NotFound { .. }) => {
            Ok(bundle.original.as_ref().map_or_else(|| home.clone(), |original| original.repository.clone()))
        }
        Err(err) => Err(err.into()),
    }
}

fn lock_outcome(repository: &Repository, found: &Whereabouts) -> LockOutcome {
    match found {
        Whereabouts::Recorded(_) | Whereabouts::AllPresent => {
            LockOutcome { rewritten: true, repository: Some(repository.to_string()), reason: None }
        }
        Whereabouts::Missing { missing, total } => LockOutcome {
            rewritten: false,
            repository: None,
            reason: Some(format!(
                "{} of {total} images are not in {repository} (e.g. {}); the lock keeps the references it was built with",
                missing.len(),
                missing[0]
            )),
        },
    }
}

/// The common part: check the kind, extract, point locks, add nested bundles, publish.
fn pull(
    source: &dyn Source,
    root: Artifact,
    expect: Expect,
    output: &Path,
    options: &PullOptions,
    locate: &Locator<'_>,
) -> Result<PullSummary, PullError> {
    let manifest = source.manifest(&root.descriptor)?;
    let image = match manifest.kind() {
        ManifestKind::Image(image) => image.clone(),
        ManifestKind::Index(_) => {
            return Err(PullError::WrongKind(format!(
                "{} is an image index; pull one platform's image by its digest (`skopeo inspect --raw docker://{}` lists them)",
                root.label(),
                root.label()
            )));
        }
    };
    let is_bundle = is_bundle_config(&image.config, &source.small_blob(&image.config)?)?;
    match (expect, is_bundle) {
        (Expect::Bundle, false) => {
            return Err(PullError::WrongKind(format!(
                "{} is not a bundle; use -i to pull it as an image",
                root.label()
            )));
        }
        (Expect::Image, true) => {
            return Err(PullError::WrongKind(format!("{} is a bundle; use -b to pull it", root.label())));
        }
        _ => {}
    }
    let staging = Staging::new(output)?;
    let mut totals = Extracted::default();
    let mut bundles = Vec::new();
    add(&mut totals, extract_image(source, &image, staging.path(), &root.label(), is_bundle)?);
    if is_bundle {
        bundles.push(point_lock(staging.path(), "", &root, locate)?);
    }
    if is_bundle && options.recursive {
        for nested in nested_bundles(source, &root, options)? {
            let relative = format!(".imgpkg/bundles/{}", nested.descriptor.digest.tag_form());
            let dir = nested_directory(staging.path(), &relative, &root.label())?;
            let ManifestKind::Image(image) = source.manifest(&nested.descriptor)?.kind().clone() else { continue };
            add(&mut totals, extract_image(source, &image, &dir, &nested.label(), true)?);
            bundles.push(point_lock(&dir, &relative, &nested, locate)?);
        }
        extract::check_links_under(staging.path())?;
    }
    staging.publish()?;
    Ok(PullSummary {
        reference: root.label(),
        digest: root.descriptor.digest,
        bundle: is_bundle,
        output: output.display().to_string(),
        files: totals.files,
        bytes: totals.bytes,
        bundles,
    })
}

fn add(totals: &mut Extracted, more: Extracted) {
    totals.files += more.files;
    totals.bytes += more.bytes;
}

/// Every bundle below `root`, at any depth, found by the engine's walk.
fn nested_bundles(source: &dyn Source, root: &Artifact, options: &PullOptions) -> Result<Vec<Artifact>, PullError> {
    let walk_options = WalkOptions { workers: options.workers.max(1), include_non_distributable: true };
    let graph = walk(source, vec![root.clone()], &walk_options);
    if !graph.problems.is_empty() {
        return Err(PullError::Incomplete {
            reference: root.label(),
            problems: graph.problems.iter().map(|p| p.message.clone()).collect(),
            integrity: graph.problems.iter().any(|p| p.integrity),
        });
    }
    let mut nested: BTreeMap<Digest, Artifact> = BTreeMap::new();
    for artifact in graph.artifacts.into_iter().filter(|a| a.is_bundle && a.descriptor.digest != root.descriptor.digest)
    {
        nested.entry(artifact.descriptor.digest).or_insert(artifact);
    }
    Ok(nested.into_values().collect())
}

/// Extracts every layer of `image`, in order, into `dir`; each is verified to its last byte,
/// and every link is checked once all are in place. `bundle` adds the bundle rules (BL-6).
fn extract_image(
    source: &dyn Source,
    image: &ImageManifest,
    dir: &Path,
    label: &str,
    bundle: bool,
) -> Result<Extracted, PullError> {
    let mut extraction = Extraction::new(dir).map_err(|e| io_error(dir, e))?;
    for (number, layer) in image.layers.iter().enumerate() {
        let name = format!("layer {} of {label} ({})", number + 1, layer.digest);
        extract_layer(source, layer, &mut extraction, &name, bundle)?;
    }
    Ok(extraction.finish()?)
}

fn extract_layer(
    source: &dyn Source,
    layer: &Descriptor,
    extraction: &mut Extraction,
    name: &str,
    bundle: bool,
) -> Result<Extracted, PullError> {
    let compression = media::layer_compression(&layer.media_type).ok_or_else(|| {
        PullError::WrongKind(format!("{name} has media type {:?}, which is not a tar layer", layer.media_type))
    })?;
    let mut verified = source.blob(layer)?;
    let done = {
        let stream =
            layer::decompress(compression, &mut verified).map_err(|e| StoreError::io(format!("reading {name}"), e))?;
        extraction.layer(stream, name, bundle).map_err(|err| match err {
            ExtractError::Io { context, source, .. } if crate::verify::verify_error(&source).is_some() => {
                PullError::Store(StoreError::io(context, source))
            }
            other => PullError::Extract(other),
        })?
    };
    // Read what the tar reader left (end blocks, compression trailer) so the digest is checked.
    io::copy(&mut verified, &mut io::sink()).map_err(|e| StoreError::io(format!("reading {name}"), e))?;
    Ok(done)
}

/// The directory a nested bundle is written to: made here, under real directories only, and
/// never one the root bundle's layer already holds (PL-1), so no bundle writes into another's
/// files or through its links.
fn nested_directory(staging: &Path, relative: &str, root: &str) -> Result<PathBuf, PullError> {
    let mut dir = staging.to_path_buf();
    let parts: Vec<&str> = relative.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        dir.push(part);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() && !last => continue,
            Ok(_) => {
                return Err(PullError::Extract(ExtractError::Unsafe {
                    layer: format!("the layer of bundle {root}"),
                    entry: parts[..=i].join("/"),
                    reason: format!("ferry writes the nested bundle at {relative}, which the layer already holds"),
                }));
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir).map_err(|e| io_error(&dir, e))?
            }
            Err(err) => return Err(io_error(&dir, err)),
        }
    }
    Ok(dir)
}

/// Points the lock written in `dir` at the bundle's repository when `locate` says its images
/// are there (PL-2); otherwise leaves it and says why.
fn point_lock(dir: &Path, relative: &str, bundle: &Artifact, locate: &Locator<'_>) -> Result<PulledBundle, PullError> {
    let what = format!("{LOCK_PATH} of bundle {}", bundle.label());
    let text = read_lock_file(dir)?;
    let invalid = |reason: String| PullError::Store(StoreError::Invalid { store: what.clone(), reason });
    let lock = ImagesLock::parse(&text, &what).map_err(|e| invalid(e.to_string()))?;
    let references = lock.references(&what).map_err(|e| invalid(e.to_string()))?;
    let entries: Vec<LockEntry> = references
        .into_iter()
        .zip(&lock.images)
        .map(|(reference, entry)| LockEntry { entry: entry.clone(), reference })
        .collect();
    let outcome = locate(bundle, &entries)?;
    if let Some(repository) = outcome.repository.as_deref().filter(|_| outcome.rewritten) {
        let repository = Repository::parse(repository).map_err(|e| invalid(e.to_string()))?;
        let rewritten = ImagesLock::new(
            entries
                .iter()
                .map(|entry| ImageRef {
                    image: match entry.reference.digest {
                        Some(digest) => repository.at_digest(digest).to_string(),
                        None => entry.entry.image.clone(),
                    },
                    annotations: entry.entry.annotations.clone(),
                })
                .collect(),
        );
        write_lock_file(dir, &rewritten.to_yaml())?;
    }
    Ok(PulledBundle { digest: bundle.descriptor.digest, path: relative.to_string(), lock: outcome })
}

/// Opens the extracted lock through a handle confined to the bundle's directory, without
/// following a link at its name (the layer rules already refuse one: BL-6), and only when it is
/// a regular file.
fn open_lock_file(dir: &Path, write: bool) -> Result<cap_std::fs::File, PullError> {
    use cap_std::fs::OpenOptionsExt;
    let file = dir.join(LOCK_PATH);
    let confined =
        cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority()).map_err(|e| io_error(dir, e))?;
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(!write).write(write).truncate(write).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let opened = confined.open_with(LOCK_PATH, &options).map_err(|e| io_error(&file, e))?;
    let meta = opened.metadata().map_err(|e| io_error(&file, e))?;
    if !meta.is_file() {
        return Err(io_error(&file, io::Error::new(io::ErrorKind::InvalidData, "not a regular file")));
    }
    Ok(opened)
}

fn read_lock_file(dir: &Path) -> Result<String, PullError> {
    let mut opened = open_lock_file(dir, false)?;
    let size = opened.metadata().map_err(|e| io_error(dir, e))?.len();
    read_small_file(&mut opened, size, &dir.join(LOCK_PATH).display().to_string()).map_err(|e| io_error(dir, e))
}

fn write_lock_file(dir: &Path, text: &str) -> Result<(), PullError> {
    use std::io::Write;
    open_lock_file(dir, true)?.write_all(text.as_bytes()).map_err(|e| io_error(&dir.join(LOCK_PATH), e))
}

fn io_error(path: &Path, err: io::Error) -> PullError {
    PullError::Store(StoreError::io(format!("writing {}", path.display()), err))
}

/// A fresh directory beside the output, renamed to it only when the pull is complete and
/// removed otherwise: a failed or interrupted pull leaves nothing, and no user file is ever
/// replaced.
struct Staging {
    dir: Option<tempfile::TempDir>,
    output: PathBuf,
    /// An interrupt removes the directory too (dropped after `dir`, which removes it otherwise).
    _interrupt: RemovedOnInterrupt,
}

impl Staging {
    fn new(output: &Path) -> Result<Staging, PullError> {
        let refuse =
            |reason: &str| PullError::Output { path: output.display().to_string(), reason: reason.to_string() };
        let text = output.as_os_str().to_string_lossy();
        if text.is_empty() || matches!(text.trim_end_matches('/'), "" | "." | "..") {
            return Err(refuse("must name a new directory, not /, . or .."));
        }
        let name = output.file_name().ok_or_else(|| refuse("must name a new directory"))?;
        let parent = match output.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let (Ok(target), Ok(current)) = (output.canonicalize(), std::env::current_dir()) {
            if target == Path::new("/") || current.starts_with(&target) {
                return Err(refuse("is the current directory or one of its parents"));
            }
        }
        match std::fs::read_dir(output).map(|mut entries| entries.next().is_some()) {
            Ok(true) => {
                return Err(refuse("exists and is not empty; ferry never overwrites files: choose a new directory"));
            }
            Ok(false) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) if err.kind() == io::ErrorKind::NotADirectory => return Err(refuse("is a file")),
            Err(err) => return Err(refuse(&err.to_string())),
        }
        std::fs::create_dir_all(&parent)
            .map_err(|e| refuse(&format!("cannot create its parent {}: {e}", parent.display())))?;
        let prefix = format!("{}.ferry-pull-", name.to_string_lossy());
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)
            .map_err(|e| refuse(&format!("cannot create a directory in {}: {e}", parent.display())))?;
        let interrupt = remove_on_interrupt(dir.path());
        Ok(Staging { dir: Some(dir), output: output.to_path_buf(), _interrupt: interrupt })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("staging directory until published").path()
    }

    fn publish(self) -> Result<(), PullError> {
        let Staging { dir, output, _interrupt: interrupt } = self;
        let dir = dir.expect("published once");
        // The mode a directory made here would have (the staging one is private until now).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777 & !extract::umask()))
            .map_err(|e| io_error(dir.path(), e))?;
        // An interrupt from here on leaves the directory to the rename (removing it while it
        // was renamed would delete the published output).
        publish_without_interrupt(interrupt, || {
            let kept = dir.keep();
            std::fs::rename(&kept, &output).map_err(|e| {
                let _ = std::fs::remove_dir_all(&kept);
                io_error(&output, e)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Descriptor;

    fn artifact(original: &str, fill: u8) -> Artifact {
        let digest: Digest = format!("sha256:{}", hex::encode([fill; 32])).parse().unwrap();
        let mut artifact = Artifact::new(Descriptor::new(crate::model::media::OCI_MANIFEST, digest, 1));
        artifact.original = Some(original.parse().unwrap());
        artifact.ref_name = Some(original.to_string());
        artifact.is_root = true;
        artifact
    }

    /// Review s8: `pull --tar A -b REPO` finds the root `export -b REPO` wrote as `REPO:latest`
    /// (it was "not found"), and `-b REPO:latest` finds one an earlier version wrote as `REPO`.
    #[test]
    fn a_repository_alone_is_its_latest_tag_either_way() {
        let artifacts = vec![artifact("r.example/team/app:latest", 1), artifact("r.example/team/old", 2)];
        let found = |wanted: &str| find_artifact(artifacts.clone(), wanted).map(|a| a.descriptor.digest);
        assert_eq!(found("r.example/team/app"), Some(artifacts[0].descriptor.digest));
        assert_eq!(found("r.example/team/old:latest"), Some(artifacts[1].descriptor.digest));
        assert_eq!(found("r.example/team/app:1.0"), None);
    }
}
