//! The archive sink: lays the archive out from the plan, then lets many workers write blobs
//! at their offsets concurrently; publishes the file under its final name only at the end.
//!
//! An interrupted export leaves `ARCHIVE.partial` behind. Because the layout is a pure function
//! of the plan, [`LayoutTarSink::resume`] can take that file up again (spec/archive.md AR-W7):
//! when its length and every header, `oci-layout` and `index.json` byte are what this plan lays
//! out, its blob regions are hashed again in parallel and the intact ones are kept, so only what
//! is missing or damaged is fetched. A file laid out for anything else is overwritten.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod disk;
mod resume;
mod table;

use disk::{PositionalWriter, write_direct};

use super::header::{BLOCK, write_header};
use super::layout::{ArchiveLayout, EntryKind, PlannedEntry};
use super::reader::LayoutTarSource;
use crate::model::layout::oci_layout_bytes;
use crate::model::volume_table;
use crate::model::{Descriptor, Digest, RawManifest};
use crate::store::volumes::{Volumes, check_replaceable, open_owned_file};
use crate::store::{BlobReader, Plan, Sink, StoreError};
use crate::verify::{Hasher, copy_verified};

/// Copy buffer per worker, for a blob reader that brings no chunks of its own: 1 MiB reads
/// and writes, hashed and written in cache-sized pieces.
const COPY_BUFFER: usize = 1 << 20;

/// Set to `0` to write through the page cache even where direct I/O works (to measure both).
const DIRECT_IO_VARIABLE: &str = "FERRY_DIRECT_IO";

/// Zeros for tar padding and the end-of-archive marker (two blocks, the most ever written).
const ZEROS: [u8; 2 * BLOCK as usize] = [0; 2 * BLOCK as usize];

/// Writes an OCI-layout tarball at `path`, through `path.partial`, or split into volumes
/// `path.001`, `path.002`, ... (through `path.NNN.partial`) with their table of contents.
pub struct LayoutTarSink {
    name: String,
    path: PathBuf,
    partial: PathBuf,
    /// Split into volumes of at most this many bytes (spec/archive.md AR-S1).
    volume_size: Option<u64>,
    file: Option<Arc<Volumes>>,
    /// The same files opened for direct writes, where the filesystem takes them: blobs go from
    /// the buffers they were received and hashed in straight to the disk, with no copy into the
    /// page cache and no writeback pass after it (issue 18). Headers, `index.json` and
    /// manifests are written through `file`, never while blobs are written directly.
    direct: Option<Volumes>,
    /// Whether direct writes are tried at all (`FERRY_DIRECT_IO=0` turns them off).
    direct_io: bool,
    layout: Option<ArchiveLayout>,
    /// What [`LayoutTarSink::resume`] took up: the skeleton digest of the plan it matched.
    resumed_for: Option<Digest>,
    /// Blobs the resumed partial file already holds intact; [`Sink::has_blob`] says so.
    intact: HashSet<Digest>,
    intact_bytes: u64,
}

/// The bytes every archive of a plan starts from: its layout, `oci-layout` and `index.json`.
struct Skeleton {
    layout: ArchiveLayout,
    oci_layout: Vec<u8>,
    index: Vec<u8>,
}

impl Skeleton {
    fn of(plan: &Plan) -> Result<Self, StoreError> {
        let oci_layout = oci_layout_bytes();
        let index = plan.index.to_canonical_json();
        let layout = ArchiveLayout::new(plan, oci_layout.len() as u64, index.len() as u64)
            .map_err(|e| StoreError::Invalid { store: "the export's plan".into(), reason: e.to_string() })?;
        Ok(Skeleton { layout, oci_layout, index })
    }

    fn header(entry: &PlannedEntry) -> [u8; 512] {
        write_header(&entry.name, entry.size, entry.kind == EntryKind::Directory)
    }

    /// The data ferry writes for an entry before any blob arrives (`oci-layout`, `index.json`).
    fn metadata(&self, entry: &PlannedEntry) -> Option<&[u8]> {
        match entry.kind {
            EntryKind::OciLayout => Some(&self.oci_layout),
            EntryKind::Index => Some(&self.index),
            _ => None,
        }
    }

    /// Names the skeleton's bytes (every header, `oci-layout`, `index.json`, the total size):
    /// two plans with the same digest lay out byte-identical archives around their blobs.
    fn digest(&self) -> Digest {
        let mut hasher = Hasher::new();
        hasher.update(&self.layout.total_size.to_be_bytes());
        for entry in &self.layout.entries {
            hasher.update(&Self::header(entry));
            if let Some(data) = self.metadata(entry) {
                hasher.update(data);
            }
        }
        hasher.finish().0
    }
}

impl LayoutTarSink {
    pub fn new(path: &Path) -> Self {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        LayoutTarSink {
            name: path.display().to_string(),
            path: path.to_path_buf(),
            partial: PathBuf::from(partial),
            volume_size: None,
            file: None,
            direct: None,
            direct_io: std::env::var_os(DIRECT_IO_VARIABLE).is_none_or(|v| v != "0"),
            layout: None,
            resumed_for: None,
            intact: HashSet::new(),
            intact_bytes: 0,
        }
    }

    /// A sink writing volumes of at most `volume_size` bytes and their table (AR-S1).
    pub fn split(path: &Path, volume_size: u64) -> Self {
        let mut sink = Self::new(path);
        sink.volume_size = Some(volume_size.max(1));
        sink.partial = Self::with_suffix(&sink.volume_path(1), ".partial");
        sink
    }

    fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    fn archive_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// `ARCHIVE.NNN`, volume `number` (from 1).
    fn volume_path(&self, number: usize) -> PathBuf {
        self.path.with_file_name(volume_table::volume_name(&self.archive_name(), number))
    }

    /// The files written until [`Sink::finish`] renames them, with their lengths.
    fn partial_files(&self, total: u64) -> Vec<(PathBuf, u64)> {
        match self.volume_size {
            None => vec![(self.partial.clone(), total)],
            Some(size) => {
                let count = total.div_ceil(size).max(1);
                (1..=count)
                    .map(|n| {
                        let len = if n == count { total - size * (count - 1) } else { size };
                        (Self::with_suffix(&self.volume_path(n as usize), ".partial"), len)
                    })
                    .collect()
            }
        }
    }

    /// The file being written until [`Sink::finish`] renames it (the first volume's, when split).
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// The bytes of the archive laid out (all volumes together).
    pub fn archive_size(&self) -> u64 {
        self.layout.as_ref().map_or(0, |layout| layout.total_size)
    }

    /// Whether a failure is a full disk (ENOSPC, or a disk quota), which the sink reports with
    /// what to do about it.
    pub fn is_disk_full(err: &StoreError) -> bool {
        matches!(err, StoreError::Io { source, .. } if is_disk_full(source))
    }

    /// The open archive and its layout. Before [`Sink::prepare`] (or a resume) there are none,
    /// and using the sink then is an error naming the bug, never a panic.
    fn state(&self) -> Result<(&Arc<Volumes>, &ArchiveLayout), StoreError> {
        match (&self.file, &self.layout) {
            (Some(file), Some(layout)) => Ok((file, layout)),
            _ => Err(self.not_laid_out()),
        }
    }

    fn not_laid_out(&self) -> StoreError {
        StoreError::Invalid {
            store: self.name.clone(),
            reason: "the archive sink was used before the archive was laid out (a bug in ferry)".into(),
        }
    }

    fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), StoreError> {
        let file = self.file.as_ref().ok_or_else(|| self.not_laid_out())?;
        file.write_all_at(bytes, offset)
            .map_err(|e| self.write_failure(format!("writing {}", self.partial.display()), e))
    }

    /// A failed write, with what to do when the disk is full (the partial file is kept, and
    /// `--resume` reuses what it holds).
    fn write_failure(&self, context: String, err: io::Error) -> StoreError {
        if !is_disk_full(&err) {
            return StoreError::io(context, err);
        }
        let advice = format!(
            "the disk is full ({err}); free space, then run the same export again with --resume: {} is kept and \
             the blobs already in it are reused",
            self.partial.display()
        );
        StoreError::io(context, io::Error::new(io::ErrorKind::StorageFull, advice))
    }

    /// Lays a fresh partial file out: created empty at its final size, then headers,
    /// `oci-layout` and `index.json`. Padding and the end marker are the zeros the file starts
    /// with.
    fn create(&mut self, skeleton: &Skeleton) -> Result<(), StoreError> {
        let mut files = Vec::new();
        for (path, len) in self.partial_files(skeleton.layout.total_size) {
            let context = || format!("creating {}", path.display());
            // An existing partial file is overwritten only when it is a regular file, never
            // through a link (AR-W2a); emptied first, so the new layout starts from zeros.
            let file = open_owned_file(&path, true).map_err(|e| StoreError::io(context(), e))?;
            file.set_len(0).map_err(|e| StoreError::io(context(), e))?;
            // Sizing the file up front reserves its length; its blocks are allocated too where
            // the filesystem can, so that blobs are written into them side by side.
            file.set_len(len).map_err(|e| self.write_failure(context(), e))?;
            crate::store::volumes::preallocate(&file, len);
            files.push((path, file, len));
        }
        self.file = Some(Arc::new(Volumes::new(files)));
        for entry in &skeleton.layout.entries {
            self.write_at(&Skeleton::header(entry), entry.header_offset)?;
            if let Some(data) = skeleton.metadata(entry) {
                self.write_at(data, entry.data_offset())?;
            }
        }
        Ok(())
    }
}

/// ENOSPC, or a disk quota used up: a full disk to the user either way.
fn is_disk_full(err: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(err.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        || matches!(err.raw_os_error(), Some(ENOSPC | EDQUOT))
}

impl Sink for LayoutTarSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self, plan: &Plan) -> Result<(), StoreError> {
        let skeleton = Skeleton::of(plan)?;
        // A set no reader would open (a table over its 1 MiB bound, more files than a process
        // keeps open by default) is refused before anything is written or fetched.
        if let Some(size) = self.volume_size {
            let count = skeleton.layout.total_size.div_ceil(size);
            if count > volume_table::MAX_VOLUMES as u64 {
                return Err(StoreError::Invalid {
                    store: self.name.clone(),
                    reason: format!(
                        "--volume-size {size} would make {count} volumes of this {}-byte archive, over the {} a \
                         reader opens (AR-S1); choose a larger --volume-size",
                        skeleton.layout.total_size,
                        volume_table::MAX_VOLUMES
                    ),
                });
            }
        }
        let resumed = self.file.is_some() && self.resumed_for == Some(skeleton.digest());
        if resumed {
            // Headers, oci-layout and index.json were checked byte for byte by resume();
            // manifests are rewritten by put_manifest, and blobs are intact or fetched again.
            self.rewrite_zeros(&skeleton.layout)?;
        } else {
            self.intact.clear();
            self.intact_bytes = 0;
            self.resumed_for = None;
            self.create(&skeleton)?;
        }
        self.layout = Some(skeleton.layout);
        self.direct = self.open_direct();
        Ok(())
    }

    fn has_blob(&self, descriptor: &Descriptor) -> Result<bool, StoreError> {
        Ok(self.intact.contains(&descriptor.digest))
    }

    fn put_blob(&self, descriptor: &Descriptor, reader: &mut BlobReader<'_>) -> Result<(), StoreError> {
        let (file, layout) = self.state()?;
        let entry =
            layout.entry(&descriptor.digest).filter(|entry| entry.size == descriptor.size).ok_or_else(|| {
                StoreError::Invalid {
                    store: self.name.clone(),
                    reason: format!("blob {} is not in the plan", descriptor.digest),
                }
            })?;
        let context = || format!("writing blob {} to {}", descriptor.digest, self.partial.display());
        if let Some(direct) = &self.direct {
            return write_direct(direct, file, reader, entry.data_offset(), descriptor.size)
                .map_err(|e| self.write_failure(context(), e));
        }
        let mut out = PositionalWriter::new(file, entry.data_offset());
        copy_verified(reader, &mut out, COPY_BUFFER).map_err(|e| self.write_failure(context(), e))?;
        out.start_writeback();
        Ok(())
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<(), StoreError> {
        let (_, layout) = self.state()?;
        let entry = layout.entry(&manifest.digest()).ok_or_else(|| StoreError::Invalid {
            store: self.name.clone(),
            reason: format!("manifest {} is not in the plan", manifest.digest()),
        })?;
        self.write_at(manifest.bytes(), entry.data_offset())
    }

    /// Makes the archive durable; it is published under its final name only by
    /// [`LayoutTarSink::publish`], after the caller has checked it ([`LayoutTarSink::written`]).
    fn finish(&mut self, _plan: &Plan) -> Result<(), StoreError> {
        let (file, _) = self.state()?;
        // A full disk can surface only here, when delayed allocation meets the disk.
        file.sync_all().map_err(|e| self.write_failure(format!("flushing {}", self.partial.display()), e))
    }
}

impl LayoutTarSink {
    /// The finished (not yet published) archive, indexed by the reader with its own rules
    /// (AR-R1..AR-R8; spec/archive.md AR-W2c): an `Err` is a structural problem the reader
    /// refuses. Blobs are not read; the caller walks the graph without hashing them again.
    pub fn written(&self) -> Result<LayoutTarSource, StoreError> {
        let (file, _) = self.state()?;
        let files =
            file.try_clone().map_err(|e| StoreError::io(format!("reading back {}", self.partial.display()), e))?;
        LayoutTarSource::open_volumes(files, self.partial.display().to_string())
    }

    /// Publishes the finished archive: renames `ARCHIVE.partial` to `ARCHIVE`, or, for volumes,
    /// renames each, removes higher-numbered volumes of an earlier export and writes the table
    /// of contents last (its presence says the volumes are complete).
    pub fn publish(&mut self) -> Result<(), StoreError> {
        let (file, layout) = self.state()?;
        let Some(volume_size) = self.volume_size else {
            rename(&self.partial, &self.path)?;
            sync_parent_dir(&self.path);
            return Ok(());
        };
        let table = self.table(file, layout, volume_size)?;
        for (number, part) in file.parts().iter().enumerate() {
            rename(&part.path, &self.volume_path(number + 1))?;
        }
        let mut stale = file.parts().len() + 1;
        // Only earlier volumes go: whatever else holds such a name stays, and is not followed.
        while check_replaceable(&self.volume_path(stale)).is_ok()
            && std::fs::remove_file(self.volume_path(stale)).is_ok()
        {
            stale += 1;
        }
        let table_path = Self::with_suffix(&self.path, volume_table::SUFFIX);
        let temporary = Self::with_suffix(&table_path, ".partial");
        // Like the volumes, never written through a link or into a FIFO (AR-W2a).
        open_owned_file(&temporary, true)
            .and_then(|mut written| {
                written.set_len(0)?;
                written.write_all(&table.to_json())?;
                written.sync_all()
            })
            .map_err(|e| self.write_failure(format!("writing {}", temporary.display()), e))?;
        rename(&temporary, &table_path)?;
        sync_parent_dir(&self.path);
        Ok(())
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    check_replaceable(to).map_err(|e| StoreError::io(format!("renaming {} to {}", from.display(), to.display()), e))?;
    std::fs::rename(from, to).map_err(|e| StoreError::io(format!("renaming {} to {}", from.display(), to.display()), e))
}

/// Makes a rename durable; best effort, since not every filesystem supports syncing a directory.
fn sync_parent_dir(path: &Path) {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs::OpenOptions;

    use super::*;
    use crate::model::layout::LayoutIndex;
    use crate::model::sha256_digest;
    use crate::store::{BlobRole, PlannedBlob};
    use crate::verify::VerifyingReader;

    const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

    /// A plan of blobs only (no manifests), enough to lay out and fill an archive.
    fn plan_of(blobs: &[&[u8]]) -> Plan {
        // An index lists at least one artifact (AR-R15): here the first blob stands for one.
        let first = Descriptor::new(LAYER, sha256_digest(blobs[0]), blobs[0].len() as u64);
        Plan {
            index: LayoutIndex::new(vec![first], BTreeMap::new()),
            manifests: Vec::new(),
            blobs: blobs
                .iter()
                .map(|bytes| PlannedBlob {
                    descriptor: Descriptor::new(LAYER, sha256_digest(bytes), bytes.len() as u64),
                    role: BlobRole::Layer,
                })
                .collect(),
            omitted: Vec::new(),
        }
    }

    /// Runs what the engine runs: prepare, every blob the sink lacks, finish (when `finish`).
    fn write(sink: &mut LayoutTarSink, plan: &Plan, blobs: &[&[u8]], finish: bool) -> Vec<Digest> {
        sink.prepare(plan).unwrap();
        let mut fetched = Vec::new();
        for (blob, bytes) in plan.blobs.iter().zip(blobs) {
            let descriptor = &blob.descriptor;
            if sink.has_blob(descriptor).unwrap() {
                continue;
            }
            let mut reader: BlobReader<'_> =
                VerifyingReader::new(Box::new(*bytes), descriptor.digest, descriptor.size, "test");
            sink.put_blob(descriptor, &mut reader).unwrap();
            fetched.push(descriptor.digest);
        }
        if finish {
            sink.finish(plan).unwrap();
            sink.written().expect("the reader accepts what the writer wrote");
            sink.publish().unwrap();
        }
        fetched
    }

    /// A sink used before it laid the archive out says so (a bug), and never panics.
    #[test]
    fn a_sink_used_before_prepare_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LayoutTarSink::new(&dir.path().join("early.tar"));
        let plan = plan_of(&[b"blob"]);
        let descriptor = &plan.blobs[0].descriptor;
        let mut reader: BlobReader<'_> =
            VerifyingReader::new(Box::new(&b"blob"[..]), descriptor.digest, descriptor.size, "test");
        let err = sink.put_blob(descriptor, &mut reader).expect_err("not laid out");
        assert!(err.to_string().contains("before the archive was laid out"), "{err}");
        assert!(sink.finish(&plan).is_err());
        assert!(sink.publish().is_err());
        assert!(!dir.path().join("early.tar").exists());
    }

    /// AR-W7: a damaged blob and damaged padding in the partial file are repaired; intact blobs
    /// are kept; the result is byte-identical to an uninterrupted archive.
    #[test]
    fn resume_refetches_only_damaged_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let blobs: [&[u8]; 3] = [b"first blob, 31 bytes of content", &[7u8; 3000], b"third"];
        let plan = plan_of(&blobs);
        let reference = dir.path().join("reference.tar");
        write(&mut LayoutTarSink::new(&reference), &plan, &blobs, true);
        let expected = std::fs::read(&reference).unwrap();

        let target = dir.path().join("target.tar");
        let mut damaged = expected.clone();
        let layout = Skeleton::of(&plan).unwrap().layout;
        let second = layout.entry(&sha256_digest(blobs[1])).unwrap();
        damaged[(second.data_offset() + 100) as usize] ^= 0xff;
        let third = layout.entry(&sha256_digest(blobs[2])).unwrap();
        damaged[(third.data_offset() + 10) as usize] = b'x';
        let end = damaged.len() - 3;
        damaged[end] = 1;
        std::fs::write(dir.path().join("target.tar.partial"), &damaged).unwrap();

        let mut sink = LayoutTarSink::new(&target);
        assert_eq!(sink.resume(&plan, &|_| {}).unwrap(), None);
        assert_eq!(sink.intact_blobs(), (2, 31 + 5));
        let fetched = write(&mut sink, &plan, &blobs, true);
        assert_eq!(fetched, [sha256_digest(blobs[1])]);
        assert!(std::fs::read(&target).unwrap() == expected, "the resumed archive differs");
        assert!(!dir.path().join("target.tar.partial").exists());
    }

    /// AR-W7: a partial file laid out for another plan is not trusted, and says why.
    #[test]
    fn resume_refuses_a_partial_file_of_another_plan() {
        let dir = tempfile::tempdir().unwrap();
        let blobs: [&[u8]; 2] = [b"one", b"two"];
        let plan = plan_of(&blobs);
        let target = dir.path().join("target.tar");
        let mut sink = LayoutTarSink::new(&target);
        assert_eq!(sink.resume(&plan, &|_| {}).unwrap(), None, "no partial file: nothing to say");
        assert_eq!(sink.intact_blobs(), (0, 0));

        let other = plan_of(&[b"one", b"six"]);
        write(&mut LayoutTarSink::new(&target), &other, &[b"one", b"six"], false);
        let mut sink = LayoutTarSink::new(&target);
        let reason = sink.resume(&plan, &|_| {}).unwrap().expect("a partial file of another plan is refused");
        assert!(reason.contains("tar header for blobs/sha256/") && reason.contains("other content"), "{reason}");
        assert_eq!(sink.intact_blobs(), (0, 0));

        std::fs::write(dir.path().join("target.tar.partial"), b"short").unwrap();
        let reason = LayoutTarSink::new(&target).resume(&plan, &|_| {}).unwrap().unwrap();
        assert!(reason.starts_with("it is 5 bytes, but this export lays out"), "{reason}");

        let fetched = write(&mut sink, &plan, &blobs, true);
        assert_eq!(fetched.len(), 2, "everything is fetched again");
    }

    /// Pages of `path` in `offset..offset + len` held in the page cache (mincore).
    fn resident_pages(path: &Path, offset: u64, len: usize) -> usize {
        use std::os::fd::AsRawFd;
        let file = File::open(path).unwrap();
        let page = 4096u64;
        let start = offset / page * page;
        let span = (offset + len as u64 - start) as usize;
        let mut resident = vec![0u8; span.div_ceil(page as usize)];
        // SAFETY: a read-only shared mapping of an open file, unmapped before returning;
        // mincore only writes `resident`, which holds one byte per page of the mapping.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                start as i64,
            );
            assert_ne!(map, libc::MAP_FAILED);
            assert_eq!(libc::mincore(map, span, resident.as_mut_ptr()), 0);
            libc::munmap(map, span);
        }
        resident.iter().filter(|&&b| b & 1 == 1).count()
    }

    /// Issue 18: blobs go from the buffers they were hashed in straight to the disk (direct
    /// I/O): no copy into the page cache, no writeback pass after it. The archive is
    /// byte-identical to one written through the page cache, padding included, split or not.
    #[test]
    fn blobs_are_written_directly_and_the_archive_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..(3 << 20) + 17u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let odd: Vec<u8> = vec![0xa5; 700_001];
        let blobs: [&[u8]; 3] = [&big, b"small, 29 bytes of blob data", &odd];
        let plan = plan_of(&blobs);

        let direct_path = dir.path().join("direct.tar");
        let mut direct = LayoutTarSink::new(&direct_path);
        direct.prepare(&plan).unwrap();
        assert!(direct.direct.is_some(), "direct writes work in {}", dir.path().display());
        #[cfg(target_os = "linux")]
        {
            // Its blocks are allocated before any blob lands (issue 18: no allocating writes).
            use std::os::unix::fs::MetadataExt;
            let partial = std::fs::metadata(&direct.partial).unwrap();
            assert!(
                partial.blocks() * 512 >= partial.len(),
                "{} of {} bytes allocated",
                partial.blocks() * 512,
                partial.len()
            );
        }
        write(&mut direct, &plan, &blobs, true);
        let buffered_path = dir.path().join("buffered.tar");
        let mut buffered = LayoutTarSink::new(&buffered_path);
        buffered.direct_io = false;
        write(&mut buffered, &plan, &blobs, true);
        assert!(buffered.direct.is_none());
        let entry = Skeleton::of(&plan).unwrap().layout.entry(&sha256_digest(&big)).unwrap().clone();
        let pages = big.len().div_ceil(4096);
        let cached = resident_pages(&direct_path, entry.data_offset(), big.len());
        // The pages shared with headers and padding, read by the archive check, may be cached.
        assert!(cached < pages / 10, "{cached} of {pages} pages of a directly written blob are in the page cache");
        let cached = resident_pages(&buffered_path, entry.data_offset(), big.len());
        assert!(cached > pages / 2, "only {cached} of {pages} pages of a buffered blob are cached: the check is blind");

        // Read only now: reading the archives brings them into the page cache.
        let expected = std::fs::read(&buffered_path).unwrap();
        assert!(std::fs::read(&direct_path).unwrap() == expected, "direct and buffered archives differ");

        // Volumes on block boundaries are written directly too; others through the page cache.
        for (volume_size, direct_expected) in [(1u64 << 20, true), (1_000_001, false)] {
            let path = dir.path().join(format!("split-{volume_size}.tar"));
            let mut split = LayoutTarSink::split(&path, volume_size);
            split.prepare(&plan).unwrap();
            assert_eq!(split.direct.is_some(), direct_expected, "volume size {volume_size}");
            write(&mut split, &plan, &blobs, true);
            let mut joined = Vec::new();
            for number in 1.. {
                match std::fs::read(split.volume_path(number)) {
                    Ok(bytes) => joined.extend(bytes),
                    Err(_) => break,
                }
            }
            assert!(joined == expected, "volumes of {volume_size} bytes differ from the single file");
        }
    }

    /// A full disk says so, names the partial file, and says how to go on.
    #[test]
    fn a_full_disk_says_what_to_do() {
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let err = std::os::unix::fs::FileExt::write_all_at(&full, b"x", 0).unwrap_err();
        let sink = LayoutTarSink::new(Path::new("out/bundle.tar"));
        let failure = sink.write_failure("writing blob sha256:ab to out/bundle.tar.partial".to_string(), err);
        assert!(LayoutTarSink::is_disk_full(&failure));
        let message = failure.to_string();
        assert!(
            message.starts_with("writing blob sha256:ab to out/bundle.tar.partial: the disk is full (")
                && message.contains("free space, then run the same export again with --resume")
                && message.contains("out/bundle.tar.partial is kept"),
            "{message}"
        );
        let other = sink.write_failure("writing".to_string(), io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!LayoutTarSink::is_disk_full(&other));
    }
}
