//! `ferry export`: write everything a set of artifacts needs into one archive.
//!
//! The source is a registry (`-b`, `-i`, `--lock`) or an OCI layout directory (`--oci-layout`);
//! the walk, plan and transfer are the engine's, the same for every source.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::artifacts_of_index;
use super::referrers::{ReferrerChoice, ReferrerCounts, is_referrer, walk_with_referrers};
use super::verify::{Unhashed, check_graph};
use crate::engine::{
    Artifact, Graph, Items, Reporter, TransferError, TransferOptions, WalkOptions, build_plan, transfer,
};
use crate::model::layout::MAX_INDEX_BYTES;
use crate::model::lock::AnyLock;
use crate::model::platform::PlatformFilter;
use crate::model::{Descriptor, Digest, ManifestKind, Reference, annotations, sha256_digest};
use crate::store::layout_dir::LayoutDirSource;
use crate::store::layout_tar::LayoutTarSink;
use crate::store::volumes::check_replaceable;
use crate::store::{Plan, Source, StoreError};

/// What an export did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSummary {
    pub archive: String,
    pub identity: Digest,
    pub artifacts: usize,
    pub bundles: usize,
    /// Top-level images and indexes (artifacts that are not bundles).
    pub images: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub archive_bytes: u64,
    /// Volumes written (0: one file).
    pub volumes: usize,
    pub blob_bytes: u64,
    /// Bytes that would have been written again without deduplication.
    pub dedup_saved_bytes: u64,
    /// Blobs a resumed export found intact in `ARCHIVE.partial` and did not fetch again.
    pub reused_blobs: u64,
    /// The bytes of those blobs.
    pub reused_bytes: u64,
    pub omitted_layers: Vec<String>,
    /// Signatures, attestations, SBOMs and other referrers carried (spec/archive.md AR-RF1).
    pub referrers: ReferrerCounts,
    /// With `--base`: what the delta relies on (spec/archive.md DL-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaSummary>,
    pub seconds: f64,
}

/// What a delta export left out.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaSummary {
    pub bases: Vec<crate::model::delta::BaseIdentity>,
    pub relied_on_blobs: usize,
    pub relied_on_bytes: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `--lock` file that is no lock ferry reads (its message names the file).
    #[error(transparent)]
    Lock(#[from] crate::model::lock::LockError),
    #[error("cannot export from {source_name}:\n  {}", .problems.join("\n  "))]
    Incomplete { source_name: String, problems: Vec<String>, integrity: bool, details: Vec<String> },
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// The transfer failed after the partial archive was laid out: it is kept for `--resume`.
    #[error(
        "{source}\n{partial} keeps what was written: run the same export again with --resume to fetch only the rest"
    )]
    Interrupted { partial: String, source: TransferError },
    #[error("{}", .problems.join("\n"))]
    WrongKind { problems: Vec<String> },
    /// The plan's `index.json` would be over the limit every reader enforces (spec/archive.md
    /// AR-R7, AR-W2b); found before any blob is fetched.
    #[error(
        "this export's index.json would be {bytes} bytes for {entries} artifacts, over the {limit}-byte limit \
         every ferry reader enforces (spec/archive.md AR-R7), so the archive could not be read back; nothing was \
         fetched: export the artifacts in several archives (e.g. split the lock)"
    )]
    IndexTooLarge { bytes: u64, entries: usize, limit: u64 },
    /// The finished archive fails the reader's own checks, so it was not published (AR-W2c).
    #[error(
        "the archive written to {partial} fails ferry's own checks, so it was not published:\n  {}\n(this is a \
         bug in ferry: please report it)",
        .problems.join("\n  ")
    )]
    Unpublishable { partial: String, problems: Vec<String> },
    /// Files that cannot be built into a bundle (`-f`).
    #[error(transparent)]
    Build(#[from] super::bundle::build::BuildError),
    /// `--platform` names no platform of the index, or more than one.
    #[error("{0}")]
    Platform(String),
    /// `-o` cannot be written (a directory, a missing parent): found before anything is fetched.
    #[error("{0}")]
    Destination(String),
}

impl ExportError {
    /// What a failure reports in `--json` (spec/cli.md "export"): the message, and every name
    /// the message only summarises.
    pub fn report(&self) -> FailureReport {
        let details = match self {
            ExportError::Incomplete { details, .. } => details.clone(),
            _ => Vec::new(),
        };
        FailureReport { error: self.to_string(), details }
    }

    pub fn is_integrity(&self) -> bool {
        match self {
            ExportError::Store(err) => err.is_integrity(),
            ExportError::Incomplete { integrity, .. } => *integrity,
            ExportError::Transfer(err) | ExportError::Interrupted { source: err, .. } => err.is_integrity(),
            ExportError::WrongKind { .. }
            | ExportError::Lock(_)
            | ExportError::Platform(_)
            | ExportError::IndexTooLarge { .. }
            | ExportError::Build(_)
            | ExportError::Destination(_) => false,
            ExportError::Unpublishable { .. } => true,
        }
    }
}

/// Exports what `input` names into `output` (spec/cli.md "export"): the one entry the CLI
/// calls, handing over settings; the stores are built here.
pub fn export_from(
    input: &super::input::ExportInput,
    output: &Path,
    options: &ExportOptions,
    reporter: &dyn Reporter,
) -> Result<ExportSummary, ExportError> {
    use super::input::ExportInput;
    match input {
        ExportInput::Registry { client, request } => {
            let (source, roots, expect) = request.resolve(client)?;
            export(&source, roots, expect, output, options, reporter)
        }
        ExportInput::Files { client, build } => {
            let built = super::bundle::build::build(build)?;
            let registry = crate::store::registry::RegistrySource::new(std::sync::Arc::clone(client));
            let source = crate::store::overlay::Overlay::new(&built, &registry);
            export(&source, vec![built_root(built.descriptor())], Expect::Bundle, output, options, reporter)
        }
        ExportInput::OciLayout(layout) => {
            let source = LayoutDirSource::open(layout)?;
            let roots = layout_roots(&source);
            export(&source, roots, Expect::Any, output, options, reporter)
        }
        ExportInput::ImgpkgTar(tarball) => {
            let source = super::archive::open_imgpkg_tar(tarball)?;
            let roots = super::archive::imgpkg_roots(&source);
            export(&source, roots, Expect::Any, output, options, reporter)
        }
    }
}

/// A failed export or copy, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct FailureReport {
    pub error: String,
    /// Every name the error only summarises (each missing lock image).
    pub details: Vec<String>,
}

/// Options of an export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub transfer: TransferOptions,
    pub include_non_distributable: bool,
    /// Take up the `ARCHIVE.partial` of an interrupted export of the same content, keeping
    /// the blobs it holds intact (spec/archive.md AR-W7).
    pub resume: bool,
    /// Split the archive into volumes of at most this many bytes, with a table of contents
    /// (spec/archive.md AR-S1).
    pub volume_size: Option<u64>,
    /// Which signatures, attestations, SBOMs and referrers to carry (AR-RF1).
    pub referrers: ReferrerChoice,
    /// `--base`: leave out the layers these hold and record them (spec/archive.md DL-2).
    pub bases: Vec<super::delta::Base>,
}

/// What the roots must be (imgpkg's `-b` and `-i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Bundle,
    Image,
    Any,
}

/// The roots of an OCI layout directory: every artifact of its `index.json`.
pub fn layout_roots(source: &LayoutDirSource) -> Vec<Artifact> {
    let mut roots = artifacts_of_index(source.index());
    for root in &mut roots {
        root.is_root = true;
    }
    roots
}

/// The root of a bundle built from files (`export -f`): it has no reference, so the archive
/// names it by its digest.
pub fn built_root(descriptor: crate::model::Descriptor) -> Artifact {
    let mut artifact = Artifact::new(descriptor);
    artifact.is_root = true;
    artifact
}

/// A root named by reference, resolved in `source`. Named by tag alone, it keeps the tag where
/// it is copied (a repository alone means `latest`, and is named so); named by digest
/// (`REPO:TAG@DIGEST` too), it gets none, as with imgpkg.
pub fn reference_root(source: &dyn Source, reference: &Reference) -> Result<Artifact, StoreError> {
    let reference = &reference.or_latest();
    let descriptor = source.resolve(reference)?;
    let mut artifact = Artifact::new(descriptor);
    artifact.original = Some(reference.clone());
    artifact.ref_name = Some(reference.to_string());
    artifact.is_root = true;
    artifact.set_root_tag(reference.tag.clone().filter(|_| reference.digest.is_none()));
    Ok(artifact)
}

/// `-i REF --platform P`: when the root is an index, its one image for platform `wanted` takes
/// its place, named `REPO[:TAG]@<image digest>` (the image keeps its own digest, so importing it
/// anywhere gives the digest the registry serves for that platform). An image root is kept.
pub fn platform_root(source: &dyn Source, root: Artifact, wanted: &PlatformFilter) -> Result<Artifact, ExportError> {
    let manifest = source.manifest(&root.descriptor)?;
    let ManifestKind::Index(index) = manifest.kind() else {
        return Ok(root);
    };
    let named = root.original.as_ref().map_or_else(|| root.descriptor.digest.to_string(), ToString::to_string);
    let offered: Vec<String> =
        index.manifests.iter().filter_map(|child| child.platform.as_ref()).map(ToString::to_string).collect();
    let chosen: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|child| child.platform.as_ref().is_some_and(|platform| wanted.matches(platform)))
        .collect();
    let child = match chosen.as_slice() {
        [one] => *one,
        [] => {
            return Err(ExportError::Platform(format!(
                "{named} has no image for {wanted}; it offers {}",
                if offered.is_empty() { "no platforms".to_string() } else { offered.join(", ") }
            )));
        }
        _ => {
            return Err(ExportError::Platform(format!(
                "{named} has {} images for {wanted} ({}): name the variant too, e.g. {}",
                chosen.len(),
                offered.join(", "),
                chosen[0].platform.as_ref().map_or_else(String::new, ToString::to_string)
            )));
        }
    };
    let mut artifact = Artifact::new(child.clone());
    artifact.set_root_tag(root.root_tag());
    artifact.original = root.original.map(|reference| Reference { digest: Some(child.digest), ..reference });
    artifact.ref_name = artifact.original.as_ref().map(ToString::to_string);
    artifact.is_root = true;
    Ok(artifact)
}

/// The roots a `--lock` file names: a BundleLock's bundle (with its tag, the root tag), or every
/// entry of an ImagesLock (with its annotations; never a root tag, as with imgpkg).
pub fn lock_roots(source: &dyn Source, path: &Path) -> Result<(Vec<Artifact>, Expect), ExportError> {
    let what = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::io(format!("reading {what}"), e))?;
    match AnyLock::parse(&text, &what)? {
        AnyLock::Bundle(lock) => {
            let mut reference = lock.reference(&what)?;
            reference.tag = lock.bundle.tag.clone();
            let mut root = reference_root(source, &reference)?;
            root.set_root_tag(lock.bundle.tag.clone());
            Ok((vec![root], Expect::Bundle))
        }
        AnyLock::Images(lock) => {
            let references = lock.references(&what)?;
            let mut roots = Vec::with_capacity(references.len());
            for (position, (reference, entry)) in references.iter().zip(&lock.images).enumerate() {
                let mut root = reference_root(source, reference)?;
                root.annotations.insert(annotations::LOCK_POSITION.into(), position.to_string());
                if !entry.annotations.is_empty() {
                    let notes = serde_json::to_string(&entry.annotations).expect("string maps serialise");
                    root.annotations.insert(annotations::LOCK_ANNOTATIONS.into(), notes);
                }
                roots.push(root);
            }
            Ok((roots, Expect::Any))
        }
    }
}

/// Walks from `roots` in `source` and writes everything into the archive `output`.
pub fn export(
    source: &dyn Source,
    roots: Vec<Artifact>,
    expect: Expect,
    output: &Path,
    options: &ExportOptions,
    reporter: &dyn Reporter,
) -> Result<ExportSummary, ExportError> {
    let started = Instant::now();
    check_destination(output)?;
    let walk_options =
        WalkOptions { workers: options.transfer.workers, include_non_distributable: options.include_non_distributable };
    let mut graph = walk_with_referrers(source, roots, &walk_options, options.referrers);
    fail_on_problems(source, &graph)?;
    settle_descriptors(&mut graph);
    check_expectation(&graph, expect)?;
    refuse_tag_conflicts(&graph)?;
    warn_omitted(&graph, reporter);
    let mut plan = build_plan(&graph);
    let mut record_blob = crate::store::memory::MemorySource::new();
    let delta =
        super::delta::make_delta(&mut plan, &options.bases, &super::delta::kept_layers(&graph), &mut record_blob)?;
    let with_record = crate::store::overlay::Overlay::new(&record_blob, source);
    let source: &dyn Source = if delta.is_some() { &with_record } else { source };
    refuse_oversize_index(&plan, MAX_INDEX_BYTES)?;
    let mut sink = match options.volume_size {
        Some(size) => LayoutTarSink::split(output, size),
        None => LayoutTarSink::new(output),
    };
    take_up_partial(&mut sink, &plan, options.resume, reporter)?;
    let partial = sink.partial_path().to_path_buf();
    transfer(source, &mut sink, &plan, &options.transfer, reporter).map_err(|err| failed_transfer(err, &partial))?;
    check_written(&sink, &plan, options.transfer.workers)?;
    sink.publish().map_err(|err| failed_transfer(TransferError::from(err), &partial))?;
    let (reused_blobs, reused_bytes) = sink.intact_blobs();

    let archive_bytes = sink.archive_size();
    let volumes = match options.volume_size {
        Some(size) => archive_bytes.div_ceil(size) as usize,
        None => 0,
    };
    let unique: u64 = plan.blob_bytes() + plan.manifest_bytes();
    let per_artifact = graph.bytes_without_dedup();
    Ok(ExportSummary {
        archive: output.display().to_string(),
        identity: sha256_digest(&plan.index.to_canonical_json()),
        artifacts: plan.index.manifests.len(),
        bundles: graph.bundles.len(),
        images: graph.artifacts.iter().filter(|artifact| !artifact.is_bundle && !is_referrer(artifact)).count(),
        manifests: plan.manifests.len(),
        blobs: plan.blobs.len(),
        archive_bytes,
        volumes,
        blob_bytes: plan.blob_bytes(),
        dedup_saved_bytes: per_artifact.saturating_sub(unique),
        reused_blobs,
        reused_bytes,
        omitted_layers: plan.omitted.iter().map(|d| d.digest.to_string()).collect(),
        referrers: ReferrerCounts::of(&graph),
        delta: delta.map(|record| DeltaSummary {
            relied_on_blobs: record.relies_on.len(),
            relied_on_bytes: record.relies_on.iter().map(|r| r.size).fold(0, u64::saturating_add),
            bases: record.bases,
        }),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Refuses an `-o` that could never be written, before anything is fetched (issue 17): a
/// directory (the archive is a file; a download must not end in "run again with --resume"), or
/// a name in a directory that does not exist, or a device, FIFO, socket or symbolic link (the
/// finished archive is renamed onto the name, which would replace that itself, AR-W2a). An
/// existing regular file is replaced when the export is complete (AR-W2).
pub fn check_destination(output: &Path) -> Result<(), ExportError> {
    // A real directory is named as such below; anything else but a regular file is refused here.
    if !std::fs::symlink_metadata(output).is_ok_and(|meta| meta.is_dir()) {
        check_replaceable(output).map_err(|refused| ExportError::Destination(format!("-o {refused}")))?;
    }
    if output.is_dir() {
        return Err(ExportError::Destination(format!(
            "-o {}: it is a directory; -o names the archive file to write, e.g. {}",
            output.display(),
            output.join("bundle.tar").display()
        )));
    }
    let parent = output.parent().filter(|parent| !parent.as_os_str().is_empty());
    if let Some(parent) = parent.filter(|parent| !parent.is_dir()) {
        return Err(ExportError::Destination(format!(
            "-o {}: the directory {} does not exist; create it first",
            output.display(),
            parent.display()
        )));
    }
    Ok(())
}

/// Gives every top-level artifact the facts of the manifest bytes that hashed to its digest:
/// their length and the manifest's own media type. A registry's `HEAD` (how references are
/// resolved) is only its word, and a lie there must not reach `index.json` (spec/archive.md
/// AR-W2d); the manifests in the graph were fetched and checked against their digests.
pub(super) fn settle_descriptors(graph: &mut Graph) {
    for artifact in &mut graph.artifacts {
        if let Some(manifest) = graph.manifests.get(&artifact.descriptor.digest) {
            artifact.descriptor.size = manifest.bytes().len() as u64;
            artifact.descriptor.media_type = manifest.media_type().to_string();
        }
    }
}

/// AR-W2b: refuses, before anything is fetched, a plan whose `index.json` is over `limit`
/// (the reader's, [`MAX_INDEX_BYTES`]; a test passes a lower one).
fn refuse_oversize_index(plan: &Plan, limit: u64) -> Result<(), ExportError> {
    let bytes = plan.index.to_canonical_json().len() as u64;
    if bytes <= limit {
        return Ok(());
    }
    Err(ExportError::IndexTooLarge { bytes, entries: plan.index.manifests.len(), limit })
}

/// AR-W2c: the finished archive, before it is published, indexed by the reader with its own
/// rules and walked as `ferry verify` walks it, without hashing the blobs again (each was
/// verified on its way in); its identity must be the plan's. Every problem is named.
fn check_written(sink: &LayoutTarSink, plan: &Plan, workers: usize) -> Result<(), ExportError> {
    let partial = sink.partial_path().display().to_string();
    let unpublishable = |problems: Vec<String>| ExportError::Unpublishable { partial: partial.clone(), problems };
    let written = match sink.written() {
        Ok(written) => written,
        Err(err) if err.is_integrity() || matches!(err, StoreError::Invalid { .. }) => {
            return Err(unpublishable(vec![err.to_string()]));
        }
        Err(err) => return Err(ExportError::Store(err)),
    };
    let mut failures = BTreeMap::new();
    let expected = sha256_digest(&plan.index.to_canonical_json());
    let actual = sha256_digest(written.index_bytes());
    if actual != expected {
        failures.insert(String::new(), format!("its identity is {actual}, but the plan's is {expected}"));
    }
    let stored: BTreeMap<Digest, u64> = written.blob_entries().map(|(digest, entry)| (digest, entry.size)).collect();
    let unhashed = Unhashed {
        index: written.index(),
        index_bytes: written.index_bytes(),
        deviations: written.deviations(),
        trailer: written.trailer(),
        imgpkg: false,
    };
    let mut warnings = Vec::new();
    check_graph(&written, unhashed, &stored, workers, &mut failures, &mut warnings);
    if failures.is_empty() {
        return Ok(());
    }
    Err(unpublishable(failures.into_values().collect()))
}

/// Says which non-distributable layers are left out, and of which images.
pub(super) fn warn_omitted(graph: &Graph, reporter: &dyn Reporter) {
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
}

/// With `resume`, re-hashes what an earlier, interrupted export left in `ARCHIVE.partial` and
/// keeps its intact blobs; a partial file laid out for other content is overwritten, saying why.
/// Without, an existing partial file is overwritten, with a hint that it could have been reused.
fn take_up_partial(
    sink: &mut LayoutTarSink,
    plan: &Plan,
    resume: bool,
    reporter: &dyn Reporter,
) -> Result<(), StoreError> {
    let partial = sink.partial_path().to_path_buf();
    // Not `exists()`: that follows a link, and a dangling one must still be refused (AR-W2a).
    if std::fs::symlink_metadata(&partial).is_err() {
        return Ok(());
    }
    if !resume {
        reporter.warn(&format!(
            "overwriting {} left by an earlier export (pass --resume to keep the blobs it holds)",
            partial.display()
        ));
        return Ok(());
    }
    reporter.phase("checking", Items::blobs(plan.blobs.len()), plan.blob_bytes());
    if let Some(reason) = sink.resume(plan, &|bytes| reporter.bytes(bytes))? {
        reporter.warn(&format!("not resuming from {}: {reason}; starting over", partial.display()));
    }
    Ok(())
}

/// A failed transfer, saying how to go on when a partial archive was left: a full disk once
/// (every worker writing when the disk fills up fails the same way, and that message already
/// says what to do), anything else with the hint to `--resume`.
fn failed_transfer(mut err: TransferError, partial: &Path) -> ExportError {
    let mut disk_full = false;
    err.failures.retain(|failure| !LayoutTarSink::is_disk_full(failure) || !std::mem::replace(&mut disk_full, true));
    // Only a regular file is kept for --resume: a link or FIFO under that name was refused.
    let kept = std::fs::symlink_metadata(partial).is_ok_and(|metadata| metadata.is_file());
    if disk_full || !kept {
        return ExportError::Transfer(err);
    }
    ExportError::Interrupted { partial: partial.display().to_string(), source: err }
}

/// AR-R17: an archive whose import would point one tag at two manifests is refused by every
/// reader, so it is not written: a root named by a tag that is another artifact's
/// `sha256-<hex>.imgpkg` tag, say. Found before anything is fetched.
pub(super) fn refuse_tag_conflicts(graph: &Graph) -> Result<(), ExportError> {
    let conflicts = super::publish::relocate::tag_conflicts(graph, super::publish::relocate::TagScheme::Digest);
    if conflicts.is_empty() {
        return Ok(());
    }
    let mut problems: Vec<String> = conflicts.into_iter().map(|(_, message)| message).collect();
    problems.push(
        "an import puts everything into one repository, where a tag names one manifest: name the root by \
         digest, or by another tag; nothing was fetched"
            .to_string(),
    );
    Err(ExportError::WrongKind { problems })
}

/// `-b` must name a bundle and `-i` must not, as with imgpkg.
pub(super) fn check_expectation(graph: &Graph, expect: Expect) -> Result<(), ExportError> {
    let wrong: Vec<String> = graph
        .artifacts
        .iter()
        .filter(|artifact| artifact.is_root)
        .filter_map(|root| match (expect, root.is_bundle) {
            (Expect::Bundle, false) => Some(format!(
                "{} is not a bundle (its config has no {} label); use -i for an image",
                root.label(),
                crate::model::manifest::BUNDLE_LABEL
            )),
            (Expect::Image, true) => {
                Some(format!("{} is a bundle; use -b for a bundle, which takes its images along", root.label()))
            }
            _ => None,
        })
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    Err(ExportError::WrongKind { problems: wrong })
}

/// An export carries everything or nothing: any problem found by the walk stops it, and every
/// problem is named.
pub(super) fn fail_on_problems(source: &dyn Source, graph: &Graph) -> Result<(), ExportError> {
    if graph.problems.is_empty() {
        return Ok(());
    }
    Err(ExportError::Incomplete {
        source_name: source.name().to_string(),
        problems: graph.problems.iter().map(|p| p.message.clone()).collect(),
        integrity: graph.problems.iter().any(|p| p.integrity),
        details: graph.problems.iter().flat_map(|p| p.details.iter().cloned()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{NoReport, walk};
    use crate::model::media;
    use crate::ops::verify::{VerifyOptions, verify_archive};
    use crate::store::memory::MemorySource;
    use crate::store::registry::RetryPolicy;

    /// One small OCI image held in memory: its manifest descriptor.
    fn image(source: &mut MemorySource) -> Descriptor {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let layer = b"not really a layer, but a blob".to_vec();
        let (config_size, layer_size) = (config.len(), layer.len());
        let config = source.insert(config);
        let layer = source.insert(layer);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{layer_size}}}]}}"#,
            media::OCI_MANIFEST
        )
        .into_bytes();
        let size = manifest.len() as u64;
        Descriptor::new(media::OCI_MANIFEST, source.insert(manifest), size)
    }

    /// `count` ImagesLock entries, all of one image under other names, with the annotations
    /// `lock_roots` gives them (what a large lock exports as).
    fn lock_entries(descriptor: &Descriptor, count: usize) -> Vec<Artifact> {
        (0..count)
            .map(|position| {
                let reference: Reference =
                    format!("registry.example.com/team/images/app-{position:05}@{}", descriptor.digest)
                        .parse()
                        .unwrap();
                let mut root = Artifact::new(descriptor.clone());
                root.ref_name = Some(reference.to_string());
                root.original = Some(reference);
                root.is_root = true;
                root.annotations.insert(annotations::LOCK_POSITION.into(), position.to_string());
                let notes =
                    format!(r#"{{"kbld.carvel.dev/id":"registry.example.com/team/images/app-{position:05}:1.0.0"}}"#);
                root.annotations.insert(annotations::LOCK_ANNOTATIONS.into(), notes);
                root
            })
            .collect()
    }

    /// A source that, like a registry, fetches a manifest by its digest alone (whatever size
    /// and media type the descriptor asking for it states), as the walk's HEAD-resolved roots
    /// are fetched.
    struct ByDigest {
        inner: MemorySource,
        truth: Descriptor,
    }

    impl Source for ByDigest {
        fn name(&self) -> &str {
            "by-digest"
        }
        fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
            self.inner.resolve(reference)
        }
        fn manifest(&self, descriptor: &Descriptor) -> Result<crate::model::RawManifest, StoreError> {
            assert_eq!(descriptor.digest, self.truth.digest);
            self.inner.manifest(&self.truth)
        }
        fn blob(&self, descriptor: &Descriptor) -> Result<crate::store::BlobReader<'_>, StoreError> {
            self.inner.blob(descriptor)
        }
    }

    fn options() -> ExportOptions {
        ExportOptions {
            transfer: TransferOptions { workers: 2, retry: RetryPolicy::NEVER },
            ..ExportOptions::default()
        }
    }

    /// Issue 12 item 7, AR-R7: a lock of 10,000 entries (an index.json of ~6 MB, over the old
    /// 4 MiB limit) exports to an archive `ferry verify` accepts.
    #[test]
    fn issue12_ten_thousand_lock_entries_export_an_archive_verify_accepts() {
        let mut source = MemorySource::new();
        let descriptor = image(&mut source);
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("many.tar");
        let summary =
            export(&source, lock_entries(&descriptor, 10_000), Expect::Any, &archive, &options(), &NoReport).unwrap();
        assert_eq!(summary.artifacts, 10_000);
        let written = crate::store::layout_tar::LayoutTarSource::open(&archive).unwrap();
        assert!(written.index_bytes().len() > 4 << 20, "{} bytes", written.index_bytes().len());
        let report = verify_archive(&archive, &VerifyOptions { workers: 2, volume_digests: false }, &NoReport).unwrap();
        assert!(report.ok, "{:?}", report.failures);
    }

    /// Issue 12 item 7, AR-W2b: an index.json over the reader's limit (lowered here, rather than
    /// 100,000 entries) is refused with its size, the limit and the count, from the plan alone.
    #[test]
    fn issue12_an_index_over_the_limit_is_refused_from_the_plan() {
        let mut source = MemorySource::new();
        let descriptor = image(&mut source);
        let graph = walk(&source, lock_entries(&descriptor, 50), &WalkOptions::default());
        let plan = build_plan(&graph);
        let bytes = plan.index.to_canonical_json().len() as u64;
        assert!(refuse_oversize_index(&plan, bytes).is_ok(), "exactly the limit fits");
        let err = refuse_oversize_index(&plan, bytes - 1).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("would be {bytes} bytes for 50 artifacts, over the {}-byte limit", bytes - 1))
                && message.contains("nothing was fetched"),
            "{message}"
        );
        assert!(!err.is_integrity());
    }

    /// Issue 12 item 7, AR-W2c and AR-W2d: a root whose descriptor lies about its manifest
    /// (size and media type, as a registry's HEAD may) is written with the manifest's true
    /// facts; and were a lie written, the check before the rename refuses to publish it.
    #[test]
    fn issue12_descriptor_lies_never_reach_a_published_archive() {
        let mut inner = MemorySource::new();
        let descriptor = image(&mut inner);
        let source = ByDigest { inner, truth: descriptor.clone() };
        let mut lying = descriptor.clone();
        lying.size += 100;
        lying.media_type = media::DOCKER_MANIFEST.to_string();
        let dir = tempfile::tempdir().unwrap();

        // The export settles the root's facts from the manifest bytes.
        let archive = dir.path().join("settled.tar");
        let mut root = Artifact::new(lying.clone());
        root.is_root = true;
        export(&source, vec![root.clone()], Expect::Any, &archive, &options(), &NoReport).unwrap();
        let written = crate::store::layout_tar::LayoutTarSource::open(&archive).unwrap();
        assert_eq!(written.index().manifests[0].size, descriptor.size);
        assert_eq!(written.index().manifests[0].media_type, media::OCI_MANIFEST);

        // Without settling, the check before the rename finds the lie and nothing is published.
        let graph = walk(&source, vec![root], &WalkOptions::default());
        let plan = build_plan(&graph);
        let target = dir.path().join("lying.tar");
        let mut sink = LayoutTarSink::new(&target);
        transfer(&source, &mut sink, &plan, &options().transfer, &NoReport).unwrap();
        let err = check_written(&sink, &plan, 2).unwrap_err();
        let message = err.to_string();
        assert!(err.is_integrity() && message.contains("not published") && message.contains("AR-R"), "{message}");
        assert!(!target.exists());
    }
}
