//! `ferry verify`: the offline integrity check of an archive (spec/cli.md "verify").
//!
//! Every blob entry is hashed in parallel against its name; every descriptor reachable from
//! `index.json` must be present with its size (non-distributable layers the archive records as
//! left out excepted); every problem is reported, not only the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::archive::{Archive, ImgpkgArchive, open_archive};
use super::artifacts_of_index;
use crate::engine::{Graph, Items, Reporter, WalkOptions, walk};
use crate::model::index_rules::{ferry_index_problems, is_ferry_archive};
use crate::model::layout::LayoutIndex;
use crate::model::{Digest, ManifestKind, media, sha256_digest};
use crate::store::layout_tar::{ArchiveEntry, LayoutTarSource};
use crate::store::tar::header::{Deviation, Trailer};
use crate::store::volumes::Volumes;
use crate::store::{Source, StoreError};
use crate::verify::{BlobCheck, hash_all};

/// The outcome of a verification.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub archive: String,
    /// `sha256` of `index.json`: the archive's identity (spec/archive.md AR-6).
    pub identity: Option<Digest>,
    pub ok: bool,
    pub artifacts: usize,
    /// Volumes the archive is split into (0: one file).
    pub volumes: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
    /// The signature checks, when keys were given (spec/archive.md AR-RF4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signatures: Option<super::signatures::SignatureReport>,
    /// For a delta, what it relies on (spec/archive.md DL-4): listed, not failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<crate::model::delta::DeltaRecord>,
}

impl VerifyReport {
    /// A report of `archive` with nothing checked yet.
    pub(super) fn empty(archive: String) -> Self {
        VerifyReport {
            archive,
            identity: None,
            ok: false,
            artifacts: 0,
            volumes: 0,
            blobs: 0,
            bytes: 0,
            failures: Vec::new(),
            warnings: Vec::new(),
            signatures: None,
            delta: None,
        }
    }

    /// Fails the report unless the archive's identity is `expected`: the identity the export
    /// printed, carried separately (a deliberate change to `index.json` changes it; AR-6).
    pub fn expect_identity(&mut self, expected: &Digest) {
        if let Some(mismatch) = identity_mismatch(self.identity.as_ref(), expected) {
            self.failures.push(mismatch);
            self.ok = false;
        }
    }
}

impl VerifyReport {
    /// The signature stage (AR-RF4), run on an archive whose digests all hold: its failures
    /// (bad signatures, unsigned images under `--require-signatures`) fail the report.
    pub fn check_signatures(
        &mut self,
        checked: Option<&(Archive, Graph)>,
        options: &super::signatures::SignatureOptions,
    ) {
        if !options.wanted() || !self.ok {
            return;
        }
        let Some((archive, graph)) = checked else { return };
        let signatures = super::signatures::check_signatures(archive, graph, options);
        if !signatures.failures.is_empty() {
            self.ok = false;
            self.failures.extend(signatures.failures.iter().cloned());
        }
        self.signatures = Some(signatures);
    }
}

/// Why an archive whose identity is `actual` is not the one expected, if it is not.
pub fn identity_mismatch(actual: Option<&Digest>, expected: &Digest) -> Option<String> {
    match actual {
        Some(actual) if actual == expected => None,
        Some(actual) => Some(format!(
            "the archive's identity is {actual}, not the expected {expected}: its index.json is not the one that \
             was exported"
        )),
        None => Some(format!("the archive's identity could not be read, so it is not the expected {expected}")),
    }
}

/// How to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub workers: usize,
    /// For an archive split into volumes, also hash every volume whole against the sha256 its
    /// table of contents lists (a second read of every byte; blobs are verified either way).
    pub volume_digests: bool,
}

/// Which volumes an entry's bytes lie in, for messages about a split archive.
fn where_in(volumes: &Volumes, entry: &ArchiveEntry) -> String {
    let (Some(first), Some(last)) =
        (volumes.describe(entry.data_offset), volumes.describe(entry.data_offset + entry.size.saturating_sub(1)))
    else {
        return String::new();
    };
    if first == last { format!(" (in {first})") } else { format!(" (in {first} to {last})") }
}

/// Every volume hashed whole against its table entry; the failures by volume name.
fn check_volume_digests(archive: &LayoutTarSource, reporter: &dyn Reporter) -> Vec<(String, String)> {
    let Some(table) = archive.table() else { return Vec::new() };
    let parts = archive.volumes().parts();
    let checks: Vec<BlobCheck<'_>> = table
        .volumes
        .iter()
        .zip(parts)
        .map(|(listed, part)| BlobCheck {
            digest: listed.digest,
            size: listed.size,
            open: Box::new(move || Ok(Box::new(archive.open_range(part.start, part.len)) as Box<dyn std::io::Read>)),
        })
        .collect();
    reporter.phase("hashing volumes", Items::volumes(checks.len()), archive.file_size());
    let outcomes = hash_all(&checks, archive.name(), &|size| reporter.bytes(size));
    let count = parts.len();
    outcomes
        .into_iter()
        .zip(parts)
        .enumerate()
        .filter_map(|(index, (outcome, part))| {
            outcome.err().map(|err| {
                let name = part.path.display().to_string();
                (
                    name.clone(),
                    format!("volume {} of {count}, {name}, does not match the sha256 in its table: {err}", index + 1),
                )
            })
        })
        .collect()
}

/// What a reader learned of an archive besides its blobs: what the checks after hashing need.
pub(super) struct Unhashed<'a> {
    pub index: &'a LayoutIndex,
    pub index_bytes: &'a [u8],
    pub deviations: &'a [Deviation],
    pub trailer: Trailer,
    /// An imgpkg tarball, read through the `index.json` ferry would write for it (AR-I5): its
    /// entries are imgpkg's, so the rules on what ferry writes (AR-R11, AR-R12) do not hold them.
    pub imgpkg: bool,
}

/// The checks after hashing, for any archive (a file, volumes or a stream): the bytes no digest
/// covers (AR-R12), `index.json` (AR-R10, AR-R11), then a walk from `index.json` recording as
/// failures every walk problem, every referenced blob missing from `stored` (digest -> size) or
/// stored with another size (non-distributable layers the index records as left out excepted);
/// a blob nothing references is a failure in an archive ferry wrote (AR-R11) and a warning in
/// any other. Returns the walked graph.
pub(super) fn check_graph(
    source: &dyn Source,
    archive: Unhashed<'_>,
    stored: &BTreeMap<Digest, u64>,
    workers: usize,
    failures: &mut BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Graph {
    let index = archive.index;
    check_unwritten_bytes(index, (archive.deviations, archive.trailer), failures, warnings);
    let walk_options = WalkOptions { workers, include_non_distributable: true };
    let graph = walk(source, artifacts_of_index(index), &walk_options);
    for problem in &graph.problems {
        let subject = problem.subject.map_or_else(|| problem.message.clone(), |d| d.to_string());
        failures.entry(subject).or_insert_with(|| problem.message.clone());
    }
    for (number, problem) in ferry_index_problems(index, archive.index_bytes).into_iter().enumerate() {
        failures.insert(format!("{} {number:04}", problem.subject), problem.message);
    }
    check_media_types(index, &graph, failures);
    let recorded_omitted: BTreeSet<String> = index.omitted_layers().into_iter().collect();
    let relied = super::delta::relied_on_checked(source, index, failures);
    for (digest, (descriptor, _)) in &graph.blobs {
        let subject = digest.to_string();
        match stored.get(digest) {
            Some(&size) if size != descriptor.size => {
                failures.entry(subject).or_insert_with(|| {
                    format!(
                        "blob {digest}: a descriptor says {} bytes but the archive entry holds {size} (AR-R9)",
                        descriptor.size
                    )
                });
            }
            Some(_) => {}
            None if media::is_non_distributable(&descriptor.media_type) && recorded_omitted.contains(&subject) => {
                warnings.push(format!("non-distributable layer {digest} was left out at export, as recorded"));
            }
            // DL-4: a delta leaves out what its bases hold; what it relies on is listed, not
            // failed, with the size the manifests give it (the record is what the bases are
            // checked against).
            None => match relied.get(digest) {
                Some(&size) if size == descriptor.size => {}
                Some(&size) => {
                    failures.entry(subject).or_insert_with(|| {
                        format!(
                            "blob {digest}: the delta record relies on it as {size} bytes, but a descriptor says {} (DL-3)",
                            descriptor.size
                        )
                    });
                }
                None => {
                    failures
                        .entry(subject)
                        .or_insert_with(|| format!("blob {digest} is referenced but missing from the archive"));
                }
            },
        }
    }
    // AR-R11: ferry writes only what its artifacts reference (AR-2, AR-3), so in its archive
    // such a blob was added after export: every digest may hold and the identity be unchanged.
    let ferrys = is_ferry_archive(index) && !archive.imgpkg;
    for digest in unreferenced_blobs(index, &graph, stored) {
        if ferrys {
            failures.entry(digest.to_string()).or_insert_with(|| {
                format!(
                    "blob {digest} is not referenced by any artifact: ferry writes only what its artifacts \
                     reference, so it was added after export (AR-R11)"
                )
            });
        } else {
            warnings.push(format!("blob {digest} is not referenced by any artifact"));
        }
    }
    // AR-RF2: a referrer travels with its subject. One whose subject the archive does not hold
    // would, on import, move the cosign tag (`sha256-<subject>.sig`) of an image it does not
    // carry, replacing that image's signatures in the target.
    for artifact in &graph.artifacts {
        let Some(subject) = super::referrers::subject_of(artifact) else { continue };
        if !graph.manifests.contains_key(&subject) {
            let referrer = artifact.descriptor.digest;
            failures.entry(referrer.to_string()).or_insert_with(|| {
                format!(
                    "referrer {referrer} refers to {subject}, which the archive does not hold: importing it would \
                     move the tags of an image the archive does not carry (AR-RF2)"
                )
            });
        }
    }
    for (tag, message) in super::publish::relocate::tag_conflicts(&graph, super::publish::relocate::TagScheme::Digest) {
        failures.entry(format!("tag {tag}")).or_insert(message);
    }
    graph
}

/// The stored blobs nothing references: no artifact's manifest, config or layer, nor a delta
/// record (AR-R11 in ferry's archives, AR-V3 in others).
pub(super) fn unreferenced_blobs(index: &LayoutIndex, graph: &Graph, stored: &BTreeMap<Digest, u64>) -> Vec<Digest> {
    let records: BTreeSet<Digest> =
        index.manifests.iter().filter(|d| super::delta::is_delta_entry(d)).map(|d| d.digest).collect();
    let referenced = |digest: &Digest| {
        graph.manifests.contains_key(digest) || graph.blobs.contains_key(digest) || records.contains(digest)
    };
    stored.keys().filter(|digest| !referenced(digest)).copied().collect()
}

/// AR-R12: the bytes no digest covers are what ferry writes there: each header as AR-W4 gives
/// it, zeros in the tar padding after each entry, and exactly one more zero block after the
/// end-of-archive block. Failures in an archive ferry wrote. In other tools' archives only
/// non-zero padding or trailing bytes are worth a warning (their headers differ by design, and
/// their writers may add zero blocks up to a record size).
fn check_unwritten_bytes(
    index: &LayoutIndex,
    (deviations, trailer): (&[Deviation], Trailer),
    failures: &mut BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) {
    let changed = ": the archive was changed after export (AR-R12)";
    let ferry = is_ferry_archive(index);
    let mut found: Vec<(String, String, bool)> = deviations
        .iter()
        .map(|deviation| match deviation {
            Deviation::Padding(name) => {
                (format!("padding {name}"), format!("the tar padding after {name} is not zeros{changed}"), true)
            }
            Deviation::Header(name) => (
                format!("header {name}"),
                format!("the tar header of {name} is not the one ferry writes (AR-W4){changed}"),
                false,
            ),
        })
        .collect();
    if !trailer.second_block_zero {
        let message = format!("the second end-of-archive block (AR-W3) is missing or not zeros{changed}");
        found.push(("end of archive".into(), message, false));
    }
    if trailer.extra_bytes > 0 {
        // Not part of the archive (tar ends at its end blocks); media may pad it. Worth saying.
        warnings.push(format!(
            "{} bytes follow the end of the archive; they are not part of it and were not read",
            trailer.extra_bytes
        ));
    }
    for (subject, message, worth_a_warning) in found {
        if ferry {
            failures.entry(subject).or_insert(message);
        } else if worth_a_warning {
            warnings.push(message);
        }
    }
}

/// AR-R10: every descriptor pointing at a manifest (from `index.json` or an index) states the
/// media type the manifest has. Parsing already refuses two manifest types that disagree; this
/// catches a descriptor whose type is not a manifest type at all.
fn check_media_types(index: &LayoutIndex, graph: &Graph, failures: &mut BTreeMap<String, String>) {
    let children = graph.manifests.values().flat_map(|manifest| match manifest.kind() {
        ManifestKind::Index(inner) => inner.manifests.iter().collect(),
        ManifestKind::Image(_) => Vec::new(),
    });
    for descriptor in index.manifests.iter().chain(children) {
        let Some(manifest) = graph.manifests.get(&descriptor.digest) else { continue };
        if manifest.media_type() != descriptor.media_type {
            failures.entry(descriptor.digest.to_string()).or_insert_with(|| {
                format!(
                    "manifest {}: a descriptor gives its media type as {:?}, but it is {:?} (AR-R10)",
                    descriptor.digest,
                    descriptor.media_type,
                    manifest.media_type()
                )
            });
        }
    }
}

/// A directory, device, FIFO or socket is not an archive that could be damaged: it is the wrong
/// thing named, a failure (exit 1) and not an integrity verdict (spec/cli.md "verify"). A name
/// that does not exist is left to the reader, which also finds an archive's volumes by it.
pub(super) fn refuse_non_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(metadata) = std::fs::metadata(path) else { return Ok(()) };
    let kind = metadata.file_type();
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else if kind.is_fifo() {
        "a FIFO (to read an archive from a pipe, give - and pipe it to standard input)"
    } else if kind.is_socket() {
        "a socket"
    } else {
        return Ok(());
    };
    Err(StoreError::Io {
        context: path.display().to_string(),
        source: std::io::Error::other(format!(
            "it is {what}, not an archive file (give the archive, its volume table or one of its volumes)"
        )),
    })
}

/// Verifies the archive at `path`. An archive that cannot be opened for a reason other than
/// its content (it does not exist, permission denied) is an `Err`; everything about the
/// content is in the report.
pub fn verify_archive(
    path: &Path,
    options: &VerifyOptions,
    reporter: &dyn Reporter,
) -> Result<VerifyReport, StoreError> {
    check_archive(path, options, reporter).map(|(report, _)| report)
}

/// [`verify_archive`], also handing back the opened archive and its walked graph when the
/// archive could be indexed, so a caller that goes on (import) reads the metadata once.
pub fn check_archive(
    path: &Path,
    options: &VerifyOptions,
    reporter: &dyn Reporter,
) -> Result<(VerifyReport, Option<(Archive, Graph)>), StoreError> {
    refuse_non_file(path)?;
    let mut report = VerifyReport::empty(path.display().to_string());
    let archive = match open_archive(path, options.workers) {
        Ok(archive) => archive,
        Err(err) if err.is_integrity() || matches!(err, StoreError::Invalid { .. }) => {
            report.failures.push(err.to_string());
            return Ok((report, None));
        }
        Err(err) => return Err(err),
    };
    let graph = match &archive {
        Archive::Layout(layout) => check_layout(layout, options, reporter, &mut report),
        Archive::Imgpkg(imgpkg) => check_imgpkg(imgpkg, options, reporter, &mut report),
    };
    // What a delta relies on is listed (DL-4); a record that cannot be read is already a
    // failure of the report (check_graph).
    report.delta = super::delta::delta_record(&archive, archive.index()).ok().flatten();
    Ok((report, Some((archive, graph))))
}

/// Hashes every blob entry of an OCI-layout archive, then [`check_graph`].
fn check_layout(
    archive: &LayoutTarSource,
    options: &VerifyOptions,
    reporter: &dyn Reporter,
    report: &mut VerifyReport,
) -> Graph {
    report.identity = Some(sha256_digest(archive.index_bytes()));
    report.artifacts = archive.index().manifests.iter().filter(|d| !super::delta::is_delta_entry(d)).count();
    report.volumes = archive.table().map_or(0, |table| table.volumes.len());

    // One failure message per subject: the first (most specific) wins.
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let entries: Vec<_> = archive.blob_entries().collect();
    report.blobs = entries.len();
    // Entries lie within the file, so this fits; saturating all the same (AR-R13).
    report.bytes = entries.iter().map(|(_, entry)| entry.size).fold(0, u64::saturating_add);
    let checks: Vec<BlobCheck<'_>> = entries
        .iter()
        .map(|(digest, entry)| BlobCheck {
            digest: *digest,
            size: entry.size,
            open: Box::new(|| Ok(Box::new(archive.open_entry(entry)) as Box<dyn std::io::Read>)),
        })
        .collect();
    reporter.phase("hashing", Items::blobs(checks.len()), report.bytes);
    let outcomes = hash_all(&checks, archive.name(), &|size| reporter.bytes(size));
    for ((digest, entry), outcome) in entries.iter().zip(outcomes) {
        if let Err(failure) = outcome {
            failures.insert(digest.to_string(), format!("{failure}{}", where_in(archive.volumes(), entry)));
        }
    }
    if options.volume_digests {
        failures.extend(check_volume_digests(archive, reporter));
    }

    let stored: BTreeMap<Digest, u64> = entries.iter().map(|(digest, entry)| (*digest, entry.size)).collect();
    let unhashed = Unhashed {
        index: archive.index(),
        index_bytes: archive.index_bytes(),
        deviations: archive.deviations(),
        trailer: archive.trailer(),
        imgpkg: false,
    };
    let graph = check_graph(archive, unhashed, &stored, options.workers, &mut failures, &mut report.warnings);
    report.failures = failures.into_values().collect();
    report.ok = report.failures.is_empty();
    graph
}

/// An imgpkg tarball (spec/archive.md AR-I*): every stored blob (each layer file, and every
/// manifest and config `manifest.json` carries) hashed against its digest, then the checks of
/// [`check_graph`] against the `index.json` ferry would write for it. Its tar headers are
/// imgpkg's, not ferry's, so AR-R12 does not apply to them.
fn check_imgpkg(
    archive: &ImgpkgArchive,
    options: &VerifyOptions,
    reporter: &dyn Reporter,
    report: &mut VerifyReport,
) -> Graph {
    let source = &archive.source;
    report.identity = Some(sha256_digest(&archive.index_bytes));
    report.artifacts = archive.index.manifests.iter().filter(|d| !super::delta::is_delta_entry(d)).count();
    let stored = source.stored();
    report.blobs = stored.len();
    report.bytes = stored.values().sum();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let checks: Vec<BlobCheck<'_>> = stored
        .iter()
        .map(|(digest, size)| BlobCheck {
            digest: *digest,
            size: *size,
            open: Box::new(move || {
                let raw = source.open_raw(digest).expect("stored blobs open");
                Ok(Box::new(raw) as Box<dyn std::io::Read>)
            }),
        })
        .collect();
    reporter.phase("hashing", Items::blobs(checks.len()), report.bytes);
    let outcomes = hash_all(&checks, source.name(), &|size| reporter.bytes(size));
    for (digest, outcome) in stored.keys().zip(outcomes) {
        if let Err(failure) = outcome {
            let place = match source.layer(digest) {
                Some(entry) => format!(" (entry {})", entry.name),
                None => " (in manifest.json)".to_string(),
            };
            failures.insert(digest.to_string(), format!("{failure}{place}"));
        }
    }
    let trailer = source.trailer();
    if trailer.extra_bytes > 0 {
        report.warnings.push(format!(
            "{} bytes follow the end of the tarball; they are not part of it and were not read",
            trailer.extra_bytes
        ));
    }
    let unhashed = Unhashed {
        index: &archive.index,
        index_bytes: &archive.index_bytes,
        deviations: &[],
        trailer: Trailer::FERRYS,
        imgpkg: true,
    };
    let graph = check_graph(source, unhashed, &stored, options.workers, &mut failures, &mut report.warnings);
    report.failures = failures.into_values().collect();
    report.ok = report.failures.is_empty();
    graph
}
