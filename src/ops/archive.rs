//! Opening an archive for the commands that read one (`verify`, `inspect`, `import`,
//! `copy --tar`, `pull --tar`, `describe --tar`): the file is probed once
//! ([`crate::store::probe`]) and opened by the reader of its kind. An imgpkg tarball is
//! presented exactly as ferry's archive of the same bundle: its `index.json` is the one
//! `ferry export -b` would write for it (spec/archive.md "Other archives ferry reads", AR-I5),
//! so every command reads both alike and an import of either gives the same repository.

use std::path::Path;

use super::export::settle_descriptors;
use crate::engine::{Artifact, WalkOptions, build_plan, walk};
use crate::model::layout::LayoutIndex;
use crate::model::referrers::parse_cosign_tag;
use crate::model::{Descriptor, Digest, Reference, annotations};
use crate::store::imgpkg_tar::{ImgpkgArtifact, ImgpkgTarSource};
use crate::store::layout_tar::LayoutTarSource;
use crate::store::probe::{ArchiveKind, ForeignArchive, probe};
use crate::store::{BlobReader, Source, StoreError};

/// An opened archive of either kind.
pub enum Archive {
    /// ferry's archive, or another tool's OCI layout in a tar.
    Layout(LayoutTarSource),
    /// imgpkg's `copy --to-tar` tarball, with the `index.json` ferry would write for it.
    Imgpkg(ImgpkgArchive),
}

/// An imgpkg tarball and the `index.json` of ferry's archive of the same content.
pub struct ImgpkgArchive {
    pub source: ImgpkgTarSource,
    pub index: LayoutIndex,
    pub index_bytes: Vec<u8>,
}

/// Probes `path` and opens it with the reader of its kind. A foreign file (a `docker save`
/// archive, a compressed tar, no tar) is a [`StoreError::Foreign`].
pub fn open_archive(path: &Path, workers: usize) -> Result<Archive, StoreError> {
    match probe(path)? {
        ArchiveKind::Layout => LayoutTarSource::open(path).map(Archive::Layout),
        ArchiveKind::ImgpkgTar => {
            let source = ImgpkgTarSource::open(path)?;
            let index = imgpkg_index(&source, workers);
            let index_bytes = index.to_canonical_json();
            Ok(Archive::Imgpkg(ImgpkgArchive { source, index, index_bytes }))
        }
    }
}

/// Opens the imgpkg tarball at `path` for conversion (`ferry export --imgpkg-tar`); any other
/// kind of file is the wrong input.
pub fn open_imgpkg_tar(path: &Path) -> Result<ImgpkgTarSource, StoreError> {
    match probe(path)? {
        ArchiveKind::ImgpkgTar => ImgpkgTarSource::open(path),
        ArchiveKind::Layout if !path.exists() => ImgpkgTarSource::open(path),
        ArchiveKind::Layout => Err(StoreError::Foreign(ForeignArchive {
            path: path.display().to_string(),
            what: "an OCI image layout in a tar (a ferry archive), not an imgpkg tarball".into(),
            hint: "it needs no conversion: give it to `ferry verify` or `ferry import` as it is".into(),
        })),
    }
}

impl Archive {
    /// The archive's `index.json` (for an imgpkg tarball, the one ferry would write).
    pub fn index(&self) -> &LayoutIndex {
        match self {
            Archive::Layout(archive) => archive.index(),
            Archive::Imgpkg(archive) => &archive.index,
        }
    }

    /// The bytes of that `index.json`; their sha256 is the identity (AR-6).
    pub fn index_bytes(&self) -> &[u8] {
        match self {
            Archive::Layout(archive) => archive.index_bytes(),
            Archive::Imgpkg(archive) => &archive.index_bytes,
        }
    }

    /// Every blob the archive stores, with its size.
    pub fn stored_blobs(&self) -> std::collections::BTreeMap<crate::model::Digest, u64> {
        match self {
            Archive::Layout(archive) => archive.blob_entries().map(|(digest, entry)| (digest, entry.size)).collect(),
            Archive::Imgpkg(archive) => archive.source.stored(),
        }
    }

    fn source(&self) -> &dyn Source {
        match self {
            Archive::Layout(archive) => archive,
            Archive::Imgpkg(archive) => &archive.source,
        }
    }
}

impl Source for Archive {
    fn name(&self) -> &str {
        self.source().name()
    }

    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        self.source().resolve(reference)
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError> {
        self.source().blob(descriptor)
    }
}

/// The roots of an imgpkg tarball, named as `ferry export` names what it was asked for: the
/// bundle `imgpkg copy -b` copied (by its repository and tag, when it was copied by tag, else
/// by digest); without one (`imgpkg copy -i` or `--lock`), every artifact, by its reference.
/// A cosign signature, attestation or SBOM the tarball holds (`imgpkg copy --cosign-signatures`
/// lists each under its tag `sha256-<hex>.sig`) comes as a referrer of its subject, as an export
/// from the registry finds it (spec/archive.md AR-RF1, AR-I5): it was dropped.
pub fn imgpkg_roots(source: &ImgpkgTarSource) -> Vec<Artifact> {
    let marked = source.artifacts().iter().any(|artifact| artifact.root);
    // Each top-level artifact with the repositories it was found in.
    let held: std::collections::HashMap<Digest, Vec<&crate::model::Repository>> = source
        .artifacts()
        .iter()
        .map(|artifact| (artifact.descriptor.digest, artifact.references.iter().map(|r| &r.repository).collect()))
        .collect();
    let mut roots = Vec::new();
    for found in source.artifacts() {
        // One manifest may be listed under several cosign tags: a referrer for each subject.
        let signed: Vec<(&String, Digest)> = found
            .tags
            .iter()
            .filter_map(|tag| parse_cosign_tag(tag).map(|(subject, _)| (tag, subject)))
            .filter(|(_, subject)| held.contains_key(subject))
            .collect();
        if !signed.is_empty() {
            roots
                .extend(signed.into_iter().map(|(tag, subject)| cosign_referrer(found, tag, subject, &held[&subject])));
            continue;
        }
        if marked && !found.root {
            continue;
        }
        let mut artifact = Artifact::new(found.descriptor.clone());
        artifact.original = found.references.first().map(|reference| match &found.tag {
            Some(tag) => Reference { tag: Some(tag.clone()), digest: None, ..reference.clone() },
            None => reference.clone(),
        });
        artifact.ref_name = artifact.original.as_ref().map(ToString::to_string);
        artifact.is_root = true;
        artifact.set_root_tag(found.tag.clone());
        roots.push(artifact);
    }
    roots
}

/// A cosign artifact of an imgpkg tarball as the referrer of `subject` an export finds in a
/// registry: named by the subject's repository (where cosign puts it), its tag and its digest,
/// tied by its tag.
fn cosign_referrer(
    found: &ImgpkgArtifact,
    tag: &str,
    subject: Digest,
    subject_repositories: &[&crate::model::Repository],
) -> Artifact {
    let mut artifact = Artifact::new(found.descriptor.clone());
    let beside_subject = found.references.iter().find(|r| subject_repositories.contains(&&r.repository));
    artifact.original = beside_subject
        .or(found.references.first())
        .map(|reference| Reference { tag: Some(tag.to_string()), ..reference.clone() });
    artifact.ref_name = artifact.original.as_ref().map(ToString::to_string);
    artifact.annotations.insert(annotations::REFERRER_OF.into(), subject.to_string());
    artifact.annotations.insert(annotations::REFERRER_TAG.into(), tag.to_string());
    artifact
}

/// AR-I5: the `index.json` `ferry export` would write for the tarball's roots: the walk from
/// them, with the non-distributable layers imgpkg left out recorded as left out (AR-4).
fn imgpkg_index(source: &ImgpkgTarSource, workers: usize) -> LayoutIndex {
    let mut graph = walk(source, imgpkg_roots(source), &WalkOptions { workers, include_non_distributable: true });
    settle_descriptors(&mut graph);
    for digest in source.omitted_layers() {
        if let Some((descriptor, _)) = graph.blobs.remove(&digest) {
            graph.omitted.insert(digest, descriptor);
        }
    }
    build_plan(&graph).index
}
