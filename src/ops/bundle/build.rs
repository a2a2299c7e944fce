//! Building a bundle or image from files on disk, reproducibly (spec/imgpkg.md "push"): one
//! gzip tar layer with the Docker layer media type, entries in byte order with fixed times,
//! owners and modes, a config with the bundle label and fixed dates, a Docker schema 2
//! manifest. The same files give the same digest on every run and machine.
//!
//! The layer goes to a temporary file as it is written (hashed on the way, never held in
//! memory); the built image is a [`Source`] so the engine pushes or exports it like any other.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use flate2::{Compression, GzBuilder};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::model::layout::canonical_json;
use crate::model::lock::{ImagesLock, LockError};
use crate::model::manifest::BUNDLE_LABEL;
use crate::model::{Descriptor, Digest, RawManifest, Reference, media};
use crate::store::{BlobReader, BlobRole, Plan, PlannedBlob, Source, StoreError};
use crate::verify::VerifyingReader;

/// The date imgpkg writes into configs (Go's zero time), kept for reproducibility.
const FIXED_DATE: &str = "0001-01-01T00:00:00Z";
/// The lock a bundle must carry, relative to the layer root.
const LOCK_PATH: &str = ".imgpkg/images.yml";

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Files and directories (`-f`): a directory's contents go at the layer root, a file by its
    /// base name.
    pub paths: Vec<PathBuf>,
    pub bundle: bool,
    /// Relative paths left out, matched exactly (imgpkg's `--file-exclusion`, default `.git`).
    pub exclusions: Vec<String>,
    /// Config labels (`-l`); the bundle label is ferry's to set.
    pub labels: BTreeMap<String, String>,
    /// Keep group and other permission bits (otherwise only the owner's are kept).
    pub preserve_permissions: bool,
}

/// Why a build was refused: every problem found, not only the first.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the {kind}:\n  {}", .problems.join("\n  "))]
pub struct BuildError {
    pub kind: &'static str,
    pub problems: Vec<String>,
}

/// A built image: manifest and config in memory, the layer in a temporary file.
pub struct BuiltImage {
    manifest: RawManifest,
    config: Vec<u8>,
    config_descriptor: Descriptor,
    layer: tempfile::NamedTempFile,
    layer_descriptor: Descriptor,
    /// The bundle's lock, when a bundle was built.
    pub lock: Option<ImagesLock>,
    /// Regular files in the layer.
    pub files: usize,
}

/// One file or directory going into the layer.
#[derive(Debug)]
struct Entry {
    source: PathBuf,
    directory: bool,
    mode: u32,
    size: u64,
    /// The device and inode the walk found: what is read later must be this same file.
    identity: (u64, u64),
}

/// Opens the file the walk found at `entry`, and only that: never through a link at its name
/// (`O_NOFOLLOW`), never waiting on a FIFO put there since (`O_NONBLOCK`), and refused unless
/// the open file is a regular file with the device and inode the walk saw. Anyone who can
/// write inside PATH while ferry builds could otherwise swap a checked file for a link to any
/// file the user can read (which would be pushed), or a directory above it for one.
fn open_walked(entry: &Entry) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&entry.source)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("it was replaced by a symbolic link while ferry read the files"),
            _ => err,
        })?;
    let found = file.metadata()?;
    if !found.is_file() || (found.dev(), found.ino()) != entry.identity {
        return Err(io::Error::other("it was replaced while ferry read the files (not the file found at first)"));
    }
    Ok(file)
}

/// Builds the image `options` describe.
pub fn build(options: &BuildOptions) -> Result<BuiltImage, BuildError> {
    let kind = if options.bundle { "bundle" } else { "image" };
    let refuse = |problems: Vec<String>| BuildError { kind, problems };
    let mut problems = Vec::new();
    if options.paths.is_empty() {
        return Err(refuse(vec!["no files given: name them with -f".into()]));
    }
    if options.labels.contains_key(BUNDLE_LABEL) {
        problems.push(format!("the label {BUNDLE_LABEL} is reserved: ferry sets it on bundles (-b)"));
    }
    let entries = collect(options, &mut problems);
    let lock = check_imgpkg_dir(options, &entries, &mut problems);
    if !problems.is_empty() {
        return Err(refuse(problems));
    }
    let io_problem = |context: String, err: io::Error| refuse(vec![format!("{context}: {err}")]);
    let layer = tempfile::NamedTempFile::new().map_err(|e| io_problem("creating a temporary file".into(), e))?;
    let (layer_descriptor, diff_id) =
        write_layer(&entries, options, layer.as_file()).map_err(|(context, err)| io_problem(context, err))?;

    let mut labels = options.labels.clone();
    if options.bundle {
        labels.insert(BUNDLE_LABEL.to_string(), "true".to_string());
    }
    let inner_config = if labels.is_empty() { json!({}) } else { json!({ "Labels": labels }) };
    let config = canonical_json(&json!({
        "architecture": "",
        "config": inner_config,
        "created": FIXED_DATE,
        "history": [{ "created": FIXED_DATE, "created_by": "ferry push" }],
        "os": "",
        "rootfs": { "diff_ids": [diff_id.to_string()], "type": "layers" },
    }));
    let config_descriptor =
        Descriptor::new(media::DOCKER_CONFIG, crate::model::sha256_digest(&config), config.len() as u64);
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": media::DOCKER_MANIFEST,
        "config": descriptor_json(&config_descriptor),
        "layers": [descriptor_json(&layer_descriptor)],
    }));
    let manifest = RawManifest::parse(manifest, Some(media::DOCKER_MANIFEST)).expect("ferry's own manifest is valid");
    let files = entries.values().filter(|entry| !entry.directory).count();
    Ok(BuiltImage { manifest, config, config_descriptor, layer, layer_descriptor, lock, files })
}

fn descriptor_json(descriptor: &Descriptor) -> serde_json::Value {
    json!({ "mediaType": descriptor.media_type, "size": descriptor.size, "digest": descriptor.digest.to_string() })
}

/// Every entry of the layer by its path in the layer, from every `-f`; problems (duplicates,
/// symlinks, special files, unreadable paths) are collected, not returned at the first.
fn collect(options: &BuildOptions, problems: &mut Vec<String>) -> BTreeMap<String, Entry> {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut origin: BTreeMap<String, PathBuf> = BTreeMap::new();
    for root in &options.paths {
        let meta = match std::fs::symlink_metadata(root) {
            Ok(meta) => meta,
            Err(err) => {
                problems.push(format!("{}: {err}", root.display()));
                continue;
            }
        };
        let walker = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name();
        let walker = if meta.is_dir() { walker.min_depth(1) } else { walker };
        let mut iter = walker.into_iter();
        while let Some(item) = iter.next() {
            let item = match item {
                Ok(item) => item,
                Err(err) => {
                    problems.push(err.to_string());
                    continue;
                }
            };
            let relative = if meta.is_dir() {
                item.path().strip_prefix(root).expect("walkdir stays under its root").to_path_buf()
            } else {
                PathBuf::from(item.file_name())
            };
            let Some(name) = relative.to_str().map(str::to_string) else {
                problems.push(format!("{}: the name is not UTF-8", item.path().display()));
                continue;
            };
            if options.exclusions.iter().any(|excluded| excluded.trim_end_matches('/') == name) {
                if item.file_type().is_dir() {
                    iter.skip_current_dir();
                }
                continue;
            }
            let file_type = item.file_type();
            if file_type.is_symlink() {
                problems.push(format!("{}: symlinks are not allowed in an image ferry builds", item.path().display()));
                continue;
            }
            if !file_type.is_dir() && !file_type.is_file() {
                problems.push(format!(
                    "{}: only regular files and directories can go into an image (sockets, fifos and devices cannot)",
                    item.path().display()
                ));
                continue;
            }
            let meta = match item.metadata() {
                Ok(meta) => meta,
                Err(err) => {
                    problems.push(format!("{}: {err}", item.path().display()));
                    continue;
                }
            };
            if let Some(first) = origin.get(&name) {
                if !(file_type.is_dir() && entries.get(&name).is_some_and(|e| e.directory)) {
                    problems.push(format!(
                        "{name} is given twice: by {} and by {}",
                        first.display(),
                        item.path().display()
                    ));
                }
                continue;
            }
            origin.insert(name.clone(), item.path().to_path_buf());
            let entry = Entry {
                source: item.path().to_path_buf(),
                directory: file_type.is_dir(),
                mode: meta.permissions().mode(),
                size: if file_type.is_file() { meta.len() } else { 0 },
                identity: (meta.dev(), meta.ino()),
            };
            entries.insert(name, entry);
        }
    }
    entries
}

/// A bundle needs `.imgpkg/images.yml` at the root of exactly one `-f` directory, with a valid
/// lock; an image must not carry `.imgpkg/`. Returns the bundle's lock.
fn check_imgpkg_dir(
    options: &BuildOptions,
    entries: &BTreeMap<String, Entry>,
    problems: &mut Vec<String>,
) -> Option<ImagesLock> {
    let holders: Vec<&PathBuf> = options.paths.iter().filter(|path| path.join(".imgpkg").is_dir()).collect();
    if !options.bundle {
        if let Some(holder) = holders.first() {
            problems.push(format!(
                "{} holds a .imgpkg directory, which makes it a bundle: push it with -b",
                holder.display()
            ));
        }
        return None;
    }
    match holders.as_slice() {
        [] => {
            problems.push(format!(
                "a bundle needs {LOCK_PATH}: none of the -f directories holds a .imgpkg directory at its top"
            ));
            return None;
        }
        [_] => {}
        several => {
            let names: Vec<String> = several.iter().map(|p| p.display().to_string()).collect();
            problems.push(format!("only one -f directory may hold .imgpkg; found it in {}", names.join(" and ")));
            return None;
        }
    }
    let Some(entry) = entries.get(LOCK_PATH) else {
        problems
            .push(format!("{} has no images.yml: a bundle needs {LOCK_PATH}", holders[0].join(".imgpkg").display()));
        return None;
    };
    let what = entry.source.display().to_string();
    let text = match open_walked(entry).and_then(|file| {
        let mut text = String::new();
        file.take(entry.size).read_to_string(&mut text).map(|_| text)
    }) {
        Ok(text) => text,
        Err(err) => {
            problems.push(format!("{what}: {err}"));
            return None;
        }
    };
    match ImagesLock::parse_reporting_all(&text, &what) {
        Ok(lock) => Some(lock),
        Err(errors) => {
            problems.extend(errors.iter().map(LockError::to_string));
            None
        }
    }
}

/// Writes the gzip tar layer into `file`; returns its descriptor and the tar's diff_id.
fn write_layer(
    entries: &BTreeMap<String, Entry>,
    options: &BuildOptions,
    file: &File,
) -> Result<(Descriptor, Digest), (String, io::Error)> {
    let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let gzip = GzBuilder::new().mtime(0).write(compressed, Compression::default());
    let mut tar = tar::Builder::new(HashingWriter::new(gzip));
    tar.mode(tar::HeaderMode::Deterministic);
    for (name, entry) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let mode = if options.preserve_permissions { entry.mode & 0o777 } else { entry.mode & 0o700 };
        let failed = |err: io::Error| (format!("adding {}", entry.source.display()), err);
        if entry.directory {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(if options.preserve_permissions { mode } else { 0o700 });
            header.set_size(0);
            tar.append_data(&mut header, format!("{name}/"), io::empty()).map_err(failed)?;
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(mode);
            header.set_size(entry.size);
            let source = open_walked(entry).map_err(failed)?;
            // A file that changes size while being read would make a wrong tar; read exactly
            // the size the header promises and fail if it is not there.
            let mut limited = ExactReader { inner: source.take(entry.size), left: entry.size };
            tar.append_data(&mut header, name, &mut limited).map_err(failed)?;
        }
    }
    let finish = |err: io::Error| ("writing the layer".to_string(), err);
    let uncompressed = tar.into_inner().map_err(finish)?;
    let (gzip, diff_id, _) = uncompressed.finish();
    let compressed = gzip.finish().map_err(finish)?;
    let (mut buffered, digest, size) = compressed.finish();
    buffered.flush().map_err(finish)?;
    Ok((Descriptor::new(media::DOCKER_LAYER_GZIP, digest, size), diff_id))
}

/// Fails a read that ends before `left` bytes (a file shrunk while it was added).
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was read"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Passes bytes on and hashes them.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), written: 0 }
    }

    fn finish(self) -> (W, Digest, u64) {
        let digest = Digest::from_bytes(self.hasher.finalize().into());
        (self.inner, digest, self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BuiltImage {
    pub fn manifest(&self) -> &RawManifest {
        &self.manifest
    }

    pub fn descriptor(&self) -> Descriptor {
        self.manifest.descriptor()
    }

    /// Everything to transfer: the manifest, its config and its layer.
    pub fn plan(&self) -> Plan {
        Plan {
            index: crate::model::layout::LayoutIndex::new(Vec::new(), BTreeMap::new()),
            manifests: vec![self.manifest.clone()],
            blobs: vec![
                PlannedBlob { descriptor: self.config_descriptor.clone(), role: BlobRole::Config },
                PlannedBlob { descriptor: self.layer_descriptor.clone(), role: BlobRole::Layer },
            ],
            omitted: Vec::new(),
        }
    }

    /// The references in the bundle's lock (empty for an image).
    pub fn lock_references(&self) -> Vec<Reference> {
        self.lock.as_ref().and_then(|lock| lock.references("images.yml").ok()).unwrap_or_default()
    }
}

impl Source for BuiltImage {
    fn name(&self) -> &str {
        "the built image"
    }

    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        match reference.digest {
            Some(digest) if digest == self.manifest.digest() => Ok(self.descriptor()),
            _ => Err(StoreError::NotFound { store: self.name().into(), what: reference.to_string() }),
        }
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError> {
        let digest = descriptor.digest;
        let reader: Box<dyn Read + Send> = if digest == self.manifest.digest() {
            Box::new(io::Cursor::new(self.manifest.bytes().to_vec()))
        } else if digest == self.config_descriptor.digest {
            Box::new(io::Cursor::new(self.config.clone()))
        } else if digest == self.layer_descriptor.digest {
            let file = self.layer.reopen().map_err(|e| StoreError::io("reopening the built layer", e))?;
            Box::new(io::BufReader::with_capacity(256 << 10, file))
        } else {
            return Err(StoreError::NotFound { store: self.name().into(), what: format!("blob {digest}") });
        };
        Ok(VerifyingReader::new(reader, digest, descriptor.size, self.name().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file swapped after the walk (for a link to a file outside PATH, a FIFO, a hard link to another file,
    /// or through a directory replaced by a link) is refused when it is opened, never read.
    #[test]
    fn a_file_swapped_after_the_walk_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let outside = scratch.path().join("secret");
        std::fs::write(&outside, "TOPSECRET").unwrap();
        type Swap<'a> = &'a dyn Fn(&std::path::Path);
        let swaps: [(&str, Swap); 4] = [
            ("link", &|path| {
                std::fs::remove_file(path).unwrap();
                std::os::unix::fs::symlink(&outside, path).unwrap();
            }),
            ("fifo", &|path| {
                std::fs::remove_file(path).unwrap();
                let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
            }),
            ("hardlink", &|path| {
                std::fs::remove_file(path).unwrap();
                std::fs::hard_link(&outside, path).unwrap();
            }),
            ("dir/file", &|path| {
                let dir = path.parent().unwrap();
                std::fs::rename(dir, dir.with_extension("moved")).unwrap();
                std::fs::create_dir_all(scratch.path().join("elsewhere")).unwrap();
                std::fs::write(scratch.path().join("elsewhere/file"), "TOPSECRET").unwrap();
                std::os::unix::fs::symlink(scratch.path().join("elsewhere"), dir).unwrap();
            }),
        ];
        for (case, (name, swap)) in swaps.into_iter().enumerate() {
            let root = scratch.path().join(format!("src{case}"));
            std::fs::create_dir_all(root.join("dir")).unwrap();
            let options = BuildOptions { paths: vec![root.clone()], ..BuildOptions::default() };
            let path = root.join(name);
            std::fs::write(&path, "mine").unwrap();
            let mut problems = Vec::new();
            let entries = collect(&options, &mut problems);
            assert!(problems.is_empty(), "{problems:?}");
            let entry = &entries[name];
            assert!(open_walked(entry).is_ok(), "{name}: untouched, it opens");
            swap(&path);
            let err = open_walked(entry).expect_err(name);
            assert!(err.to_string().contains("replaced"), "{name}: {err}");
        }
    }
}
