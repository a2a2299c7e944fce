//! Reading a layer's tar without trusting it (spec/archive.md BL-1..BL-7): the one place that
//! decompresses a layer, decides what each entry's name means and where its links resolve, and
//! reads small files out of it. Every reader of a layer's files (a bundle's lock for export,
//! verify, inspect and describe; the files `pull` writes; an ImageLocations record) goes through
//! [`LayerRules`], so they all see the same files and refuse the same layers.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::model::media::Compression;

/// Longest entry name or link target accepted (BL-2).
pub const MAX_NAME_BYTES: usize = 4096;
/// Links followed while resolving one link, as Linux's `MAXSYMLINKS` (BL-5).
pub const MAX_LINK_HOPS: usize = 40;
/// Largest small file read out of a layer: a lock, `bundle.yml`, an ImageLocations record (BL-7).
pub const MAX_SMALL_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Decompressed bytes read from a layer that should only hold small files (BL-7).
pub const MAX_RECORD_LAYER_BYTES: u64 = 64 * 1024 * 1024;

/// How many times its own size a bundle's layer may grow when decompressed (BL-7): text,
/// configuration and charts compress 3-20 times; a bomb (a zstd layer of repeated blocks grows
/// 30,000 times) is stopped after this much work instead of hours of it.
pub const MAX_BUNDLE_LAYER_RATIO: u64 = 128;

/// The decompressed bytes read from a bundle layer of `size` compressed bytes (BL-7): at most
/// [`MAX_BUNDLE_LAYER_RATIO`] times its size, and at least [`MAX_RECORD_LAYER_BYTES`].
pub fn bundle_layer_limit(size: u64) -> u64 {
    size.saturating_mul(MAX_BUNDLE_LAYER_RATIO).max(MAX_RECORD_LAYER_BYTES)
}

/// The decompressed tar stream of a layer: every gzip member, every zstd frame (BL-1).
pub fn decompress<'a, R: Read + 'a>(compression: Compression, layer: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(layer),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(layer)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(layer)?),
    })
}

/// Why a layer was not read.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The layer breaks a rule: it is hostile or damaged (an integrity failure).
    #[error("{layer}: refusing entry {entry:?}: {reason}")]
    Refused { layer: String, entry: String, reason: String },
    /// Reading the stream failed (which may carry a verifying reader's digest mismatch).
    #[error("{layer}: {source}")]
    Io { layer: String, source: io::Error },
}

impl LayerError {
    /// A hostile or damaged layer (a broken rule, undecodable compression, a digest mismatch),
    /// as opposed to a failure to read it.
    pub fn is_integrity(&self) -> bool {
        match self {
            LayerError::Refused { .. } => true,
            LayerError::Io { source, .. } => {
                source.kind() == io::ErrorKind::InvalidData || crate::verify::verify_error(source).is_some()
            }
        }
    }

    /// The I/O error underneath, e.g. a verifying reader's mismatch.
    pub fn io_source(&self) -> Option<&io::Error> {
        match self {
            LayerError::Io { source, .. } => Some(source),
            LayerError::Refused { .. } => None,
        }
    }
}

/// What an entry is, once its name and links have passed the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File,
    /// A symlink and its target, as written in the layer.
    Symlink(String),
    /// A hard link to an earlier regular file of the layer (cleaned path).
    HardLink(PathBuf),
    /// Tar metadata with no file of its own (a harmless PAX global header).
    Metadata,
}

/// One entry that passed the rules.
#[derive(Debug, Clone)]
pub struct CheckedEntry {
    /// The cleaned path relative to the layer's root; `None` for the root itself.
    pub path: Option<PathBuf>,
    pub kind: EntryKind,
    /// The name as the layer spells it (for messages), at most [`MAX_NAME_BYTES`].
    pub raw: String,
}

/// What the rules know of a path already seen in this layer.
#[derive(Debug, Clone)]
enum Node {
    Directory,
    /// A directory only implied by the paths of entries beneath it.
    Implied,
    File,
    Symlink(String),
}

/// The rules of one layer, applied entry by entry in order; [`LayerRules::finish`] after the
/// last entry re-checks every link against the whole layer.
pub struct LayerRules {
    layer: String,
    bundle: bool,
    seen: HashMap<PathBuf, Node>,
    links: Vec<PathBuf>,
}

const BUNDLE_DIR: &str = ".imgpkg";
/// Files of a bundle that must be regular files (BL-6).
pub const BUNDLE_FILES: [&str; 2] = [".imgpkg/images.yml", ".imgpkg/bundle.yml"];

impl LayerRules {
    /// Rules for the layer named `layer` in errors; `bundle` adds BL-6.
    pub fn new(layer: &str, bundle: bool) -> Self {
        LayerRules { layer: layer.to_string(), bundle, seen: HashMap::new(), links: Vec::new() }
    }

    fn refuse(&self, entry: &str, reason: impl Into<String>) -> LayerError {
        LayerError::Refused { layer: self.layer.clone(), entry: entry.to_string(), reason: reason.into() }
    }

    /// An I/O error while reading this layer.
    pub fn io(&self, source: io::Error) -> LayerError {
        LayerError::Io { layer: self.layer.clone(), source }
    }

    /// Checks the next entry of the layer against BL-2..BL-6 and what came before it.
    pub fn check<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<CheckedEntry, LayerError> {
        let raw_bytes = entry.path_bytes().into_owned();
        let raw = self.name(&raw_bytes)?;
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return self.global_header(entry, raw);
        }
        let path = self.clean(&raw, &raw)?;
        let Some(path) = path else {
            return match kind {
                tar::EntryType::Directory => Ok(CheckedEntry { path: None, kind: EntryKind::Directory, raw }),
                _ => Err(self.refuse(&raw, "only a directory may name the layer's root")),
            };
        };
        match self.seen.get(&path) {
            None => {}
            // A directory may be named after the entries beneath it; nothing else may.
            Some(Node::Implied) if kind == tar::EntryType::Directory => {}
            Some(Node::Implied) => {
                return Err(self.refuse(&raw, format!("{} is the directory of earlier entries", path.display())));
            }
            Some(_) => return Err(self.refuse(&raw, format!("{} appears twice in the layer", path.display()))),
        }
        for ancestor in path.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()) {
            match self.seen.get(ancestor) {
                Some(Node::Symlink(_)) => {
                    return Err(self.refuse(&raw, format!("it lies beneath the symlink {}", ancestor.display())));
                }
                Some(Node::File) => {
                    return Err(self.refuse(&raw, format!("it lies beneath the file {}", ancestor.display())));
                }
                Some(Node::Directory | Node::Implied) | None => {}
            }
        }
        let (checked, node) = match kind {
            tar::EntryType::Directory => (EntryKind::Directory, Node::Directory),
            tar::EntryType::Regular | tar::EntryType::Continuous => (EntryKind::File, Node::File),
            tar::EntryType::Symlink => {
                let target = self.link_target(entry, &raw)?;
                resolve_inside(&path, &target, &|p| self.link_at(p))
                    .map_err(|reason| self.refuse(&raw, format!("symlink to {target:?}: {reason}")))?;
                (EntryKind::Symlink(target.clone()), Node::Symlink(target))
            }
            tar::EntryType::Link => {
                let target = self.link_target(entry, &raw)?;
                let source = self.clean(&target, &raw)?;
                match source.as_ref().and_then(|s| self.seen.get(s)) {
                    Some(Node::File) => {}
                    _ => {
                        return Err(self.refuse(
                            &raw,
                            format!("hard link to {target:?}, which is not an earlier file of this layer"),
                        ));
                    }
                }
                (EntryKind::HardLink(source.expect("checked above")), Node::File)
            }
            other => return Err(self.refuse(&raw, format!("{} entries are never read", kind_name(other)))),
        };
        if self.bundle {
            self.check_bundle_path(&path, &checked, &raw)?;
        }
        if matches!(node, Node::Symlink(_)) {
            self.links.push(path.clone());
        }
        for ancestor in path.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()) {
            self.seen.entry(ancestor.to_path_buf()).or_insert(Node::Implied);
        }
        self.seen.insert(path.clone(), node);
        Ok(CheckedEntry { path: Some(path), kind: checked, raw })
    }

    /// Re-checks every link of the layer against all of it (BL-5): a link whose target passes
    /// through a link written after it is only judged correctly here.
    pub fn finish(&self) -> Result<(), LayerError> {
        for link in &self.links {
            let Some(Node::Symlink(target)) = self.seen.get(link) else { continue };
            resolve_inside(link, target, &|p| self.link_at(p))
                .map_err(|reason| self.refuse(&link.to_string_lossy(), format!("symlink to {target:?}: {reason}")))?;
        }
        Ok(())
    }

    fn link_at(&self, path: &Path) -> Option<String> {
        match self.seen.get(path) {
            Some(Node::Symlink(target)) => Some(target.clone()),
            _ => None,
        }
    }

    /// BL-6: `.imgpkg` is a directory, the lock and `bundle.yml` regular files.
    fn check_bundle_path(&self, path: &Path, kind: &EntryKind, raw: &str) -> Result<(), LayerError> {
        if path == Path::new(BUNDLE_DIR) && *kind != EntryKind::Directory {
            return Err(self.refuse(raw, format!("{BUNDLE_DIR} must be a directory in a bundle")));
        }
        if BUNDLE_FILES.iter().any(|file| path == Path::new(file)) && *kind != EntryKind::File {
            return Err(self.refuse(raw, format!("{} must be a regular file in a bundle", path.display())));
        }
        Ok(())
    }

    /// A PAX global header is harmless metadata unless it tries to name files.
    fn global_header<R: Read>(&self, entry: &mut tar::Entry<'_, R>, raw: String) -> Result<CheckedEntry, LayerError> {
        let refused = |reason: &str| self.refuse(&raw, reason.to_string());
        let extensions = entry.pax_extensions().map_err(|e| self.io(e))?;
        for extension in extensions.into_iter().flatten() {
            let extension = extension.map_err(|e| self.io(e))?;
            if matches!(extension.key_bytes(), b"path" | b"linkpath" | b"size") {
                return Err(refused("a PAX global header may not set path, linkpath or size"));
            }
        }
        Ok(CheckedEntry { path: None, kind: EntryKind::Metadata, raw })
    }

    /// BL-2 on the bytes of a name: bounded, UTF-8, no NUL.
    fn name(&self, raw: &[u8]) -> Result<String, LayerError> {
        let shown = || String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
        if raw.len() > MAX_NAME_BYTES {
            return Err(self.refuse(&shown(), format!("its name is {} bytes long (limit {MAX_NAME_BYTES})", raw.len())));
        }
        if raw.contains(&0) {
            return Err(self.refuse(&shown(), "its name holds a NUL byte"));
        }
        String::from_utf8(raw.to_vec()).map_err(|_| self.refuse(&shown(), "its name is not UTF-8"))
    }

    fn link_target<R: Read>(&self, entry: &tar::Entry<'_, R>, raw: &str) -> Result<String, LayerError> {
        let bytes = entry.link_name_bytes().map(|b| b.into_owned()).unwrap_or_default();
        let target =
            self.name(&bytes).map_err(|_| self.refuse(raw, "its link target is too long, not UTF-8 or holds NUL"))?;
        if target.is_empty() {
            return Err(self.refuse(raw, "its link target is empty"));
        }
        Ok(target)
    }

    /// The cleaned relative path of `name` (BL-2), `None` for the root.
    fn clean(&self, name: &str, raw: &str) -> Result<Option<PathBuf>, LayerError> {
        let mut clean = PathBuf::new();
        for component in Path::new(name).components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refuse(raw, format!("{name:?} is absolute")));
                }
                Component::ParentDir => return Err(self.refuse(raw, format!("{name:?} has a '..' component"))),
            }
        }
        Ok((!clean.as_os_str().is_empty()).then_some(clean))
    }
}

/// Where the link at `link` (relative to the root) with `target` resolves, following the links
/// `link_at` knows (at most [`MAX_LINK_HOPS`]): `Err` with the reason when it leaves the root,
/// is absolute or loops. Missing components are taken as plain directories, which is what the
/// kernel would find if they were created later as directories; links created later are
/// caught by checking again at the end.
pub fn resolve_inside(link: &Path, target: &str, link_at: &dyn Fn(&Path) -> Option<String>) -> Result<(), String> {
    if target.starts_with('/') {
        return Err("only relative links inside the root".into());
    }
    let mut here: PathBuf = link.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut pending: VecDeque<String> = target.split('/').map(str::to_string).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "" | "." => {}
            ".." => {
                if !here.pop() {
                    return Err("it resolves outside the root".into());
                }
            }
            name => {
                here.push(name);
                if let Some(next) = link_at(&here) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(format!("more than {MAX_LINK_HOPS} links to follow (a loop?)"));
                    }
                    if next.starts_with('/') {
                        return Err(format!("it passes through {}, an absolute link", here.display()));
                    }
                    here.pop();
                    for part in next.split('/').rev() {
                        pending.push_front(part.to_string());
                    }
                }
            }
        }
    }
    Ok(())
}

/// A reader that fails once more than `limit` bytes have come through it: a layer meant to
/// hold only small files is not decompressed without end (BL-7).
pub struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Bounded<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Bounded { inner, left: limit, limit }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One more byte would be over: look before failing, so exactly `limit` bytes pass.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("over {} bytes once decompressed", self.limit),
                )),
            };
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..want])?;
        self.left -= read as u64;
        Ok(read)
    }
}

/// Reads one small file entry whole, refusing it over [`MAX_SMALL_FILE_BYTES`] without reading
/// further (BL-7); `what` names it in errors.
pub fn read_small_file(entry: &mut impl Read, size: u64, what: &str) -> io::Result<String> {
    if size > MAX_SMALL_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} is {size} bytes, over the {MAX_SMALL_FILE_BYTES}-byte limit"),
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry.take(MAX_SMALL_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SMALL_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} is over the {MAX_SMALL_FILE_BYTES}-byte limit"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{what} is not UTF-8")))
}

/// Reads the regular files `wanted` out of the (decompressed) tar `stream` under the layer
/// rules, each bounded by [`read_small_file`]; the rest of the layer is read and checked but
/// not kept. Returns the files found, in the order of `wanted`.
pub fn read_small_files(
    stream: impl Read,
    layer: &str,
    bundle: bool,
    wanted: &[&str],
) -> Result<Vec<Option<String>>, LayerError> {
    let mut rules = LayerRules::new(layer, bundle);
    let mut found: Vec<Option<String>> = vec![None; wanted.len()];
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries().map_err(|e| rules.io(e))? {
        let mut entry = entry.map_err(|e| rules.io(e))?;
        let checked = rules.check(&mut entry)?;
        let (Some(path), EntryKind::File) = (&checked.path, &checked.kind) else { continue };
        if let Some(slot) = wanted.iter().position(|w| path == Path::new(w)) {
            let size = entry.size();
            if size > MAX_SMALL_FILE_BYTES {
                return Err(rules.refuse(
                    &checked.raw,
                    format!("it is {size} bytes, over the {MAX_SMALL_FILE_BYTES}-byte limit for small files"),
                ));
            }
            let what = format!("{} in {layer}", path.display());
            found[slot] = Some(read_small_file(&mut entry, size, &what).map_err(|e| rules.io(e))?);
        }
    }
    rules.finish()?;
    Ok(found)
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        tar::EntryType::GNUSparse => "sparse file",
        _ => "special",
    }
}

/// The test suite's writer of hostile tar entries (tests/support/raw_tar.rs), shared by path.
#[cfg(test)]
#[path = "../../tests/support/raw_tar.rs"]
mod raw_tar;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) use super::raw_tar::{entry as raw_entry, header as header_block, tar};

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    const LOCK: &[u8] = b"apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages: []\n";

    fn lock_of(tar: &[u8]) -> Result<Option<String>, LayerError> {
        read_small_files(tar, "layer", true, &[".imgpkg/images.yml"]).map(|mut found| found.remove(0))
    }

    fn refused(entries: &[Vec<u8>]) -> String {
        match lock_of(&tar(entries)) {
            Err(err @ LayerError::Refused { .. }) => err.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn bl3_the_same_path_twice_in_any_spelling_is_refused() {
        let first = raw_entry(".imgpkg/images.yml", b'0', LOCK, "");
        for second in [
            raw_entry(".imgpkg/images.yml", b'0', b"other", ""),
            raw_entry("./.imgpkg/images.yml", b'0', b"other", ""),
            raw_entry(".imgpkg/./images.yml", b'0', b"other", ""),
            raw_entry(".imgpkg//images.yml", b'0', b"other", ""),
            raw_entry(".imgpkg/images.yml", b'2', b"", "other.yml"),
            raw_entry(".imgpkg/images.yml/", b'5', b"", ""),
        ] {
            let message = refused(&[first.clone(), second]);
            assert!(message.contains("appears twice"), "{message}");
        }
        // Any path, not only the lock.
        let message = refused(&[raw_entry("a", b'0', b"x", ""), raw_entry("./a", b'0', b"y", "")]);
        assert!(message.contains("appears twice"), "{message}");
    }

    #[test]
    fn bl5_link_chains_are_resolved_in_any_order() {
        let up = raw_entry("a/up", b'2', b"", "..");
        let esc = raw_entry("esc", b'2', b"", "a/up/..");
        let dirs = raw_entry("a", b'5', b"", "");
        for order in [vec![dirs.clone(), up.clone(), esc.clone()], vec![dirs.clone(), esc.clone(), up.clone()]] {
            let message = refused(&order);
            assert!(message.contains("outside"), "{message}");
        }
        // d1/.../d10/up -> ../../... back to the root is inside; through it, `..` leaves.
        let deep = (1..=10).map(|i| format!("d{i}")).collect::<Vec<_>>().join("/");
        let back = [".."; 10].join("/");
        let message = refused(&[
            raw_entry(&format!("{deep}/up"), b'2', b"", &back),
            raw_entry("etc", b'2', b"", &format!("{deep}/up/../etc")),
        ]);
        assert!(message.contains("outside"), "{message}");
        // Loops and absolute hops are refused; links that stay inside are fine.
        assert!(refused(&[raw_entry("x", b'2', b"", "y"), raw_entry("y", b'2', b"", "x")]).contains("links"));
        assert!(refused(&[raw_entry("abs", b'2', b"", "/etc")]).contains("relative"));
        let fine = tar(&[
            raw_entry(".imgpkg/images.yml", b'0', LOCK, ""),
            raw_entry("a/b/c", b'0', b"x", ""),
            raw_entry("a/b/up", b'2', b"", ".."),
            raw_entry("to-c", b'2', b"", "a/b/up/b/c"),
        ]);
        assert_eq!(lock_of(&fine).unwrap().unwrap().as_bytes(), LOCK);
    }

    #[test]
    fn bl4_nothing_is_read_beneath_a_link_or_a_file() {
        let message = refused(&[raw_entry("d", b'2', b"", ".imgpkg"), raw_entry("d/images.yml", b'0', LOCK, "")]);
        assert!(message.contains("beneath the symlink d"), "{message}");
        let message = refused(&[raw_entry("f", b'0', b"x", ""), raw_entry("f/g", b'0', b"y", "")]);
        assert!(message.contains("beneath the file f"), "{message}");
    }

    #[test]
    fn bl6_bundle_files_are_regular_files_under_a_directory() {
        let message = refused(&[raw_entry(".imgpkg", b'2', b"", "elsewhere")]);
        assert!(message.contains("must be a directory"), "{message}");
        let message =
            refused(&[raw_entry("x.yml", b'0', LOCK, ""), raw_entry(".imgpkg/images.yml", b'1', b"", "x.yml")]);
        assert!(message.contains("regular file"), "{message}");
        let message = refused(&[raw_entry(".imgpkg/images.yml", b'2', b"", "../x.yml")]);
        assert!(message.contains("regular file"), "{message}");
    }

    #[test]
    fn bl2_names_are_bounded_utf8_and_relative_and_never_sliced_inside_a_character() {
        // A multi-byte character straddling byte 64 of an over-long name (issue 12, item 6).
        let long = format!("{}é{}", "a".repeat(63), "b".repeat(MAX_NAME_BYTES));
        assert!(refused(&[raw_entry(&long, b'0', b"x", "")]).contains("bytes long"));
        assert!(refused(&[raw_entry("../x", b'0', b"x", "")]).contains("'..'"));
        assert!(refused(&[raw_entry("/x", b'0', b"x", "")]).contains("absolute"));
        assert!(refused(&[raw_entry("dev", b'3', b"", "")]).contains("character device"));
        let mut bad = raw_entry("placeholder", b'0', b"x", "");
        bad[..3].copy_from_slice(&[b'a', 0xff, b'b']);
        bad[3..11].fill(0);
        let sum: u32 =
            bad[..512].iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
        bad[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert!(refused(&[bad]).contains("not UTF-8"));
    }

    #[test]
    fn bl1_every_gzip_member_is_read() {
        // eStargz-shaped: one member per entry, then the end blocks, then an empty footer member.
        let files: Vec<Vec<u8>> = (0..6).map(|i| raw_entry(&format!("f{i}"), b'0', b"data", "")).collect();
        let mut members: Vec<u8> = Vec::new();
        members.extend(gzip(&files[0]));
        members.extend(gzip(&raw_entry(".imgpkg/images.yml", b'0', LOCK, "")));
        for file in &files[1..] {
            members.extend(gzip(file));
        }
        members.extend(gzip(&[0; 1024]));
        members.extend(gzip(b""));
        let stream = decompress(Compression::Gzip, &members[..]).unwrap();
        let found = read_small_files(stream, "layer", true, &[".imgpkg/images.yml"]).unwrap();
        assert_eq!(found[0].as_deref().map(str::as_bytes), Some(LOCK));
        let mut all = Vec::new();
        decompress(Compression::Gzip, &members[..]).unwrap().read_to_end(&mut all).unwrap();
        let names = tar::Archive::new(&all[..]).entries().unwrap().count();
        assert_eq!(names, 7, "every member's entries");
        // zstd: several frames.
        let mut frames = zstd::encode_all(&raw_entry(".imgpkg/images.yml", b'0', LOCK, "")[..], 1).unwrap();
        frames.extend(zstd::encode_all(&[0u8; 1024][..], 1).unwrap());
        let stream = decompress(Compression::Zstd, &frames[..]).unwrap();
        assert!(read_small_files(stream, "layer", true, &[".imgpkg/images.yml"]).unwrap()[0].is_some());
    }

    #[test]
    fn bl7_small_files_and_record_layers_are_bounded() {
        let big = vec![b'x'; MAX_SMALL_FILE_BYTES as usize + 1];
        assert!(refused(&[raw_entry(".imgpkg/images.yml", b'0', &big, "")]).contains("limit"));
        let bomb = gzip(&vec![0u8; 8 << 20]);
        let mut out = Vec::new();
        let err =
            Bounded::new(flate2::read::MultiGzDecoder::new(&bomb[..]), 1 << 20).read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(out.len(), 1 << 20, "stops at the bound");
        let exact = vec![7u8; 1000];
        let mut out = Vec::new();
        Bounded::new(&exact[..], 1000).read_to_end(&mut out).unwrap();
        assert_eq!(out, exact);
    }

    #[test]
    fn a_pax_global_header_may_not_name_files() {
        let mut global = header_block("pax_global_header", b'g', 21, "");
        let record = b"21 path=.imgpkg/evil\n";
        global.extend_from_slice(record);
        global.resize(1024, 0);
        assert!(refused(&[global]).contains("global"));
    }
}
