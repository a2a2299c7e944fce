//! The archive source: indexes the tar headers once (one pass, no data read), validates every
//! entry against spec/archive.md, then serves blobs in place by positional reads.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::error::{ArchiveError, ArchiveProblem, walk_failure};
use super::header::{Deviation, HeaderKind, Trailer};
use crate::model::layout::{
    INDEX_FILE, LayoutError, LayoutIndex, MAX_INDEX_BYTES, MAX_OCI_LAYOUT_BYTES, OCI_LAYOUT_FILE, check_oci_layout,
};
use crate::model::volume_table::VolumeTable;
use crate::model::{Descriptor, Digest, Reference};
use crate::store::region::FileRegion;
use crate::store::tar::walk::{PositionalInput, TarWalk, WalkProblem};
use crate::store::volumes::Volumes;
use crate::store::{BlobReader, Source, StoreError, digest_of_blob_path, resolve_in_layout};
use crate::verify::VerifyingReader;

/// One regular-file entry of the archive.
#[derive(Debug, Clone)]
pub struct ArchiveEntry {
    pub name: String,
    pub data_offset: u64,
    pub size: u64,
}

/// An open, indexed, structurally valid archive.
pub struct LayoutTarSource {
    name: String,
    file: Arc<Volumes>,
    file_size: u64,
    blobs: HashMap<Digest, ArchiveEntry>,
    blob_order: Vec<Digest>,
    index: LayoutIndex,
    index_bytes: Vec<u8>,
    deviations: Vec<Deviation>,
    trailer: Trailer,
    /// The table of contents of a split archive.
    table: Option<VolumeTable>,
}

impl LayoutTarSource {
    /// Opens and indexes an archive. Fails on the first structural problem (AR-R1..AR-R8).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        let (file, table) = super::volume_set::open(path)?;
        let archive = Self::open_volumes(file, name)?;
        if let Some(table) = &table {
            let identity = crate::model::sha256_digest(&archive.index_bytes);
            if table.identity != identity || table.size != archive.file_size {
                return Err(StoreError::Archive(ArchiveError {
                    archive: archive.name.clone(),
                    problem: ArchiveProblem::Volume {
                        reason: format!(
                            "the table of contents does not match its volumes: it names identity {} and {} bytes, the volumes hold identity {identity} and {} bytes",
                            table.identity, table.size, archive.file_size
                        ),
                    },
                }));
            }
        }
        Ok(LayoutTarSource { table, ..archive })
    }

    /// Opens and indexes an archive whose files are already open (one, or its volumes).
    pub fn open_volumes(file: Volumes, name: String) -> Result<Self, StoreError> {
        let file_size = file.len();
        let archive_error = |problem| StoreError::Archive(ArchiveError { archive: name.clone(), problem });
        let indexed = index_entries(&file, &name).map_err(|err| match err {
            // In a split archive, say which volume the damage is in (swapped, foreign or damaged).
            StoreError::Archive(ArchiveError { archive, problem }) if file.is_split() && problem.offset().is_some() => {
                let place = file.describe(problem.offset().unwrap_or(0)).unwrap_or_default();
                let reason = format!("{problem}, in {place} (damaged, or the volumes are out of order)");
                StoreError::Archive(ArchiveError { archive, problem: ArchiveProblem::Volume { reason } })
            }
            other => other,
        })?;

        let mut blobs = HashMap::new();
        let mut blob_order = Vec::new();
        let (mut oci_layout, mut index_entry) = (None, None);
        for entry in indexed.entries {
            match entry.name.as_str() {
                OCI_LAYOUT_FILE => oci_layout = Some(entry),
                INDEX_FILE => index_entry = Some(entry),
                other => {
                    let digest = digest_of_blob_path(other).expect("entry names were validated");
                    blob_order.push(digest);
                    blobs.insert(digest, entry);
                }
            }
        }
        let oci_layout =
            oci_layout.ok_or_else(|| archive_error(ArchiveProblem::MissingMetadata { name: OCI_LAYOUT_FILE }))?;
        let index_entry =
            index_entry.ok_or_else(|| archive_error(ArchiveProblem::MissingMetadata { name: INDEX_FILE }))?;
        let read_small = |entry: &ArchiveEntry, limit: u64| -> Result<Vec<u8>, StoreError> {
            if entry.size > limit {
                return Err(archive_error(ArchiveProblem::Oversize {
                    name: entry.name.clone(),
                    size: entry.size,
                    limit,
                }));
            }
            let mut bytes = vec![0; entry.size as usize];
            file.read_exact_at(&mut bytes, entry.data_offset)
                .map_err(|e| StoreError::io(format!("reading {} in {name}", entry.name), e))?;
            Ok(bytes)
        };
        // The error names the file already.
        let bad_metadata = |name: &str, LayoutError::Invalid { reason, .. }| {
            archive_error(ArchiveProblem::BadMetadata { name: name.into(), reason })
        };
        let layout_bytes = read_small(&oci_layout, MAX_OCI_LAYOUT_BYTES)?;
        check_oci_layout(&layout_bytes, OCI_LAYOUT_FILE).map_err(|e| bad_metadata(OCI_LAYOUT_FILE, e))?;
        let index_bytes = read_small(&index_entry, MAX_INDEX_BYTES)?;
        let index = LayoutIndex::parse(&index_bytes, INDEX_FILE).map_err(|e| bad_metadata(INDEX_FILE, e))?;
        Ok(LayoutTarSource {
            name,
            file: Arc::new(file),
            file_size,
            blobs,
            blob_order,
            index,
            index_bytes,
            deviations: indexed.deviations,
            trailer: indexed.trailer,
            table: None,
        })
    }

    /// Headers and padding that are not what ferry writes (AR-R12), in archive order.
    pub fn deviations(&self) -> &[Deviation] {
        &self.deviations
    }

    /// What follows the archive's first end-of-archive block (AR-R12).
    pub fn trailer(&self) -> Trailer {
        self.trailer
    }

    /// The archive's `index.json`.
    pub fn index(&self) -> &LayoutIndex {
        &self.index
    }

    /// The exact bytes of `index.json`, whose sha256 is the archive's identity (AR-6).
    pub fn index_bytes(&self) -> &[u8] {
        &self.index_bytes
    }

    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The table of contents, when the archive is split into volumes.
    pub fn table(&self) -> Option<&VolumeTable> {
        self.table.as_ref()
    }

    /// The archive's files: one, or its volumes in order.
    pub fn volumes(&self) -> &Volumes {
        &self.file
    }

    /// Every blob entry, in archive order.
    pub fn blob_entries(&self) -> impl Iterator<Item = (Digest, &ArchiveEntry)> {
        self.blob_order.iter().map(|digest| (*digest, &self.blobs[digest]))
    }

    /// The entry holding a blob, if the archive has it.
    pub fn entry(&self, digest: &Digest) -> Option<&ArchiveEntry> {
        self.blobs.get(digest)
    }

    /// The raw bytes of an entry, unverified (for hashing the entry against its own name).
    pub fn open_entry(&self, entry: &ArchiveEntry) -> FileRegion {
        FileRegion::new(Arc::clone(&self.file), entry.data_offset, entry.size)
    }

    /// The raw bytes `offset..offset + len` of the archive, across volumes.
    pub fn open_range(&self, offset: u64, len: u64) -> FileRegion {
        FileRegion::new(Arc::clone(&self.file), offset, len)
    }

    fn entry_for(&self, descriptor: &Descriptor) -> Result<&ArchiveEntry, StoreError> {
        let entry = self.blobs.get(&descriptor.digest).ok_or_else(|| StoreError::NotFound {
            store: self.name.clone(),
            what: format!("blob {}", descriptor.digest),
        })?;
        if entry.size != descriptor.size {
            return Err(StoreError::Invalid {
                store: self.name.clone(),
                reason: format!(
                    "blob {}: a descriptor says {} bytes but the archive entry holds {} (AR-R9)",
                    descriptor.digest, descriptor.size, entry.size
                ),
            });
        }
        Ok(entry)
    }
}

impl Source for LayoutTarSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        resolve_in_layout(self, &self.index, reference, |digest| Ok(self.blobs.get(&digest).map(|entry| entry.size)))
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError> {
        let entry = self.entry_for(descriptor)?;
        let region = self.open_entry(entry);
        Ok(VerifyingReader::new(Box::new(region), descriptor.digest, descriptor.size, self.name.clone()))
    }
}

/// What indexing an archive found: its regular entries, the headers and padding that are not
/// what ferry writes, and what follows the end-of-archive block (AR-R12).
struct Indexed {
    entries: Vec<ArchiveEntry>,
    deviations: Vec<Deviation>,
    trailer: Trailer,
}

/// One pass over the headers (the shared walk: AR-R1, AR-R6, AR-R7, AR-R12) with this format's
/// names (AR-R2..AR-R5): returns the regular-file entries that make up the layout, with what
/// AR-R12 looks at.
fn index_entries(file: &Volumes, archive: &str) -> Result<Indexed, StoreError> {
    let fail = |problem| StoreError::Archive(ArchiveError { archive: archive.to_string(), problem });
    let walked = |problem: WalkProblem| walk_failure(archive, problem);
    let mut walk = TarWalk::new(PositionalInput::new(file), archive);
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    while let Some(entry) = walk.next_entry().map_err(walked)? {
        let name = check_entry_name(&entry.raw_name, entry.kind).map_err(fail)?;
        if !seen.insert(name.clone()) {
            return Err(fail(ArchiveProblem::Duplicate { name }));
        }
        if entry.kind == HeaderKind::Regular {
            entries.push(ArchiveEntry { name, data_offset: entry.data_offset, size: entry.size });
        }
    }
    let trailer = walk.trailer().map_err(walked)?;
    Ok(Indexed { entries, deviations: walk.take_deviations(), trailer })
}

/// Validates an entry's name and type; returns the name without a leading `./` and, for
/// directories, without a trailing `/`.
pub(super) fn check_entry_name(raw: &str, kind: HeaderKind) -> Result<String, ArchiveProblem> {
    if raw.starts_with('/') {
        return Err(ArchiveProblem::AbsolutePath { name: raw.to_string() });
    }
    if raw.split('/').any(|component| component == "..") {
        return Err(ArchiveProblem::PathTraversal { name: raw.to_string() });
    }
    if !matches!(kind, HeaderKind::Regular | HeaderKind::Directory) {
        return Err(ArchiveProblem::NotRegular { name: raw.to_string(), kind: kind.describe() });
    }
    let mut name = raw;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    let unexpected = || ArchiveProblem::UnexpectedEntry { name: raw.to_string() };
    if kind == HeaderKind::Directory {
        let dir = name.trim_end_matches('/');
        return match dir {
            "" | "." | "blobs" | "blobs/sha256" => Ok(dir.to_string()),
            _ => Err(unexpected()),
        };
    }
    let allowed = name == OCI_LAYOUT_FILE || name == INDEX_FILE || digest_of_blob_path(name).is_some();
    if allowed { Ok(name.to_string()) } else { Err(unexpected()) }
}

impl std::fmt::Debug for LayoutTarSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayoutTarSource").field("name", &self.name).field("blobs", &self.blobs.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sha256_digest;
    use crate::store::tar::header::write_header;

    /// A tar of `(name, data, type flag)` entries, with the end marker unless `end` is false.
    fn tar(entries: &[(&str, &[u8], u8)], end: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data, flag) in entries {
            let mut block = write_header("x", data.len() as u64, false);
            block[..100].fill(0);
            block[..name.len()].copy_from_slice(name.as_bytes());
            block[156] = *flag;
            block[148..156].fill(b' ');
            let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
            block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            out.extend_from_slice(&block);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        if end {
            out.extend_from_slice(&[0u8; 1024]);
        }
        out
    }

    fn open(bytes: &[u8]) -> Result<LayoutTarSource, StoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        std::fs::write(&path, bytes).unwrap();
        LayoutTarSource::open(&path)
    }

    fn problem(bytes: &[u8]) -> ArchiveProblem {
        match open(bytes) {
            Err(StoreError::Archive(err)) => err.problem,
            other => panic!("expected an archive problem, got {other:?}"),
        }
    }

    const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
    /// One artifact (AR-R15); indexing does not look for its blob.
    const INDEX: &[u8] = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","size":5}]}"#;

    fn blob_name(data: &[u8]) -> String {
        sha256_digest(data).blob_path()
    }

    #[test]
    fn indexes_a_valid_archive_with_dot_slash_prefixes() {
        let name = format!("./{}", blob_name(b"hello"));
        let archive = open(&tar(
            &[
                ("./", b"", b'5'),
                ("./oci-layout", LAYOUT, b'0'),
                ("./index.json", INDEX, b'0'),
                (&name, b"hello", b'0'),
            ],
            true,
        ))
        .unwrap();
        assert_eq!(archive.blob_entries().count(), 1);
    }

    #[test]
    fn refuses_each_kind_of_bad_entry() {
        let blob = blob_name(b"x");
        let base = [("oci-layout", LAYOUT, b'0'), ("index.json", INDEX, b'0')];
        let with = |extra: (&str, &[u8], u8)| {
            let mut entries = base.to_vec();
            entries.push(extra);
            tar(&entries, true)
        };
        assert!(matches!(problem(&with(("/etc/passwd", b"", b'0'))), ArchiveProblem::AbsolutePath { .. }));
        assert!(matches!(problem(&with(("blobs/../../x", b"", b'0'))), ArchiveProblem::PathTraversal { .. }));
        assert!(matches!(problem(&with((&blob, b"", b'2'))), ArchiveProblem::NotRegular { kind: "symbolic link", .. }));
        assert!(matches!(problem(&with((&blob, b"", b'1'))), ArchiveProblem::NotRegular { kind: "hard link", .. }));
        assert!(matches!(problem(&with(("dev", b"", b'3'))), ArchiveProblem::NotRegular { kind: "device file", .. }));
        assert!(matches!(problem(&with(("notes.txt", b"", b'0'))), ArchiveProblem::UnexpectedEntry { .. }));
        assert!(matches!(problem(&with(("blobs/sha256/ABC", b"", b'0'))), ArchiveProblem::UnexpectedEntry { .. }));
        assert!(matches!(problem(&with(("index.json", INDEX, b'0'))), ArchiveProblem::Duplicate { .. }));
        assert!(matches!(problem(&tar(&base, false)), ArchiveProblem::MissingEnd { .. }));
        assert!(matches!(
            problem(&tar(&[("oci-layout", LAYOUT, b'0')], true)),
            ArchiveProblem::MissingMetadata { name: "index.json" }
        ));
    }

    #[test]
    fn refuses_truncation_and_oversize_extension_headers() {
        let mut bytes = tar(&[("oci-layout", LAYOUT, b'0'), ("index.json", INDEX, b'0')], false);
        bytes.truncate(1024 + 512 + 10); // inside index.json's data
        assert!(matches!(problem(&bytes), ArchiveProblem::Truncated { .. }));
        let huge = vec![b'a'; 70 * 1024];
        let pax = tar(&[("pax", &huge, b'x'), ("oci-layout", LAYOUT, b'0')], true);
        assert!(matches!(problem(&pax), ArchiveProblem::Oversize { .. }));
    }

    #[test]
    fn a_blob_read_checks_size_and_digest() {
        let good = blob_name(b"hello");
        let archive =
            open(&tar(&[("oci-layout", LAYOUT, b'0'), ("index.json", INDEX, b'0'), (&good, b"hellp", b'0')], true))
                .unwrap();
        let descriptor = Descriptor::new("x", sha256_digest(b"hello"), 5);
        let err = archive.small_blob(&descriptor).unwrap_err();
        assert!(matches!(err, StoreError::Verify(_)), "{err}");
        let wrong_size = Descriptor::new("x", sha256_digest(b"hello"), 6);
        let Err(err) = archive.blob(&wrong_size) else { panic!("a wrong size must be refused") };
        assert!(err.to_string().contains("AR-R9"), "{err}");
    }
}
