//! "What archive is this?": the one place that looks at a file before any reader opens it
//! (spec/archive.md "Other archives ferry reads"). Every command that opens an archive asks
//! here first, so a file of another kind (a `docker save` archive, a compressed tar, no tar at
//! all) is named for what it is, with what to do, as the wrong input (exit 2), never reported
//! as a damaged archive (exit 3). A tar whose headers are damaged is still a tar: it goes to
//! the reader, whose rules name the damage.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::StoreError;
use super::imgpkg_tar::format::{MANIFEST_FILE, looks_like_blob_file, looks_like_docker_save, looks_like_imgpkg};
use super::imgpkg_tar::scan::scan;
use super::layout_tar::volume_set::table_path;
use super::tar::header::{BLOCK, HeaderKind, parse_header};
use super::volumes::Volumes;

/// The archives ferry reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// An OCI image layout in a tar, ferry's or another tool's (also in volumes), or a tar too
    /// damaged to tell: the archive reader decides.
    Layout,
    /// imgpkg's `copy --to-tar` tarball.
    ImgpkgTar,
}

/// A file of a kind ferry does not read, named, with what to do instead.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path} is {what}: {hint}")]
pub struct ForeignArchive {
    pub path: String,
    pub what: String,
    pub hint: String,
}

/// How much of `manifest.json` the probe reads to tell imgpkg's from docker's.
const MAX_PROBE_MANIFEST: u64 = 64 * 1024 * 1024;
/// Entries the probe looks at before deciding from what it has seen.
const MAX_PROBE_ENTRIES: usize = 1_000_000;

/// Says what the file at `path` is. A file that cannot be opened, and a split archive, are left
/// to the archive reader (which names the problem); a foreign file is a
/// [`StoreError::Foreign`].
pub fn probe(path: &Path) -> Result<ArchiveKind, StoreError> {
    if table_path(path).is_some() {
        return Ok(ArchiveKind::Layout);
    }
    let Ok(mut file) = File::open(path) else { return Ok(ArchiveKind::Layout) };
    let Ok(metadata) = file.metadata() else { return Ok(ArchiveKind::Layout) };
    if !metadata.is_file() {
        return Ok(ArchiveKind::Layout);
    }
    let shown = path.display().to_string();
    let foreign = |what: &str, hint: String| {
        StoreError::Foreign(ForeignArchive { path: shown.clone(), what: what.to_string(), hint })
    };
    let mut head = Vec::with_capacity(4 * BLOCK as usize);
    (&mut file).take(4 * BLOCK).read_to_end(&mut head).map_err(|e| StoreError::io(format!("reading {shown}"), e))?;
    if let Some((what, hint)) = foreign_head(&head, &shown, false) {
        return Err(foreign(what, hint));
    }
    // ferry writes `oci-layout` first (AR-W1): its archives are known without a scan.
    let first: &[u8; 512] = head.get(..BLOCK as usize).and_then(|block| block.try_into().ok()).unwrap_or(&[0; 512]);
    if parse_header(first).is_ok_and(|header| header.name.trim_start_matches("./") == "oci-layout") {
        return Ok(ArchiveKind::Layout);
    }
    let volumes = Volumes::single(path, file, metadata.len());
    // A tar whose headers cannot all be read is damaged: the archive reader names where.
    let Ok(scanned) = scan(&volumes, MAX_PROBE_ENTRIES) else { return Ok(ArchiveKind::Layout) };
    let clean = |name: &str| name.trim_start_matches("./").trim_end_matches('/').to_string();
    let names: Vec<String> = scanned.entries.iter().map(|entry| clean(&entry.name)).collect();
    let has = |wanted: &str| names.iter().any(|name| name == wanted);
    let manifest =
        scanned.entries.iter().find(|entry| clean(&entry.name) == MANIFEST_FILE && entry.kind == HeaderKind::Regular);
    if let Some(entry) = manifest.filter(|entry| entry.size <= MAX_PROBE_MANIFEST) {
        let mut bytes = vec![0u8; entry.size as usize];
        volumes
            .read_exact_at(&mut bytes, entry.data_offset)
            .map_err(|e| StoreError::io(format!("reading {shown}"), e))?;
        if looks_like_docker_save(&bytes) {
            return Err(foreign(
                "a `docker save` archive (its manifest.json lists Config, RepoTags and Layers), not an OCI image layout",
                format!(
                    "load it (`docker load -i {shown}`), push it to a registry and export it from there with \
                     `ferry export -i REF -o ARCHIVE`, or turn it into an OCI layout (`skopeo copy \
                     docker-archive:{shown} oci:DIR`) and run `ferry export --oci-layout DIR -o ARCHIVE`"
                ),
            ));
        }
        if looks_like_imgpkg(&bytes) {
            return Ok(ArchiveKind::ImgpkgTar);
        }
    }
    if !has("oci-layout")
        && !has("index.json")
        && (has(MANIFEST_FILE) || (!names.is_empty() && names.iter().all(|name| looks_like_blob_file(name))))
    {
        // imgpkg's layout with an unreadable or missing manifest.json: its reader names the damage.
        return Ok(ArchiveKind::ImgpkgTar);
    }
    let layout_like = |name: &String| {
        matches!(name.as_str(), "" | "." | "oci-layout" | "index.json" | "blobs" | "blobs/sha256")
            || name.starts_with("blobs/")
    };
    if names.is_empty() || names.iter().any(layout_like) {
        return Ok(ArchiveKind::Layout);
    }
    let examples: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    Err(foreign(
        "a tar archive of other files, neither an OCI image layout nor an imgpkg tarball",
        format!("it holds {} entries such as {examples:?}; {READ_HINT}", names.len()),
    ))
}

/// What the first bytes of `shown` say it is, when that is not a tar at all: compressed,
/// empty, JSON, or neither a tar header nor a known compression.
fn foreign_head(head: &[u8], shown: &str, stream: bool) -> Option<(&'static str, String)> {
    if let Some((what, tool)) = compression(head) {
        let stem = shown.trim_end_matches(".gz").trim_end_matches(".zst").trim_end_matches(".tar");
        let hint = if stream {
            format!("ferry reads archives uncompressed: decompress it in the pipe (`... | {tool} | ferry ... -`)")
        } else {
            format!(
                "ferry reads archives uncompressed: decompress it first (`{tool} {shown} > {stem}.tar`) and give ferry the tar"
            )
        };
        return Some((what, hint));
    }
    if head.is_empty() {
        let what = if stream { "empty, not an archive" } else { "an empty file, not an archive" };
        return Some((what, READ_HINT.to_string()));
    }
    if !looks_like_tar(head) {
        let what = if head.first() == Some(&b'{') || head.first() == Some(&b'[') {
            "a JSON file, not a tar archive"
        } else {
            "not a tar archive (neither a tar header nor a known compression at its start)"
        };
        return Some((what, READ_HINT.to_string()));
    }
    None
}

/// The same for a stream (`verify -`, `import -`), from its first block: also an imgpkg
/// tarball or a `docker save` archive, told by their first entry, since a pipe is read once
/// and only ferry's own format streams.
pub fn probe_stream_head(head: &[u8], shown: &str) -> Result<(), StoreError> {
    let foreign = |what: &str, hint: String| {
        StoreError::Foreign(ForeignArchive { path: shown.to_string(), what: what.to_string(), hint })
    };
    if let Some((what, hint)) = foreign_head(head, shown, true) {
        return Err(foreign(what, hint));
    }
    let first: &[u8; 512] = head.get(..BLOCK as usize).and_then(|block| block.try_into().ok()).unwrap_or(&[0; 512]);
    let name = parse_header(first).map(|header| header.name.trim_start_matches("./").to_string()).unwrap_or_default();
    if name == MANIFEST_FILE || looks_like_blob_file(&name) {
        return Err(foreign(
            "an imgpkg tarball or a `docker save` archive (it starts with manifest.json or a sha256-<hex>.tar.gz), \
             which ferry reads only from a file",
            "save the stream to a file and give ferry the file (`ferry verify FILE`, `ferry import FILE ...`), or \
             turn an imgpkg tarball into a ferry archive with `ferry export --imgpkg-tar FILE -o ARCHIVE`"
                .to_string(),
        ));
    }
    Ok(())
}

const READ_HINT: &str = "ferry reads the archives `ferry export` writes (and their volumes), other OCI image layouts \
                         in a tar, and imgpkg's `copy --to-tar` tarballs";

/// A compression format by its magic bytes, with the command that undoes it.
fn compression(head: &[u8]) -> Option<(&'static str, &'static str)> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(("gzip-compressed, not a tar", "gzip -dc"))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(("zstd-compressed, not a tar", "zstd -dc"))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(("xz-compressed, not a tar", "xz -dc"))
    } else if head.starts_with(b"BZh") {
        Some(("bzip2-compressed, not a tar", "bzip2 -dc"))
    } else {
        None
    }
}

/// Whether the first blocks hold a tar header: one that parses, or the ustar magic where a
/// header has it (a tar with a damaged first header is still a tar, and damaged).
fn looks_like_tar(head: &[u8]) -> bool {
    head.chunks_exact(BLOCK as usize).any(|block| {
        let block: &[u8; 512] = block.try_into().expect("chunks of one block");
        &block[257..262] == b"ustar" || (block.iter().any(|&b| b != 0) && parse_header(block).is_ok())
    })
}
