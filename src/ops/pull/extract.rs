//! Writing layers' files into a directory without trusting them (spec/cli.md PL-1): every entry
//! first passes the layer rules every reader shares ([`crate::engine::layer`]: names, duplicates,
//! links resolved within the layer), then is written here with the directory's own state in
//! view: nothing is written through a symlink, links must resolve inside given every link
//! written so far (checked again once all layers are in place), and special files, whiteouts
//! and setuid bits never reach the disk. The caller extracts into a fresh directory and keeps
//! it only on success.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, OpenOptionsExt};

use crate::engine::layer::{CheckedEntry, EntryKind, LayerError, LayerRules, resolve_inside};

/// What an extraction wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extracted {
    pub files: u64,
    pub bytes: u64,
}

/// Why an extraction stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{layer}: refusing entry {entry:?}: {reason}")]
    Unsafe { layer: String, entry: String, reason: String },
    #[error("{layer}: {context}: {source}")]
    Io { layer: String, context: String, source: io::Error },
}

impl ExtractError {
    /// The cause carried in an I/O error, e.g. a verifying reader's digest mismatch.
    pub fn io_source(&self) -> Option<&io::Error> {
        match self {
            ExtractError::Io { source, .. } => Some(source),
            ExtractError::Unsafe { .. } => None,
        }
    }
}

impl From<LayerError> for ExtractError {
    fn from(err: LayerError) -> Self {
        match err {
            LayerError::Refused { layer, entry, reason } => ExtractError::Unsafe { layer, entry, reason },
            LayerError::Io { layer, source } => ExtractError::Io { layer, context: "reading the layer".into(), source },
        }
    }
}

/// Layers extracted in order into one directory (later entries of the same name replace
/// earlier layers' ones). Every write goes through a handle confined to the directory
/// (`cap_std::fs::Dir`: a path that would resolve outside it, through any chain of links,
/// fails in the kernel's lookup), on top of the layer rules' checks; [`Extraction::finish`]
/// checks every link written once all layers are in place, so no chain of links across layers
/// leaves the directory either (BL-5, PL-1).
pub struct Extraction {
    dir: Dir,
    /// Regular files written so far (relative), the only valid hard-link targets.
    written: HashSet<PathBuf>,
    /// Symlinks written so far (relative), re-checked at the end.
    links: Vec<(PathBuf, String)>,
    /// Directories (relative) and their modes, applied last so a read-only directory can still
    /// be filled.
    directories: Vec<(PathBuf, u32)>,
    done: Extracted,
    /// Bytes of files written, and when the free space is next looked at.
    bytes_written: u64,
    next_space_check: u64,
    /// The free space and size of the disk a file is on ([`free_space`]; a test's own).
    space: fn(&cap_std::fs::File) -> Option<(u64, u64)>,
    /// The buffer files are copied through, one for the extraction.
    buffer: Vec<u8>,
}

/// How often (in bytes written) a pull looks at the free space of its disk.
const SPACE_CHECK_EVERY: u64 = if cfg!(test) { 1 << 20 } else { 64 << 20 };

/// The free space a pull leaves on its disk: it stops before a layer that expands to more than
/// the disk holds (a small layer can hold gigabytes of zeros) fills it for every other program.
/// 1% of the disk, between 16 MiB and 1 GiB.
fn space_to_leave(disk_bytes: u64) -> u64 {
    (disk_bytes / 100).clamp(16 << 20, 1 << 30)
}

/// The bytes free for an unprivileged writer and the size of the file system holding `file`.
fn free_space(file: &cap_std::fs::File) -> Option<(u64, u64)> {
    use std::os::fd::AsRawFd;
    // SAFETY: fstatvfs fills the zeroed struct for an open descriptor.
    unsafe {
        let mut stats: libc::statvfs = std::mem::zeroed();
        if libc::fstatvfs(file.as_raw_fd(), &mut stats) != 0 {
            return None;
        }
        let unit = stats.f_frsize as u64;
        let disk = (stats.f_blocks as u64).saturating_mul(unit);
        // Some file systems (FUSE, network mounts) report no size: nothing to go by.
        (disk > 0).then(|| ((stats.f_bavail as u64).saturating_mul(unit), disk))
    }
}

impl Extraction {
    /// Opens `root`, an existing directory, as the only place this extraction may write.
    pub fn new(root: &Path) -> io::Result<Self> {
        let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
        Ok(Extraction {
            dir,
            written: HashSet::new(),
            links: Vec::new(),
            directories: Vec::new(),
            done: Extracted::default(),
            bytes_written: 0,
            next_space_check: SPACE_CHECK_EVERY,
            space: free_space,
            buffer: Vec::new(),
        })
    }

    /// The confined handle of the directory, for reading back what was extracted.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Extracts one layer's tar stream, named `layer` in errors; `bundle` adds the bundle rules
    /// (BL-6).
    pub fn layer(&mut self, tar: impl Read, layer: &str, bundle: bool) -> Result<Extracted, ExtractError> {
        let mut rules = LayerRules::new(layer, bundle);
        let mut archive = tar::Archive::new(tar);
        let mut done = Extracted::default();
        let entries = archive.entries().map_err(|e| rules.io(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| rules.io(e))?;
            let checked = rules.check(&mut entry)?;
            let mut writer = EntryWriter { extraction: self, layer };
            if let Some(bytes) = writer.write(&mut entry, &checked)? {
                done.files += 1;
                done.bytes += bytes;
            }
        }
        rules.finish()?;
        self.done.files += done.files;
        self.done.bytes += done.bytes;
        Ok(done)
    }

    /// Checks every link written, on disk, against everything written (BL-5), then applies
    /// the directories' modes. Returns the totals of every layer.
    pub fn finish(mut self) -> Result<Extracted, ExtractError> {
        let failed = |context: String, source: io::Error| ExtractError::Io {
            layer: "the extracted layers".into(),
            context,
            source,
        };
        for (link, target) in &self.links {
            if !self.dir.symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
                continue; // replaced by a later layer
            }
            check_link(&self.dir, link, target, "the extracted layers")?;
        }
        // Deepest first, so tightening a parent never blocks a child.
        self.directories.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, mode) in &self.directories {
            self.dir
                .set_permissions(path, permissions(*mode))
                .map_err(|e| failed(format!("setting the mode of {}", path.display()), e))?;
        }
        Ok(self.done)
    }
}

/// Checks every symlink under `root` on disk against the whole tree (PL-1). Each extraction
/// checks its own links when it finishes, but a pull with `--recursive` writes nested bundles
/// beside the root bundle's files afterwards: a root link through
/// `.imgpkg/bundles/sha256-<hex>/a/a/..` was checked while `a` did not exist yet, and a nested
/// bundle's `a -> .` then makes it climb out of the directory. Checked again here, once
/// everything is in place.
pub fn check_links_under(root: &Path) -> Result<(), ExtractError> {
    let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority()).map_err(|e| ExtractError::Io {
        layer: "the pulled files".into(),
        context: format!("opening {}", root.display()),
        source: e,
    })?;
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(|e| ExtractError::Io {
            layer: "the pulled files".into(),
            context: format!("listing {}", root.display()),
            source: e.into(),
        })?;
        if !entry.path_is_symlink() {
            continue;
        }
        let relative = entry.path().strip_prefix(root).expect("walkdir stays under its root");
        let target = disk_link(&dir, relative).unwrap_or_else(|| "/".into());
        check_link(&dir, relative, &target, "the pulled files")?;
    }
    Ok(())
}

/// Checks that the link at `link` in `dir`, to `target`, resolves inside `dir` given the links
/// on disk (BL-5, PL-1); `layer` names what is checked in the error.
fn check_link(dir: &Dir, link: &Path, target: &str, layer: &str) -> Result<(), ExtractError> {
    resolve_inside(link, target, &|path| disk_link(dir, path)).map_err(|reason| ExtractError::Unsafe {
        layer: layer.into(),
        entry: link.display().to_string(),
        reason: format!("symlink to {target:?}: {reason}"),
    })
}

/// The permission bits an entry is pulled with (spec/cli.md PL-1), before the umask: the
/// header's bits masked with `0o777` (no setuid, setgid, sticky); the owner's read and execute
/// bits of a mode for the owner alone (how `imgpkg push` and `ferry push` store files by
/// default) are given to group and others too, as imgpkg's pull gives them, so a pulled tree
/// is as readable as the one pushed. Never the write bit (imgpkg's gives it, so under umask 002
/// a pushed 0600 file came out group-writable). The field may be
/// base-256 (Go writes a directory's mode with its `os.ModeDir` bit so under
/// `imgpkg push --preserve-permissions`), or unreadable: then `0o644`.
fn pulled_mode(header: &tar::Header) -> u32 {
    let field = &header.as_old().mode;
    let raw = if field[0] & 0x80 != 0 {
        // Base-256: big-endian in the remaining bits; only the low permission bits matter.
        let bytes = field.iter().skip(1).fold(0u64, |value, byte| (value << 8) | u64::from(*byte));
        Some(bytes as u32)
    } else {
        header.mode().ok()
    };
    let mode = raw.unwrap_or(0o644) & 0o777;
    if mode & 0o077 == 0 {
        let readable = mode & 0o500;
        mode | readable >> 3 | readable >> 6
    } else {
        mode
    }
}

/// `mode` as the layer gives it, less the process's umask: a layer cannot make a file
/// writable by everyone where the user's umask says otherwise.
fn permissions(mode: u32) -> cap_std::fs::Permissions {
    cap_std::fs::Permissions::from_std(std::fs::Permissions::from_mode(mode & !umask()))
}

/// The process's umask, read once from `/proc/self/status` (reading it with `umask(2)` means
/// setting it, which races with other threads); `0o022` where it cannot be read.
pub(super) fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("Umask:"))
            .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
            .unwrap_or(0o022)
    })
}

/// The target of the symlink at `relative` in `dir`, if there is one.
fn disk_link(dir: &Dir, relative: &Path) -> Option<String> {
    let meta = dir.symlink_metadata(relative).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    // A target that is not UTF-8 cannot be checked: treat it as absolute, which is refused.
    Some(dir.read_link_contents(relative).ok()?.to_str().map_or_else(|| "/".to_string(), str::to_string))
}

/// Writes the entries of one layer for an [`Extraction`].
struct EntryWriter<'e> {
    extraction: &'e mut Extraction,
    layer: &'e str,
}

impl EntryWriter<'_> {
    fn io(&self, context: impl Into<String>, source: io::Error) -> ExtractError {
        ExtractError::Io { layer: self.layer.to_string(), context: context.into(), source }
    }

    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ExtractError {
        ExtractError::Unsafe { layer: self.layer.to_string(), entry: entry.to_string(), reason: reason.into() }
    }

    /// Copies a file's bytes, looking at the disk's free space every [`SPACE_CHECK_EVERY`]
    /// bytes of the extraction: below [`space_to_leave`] it stops, naming what is left.
    fn copy_watching_space<R: Read>(
        &mut self,
        from: &mut R,
        to: &mut cap_std::fs::File,
        relative: &Path,
    ) -> Result<u64, ExtractError> {
        let layer = self.layer.to_string();
        let writing = |source| ExtractError::Io {
            layer: layer.clone(),
            context: format!("writing {}", relative.display()),
            source,
        };
        let mut buffer = std::mem::take(&mut self.extraction.buffer);
        buffer.resize(256 << 10, 0);
        let copied = self.copy_through(from, to, &mut buffer, &writing);
        self.extraction.buffer = buffer;
        copied
    }

    fn copy_through<R: Read>(
        &mut self,
        from: &mut R,
        to: &mut cap_std::fs::File,
        buffer: &mut [u8],
        writing: &dyn Fn(io::Error) -> ExtractError,
    ) -> Result<u64, ExtractError> {
        use std::io::Write;
        let mut copied = 0u64;
        loop {
            let read = match from.read(buffer) {
                Ok(0) => return Ok(copied),
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(writing(e)),
            };
            to.write_all(&buffer[..read]).map_err(writing)?;
            copied += read as u64;
            self.extraction.bytes_written += read as u64;
            if self.extraction.bytes_written < self.extraction.next_space_check {
                continue;
            }
            self.extraction.next_space_check = self.extraction.bytes_written + SPACE_CHECK_EVERY;
            if let Some((free, disk)) = (self.extraction.space)(to) {
                if free < space_to_leave(disk) {
                    return Err(writing(io::Error::new(
                        io::ErrorKind::StorageFull,
                        format!(
                            "stopped after {} MiB with {} MiB left on the disk, before the layers fill it (ferry \
                                 leaves {} MiB free); free some space or pull elsewhere",
                            self.extraction.bytes_written >> 20,
                            free >> 20,
                            space_to_leave(disk) >> 20
                        ),
                    )));
                }
            }
        }
    }

    /// Writes one entry that passed the layer rules; returns the bytes of a regular file,
    /// `None` for anything else.
    fn write<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        checked: &CheckedEntry,
    ) -> Result<Option<u64>, ExtractError> {
        let raw_name = checked.raw.as_str();
        let Some(relative) = checked.path.clone() else { return Ok(None) }; // the root, or metadata
        let file_name = relative.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if file_name.starts_with(".wh.") {
            return Err(self.refuse(raw_name, "whiteout entries (deletions between image layers) are not supported"));
        }
        let mode = pulled_mode(entry.header());
        self.make_parents(&relative, raw_name)?;
        match &checked.kind {
            EntryKind::Metadata => Ok(None),
            EntryKind::Directory => {
                self.make_directory(&relative, raw_name)?;
                self.extraction.directories.push((relative, mode | 0o700));
                Ok(None)
            }
            EntryKind::File => {
                self.clear(&relative, raw_name)?;
                let mut options = cap_std::fs::OpenOptions::new();
                options.write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW);
                let mut file = self
                    .extraction
                    .dir
                    .open_with(&relative, &options)
                    .map_err(|e| self.io(format!("creating {}", relative.display()), e))?;
                let bytes = self.copy_watching_space(entry, &mut file, &relative)?;
                file.set_permissions(permissions(mode))
                    .map_err(|e| self.io(format!("setting the mode of {}", relative.display()), e))?;
                self.extraction.written.insert(relative);
                Ok(Some(bytes))
            }
            EntryKind::Symlink(link) => {
                // The layer rules resolved it within this layer; here against earlier layers too.
                resolve_inside(&relative, link, &|path| disk_link(&self.extraction.dir, path))
                    .map_err(|reason| self.refuse(raw_name, format!("symlink to {link:?}: {reason}")))?;
                self.clear(&relative, raw_name)?;
                self.extraction
                    .dir
                    .symlink(link, &relative)
                    .map_err(|e| self.io(format!("creating the symlink {}", relative.display()), e))?;
                self.extraction.written.remove(&relative);
                self.extraction.links.push((relative, link.clone()));
                Ok(None)
            }
            EntryKind::HardLink(source) => {
                if !self.extraction.written.contains(source) {
                    return Err(self.refuse(
                        raw_name,
                        format!("hard link to {}, which is not an earlier file of this layer", source.display()),
                    ));
                }
                self.clear(&relative, raw_name)?;
                let dir = &self.extraction.dir;
                dir.hard_link(source, dir, &relative)
                    .map_err(|e| self.io(format!("linking {}", relative.display()), e))?;
                self.extraction.written.insert(relative);
                Ok(None)
            }
        }
    }

    /// Creates the missing parents of `relative`, refusing to pass through anything but real
    /// directories.
    fn make_parents(&mut self, relative: &Path, raw: &str) -> Result<(), ExtractError> {
        let mut current = PathBuf::new();
        let parents: Vec<_> = relative.parent().map(|p| p.components().collect()).unwrap_or_default();
        for component in parents {
            current.push(component);
            self.make_directory(&current, raw)?;
        }
        Ok(())
    }

    fn make_directory(&mut self, relative: &Path, raw: &str) -> Result<(), ExtractError> {
        let dir = &self.extraction.dir;
        match dir.symlink_metadata(relative) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(meta) if meta.file_type().is_symlink() => {
                Err(self.refuse(raw, format!("it would be written through the symlink {}", relative.display())))
            }
            Ok(_) => Err(self.refuse(raw, format!("{} is a file, not a directory", relative.display()))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                dir.create_dir(relative).map_err(|e| self.io(format!("creating {}", relative.display()), e))
            }
            Err(err) => Err(self.io(format!("reading {}", relative.display()), err)),
        }
    }

    /// Removes what an earlier layer left at `relative` (a later layer replaces it), but never
    /// a directory.
    fn clear(&self, relative: &Path, raw: &str) -> Result<(), ExtractError> {
        let dir = &self.extraction.dir;
        match dir.symlink_metadata(relative) {
            Ok(meta) if meta.is_dir() => Err(self.refuse(raw, "a directory of that name was extracted before")),
            Ok(_) => dir.remove_file(relative).map_err(|e| self.io(format!("replacing {}", relative.display()), e)),
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Name, kind, content and link target of one test entry.
    type Entry<'a> = (&'a str, tar::EntryType, &'a [u8], Option<&'a str>);

    fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            // set_path refuses '..' and absolute names; write the raw bytes like a hostile tool.
            let field = &mut header.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o4755);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// PL-1: modes for the owner alone (how pushes store files by default) give their read and
    /// execute bits to group and others as imgpkg's pull does (0600 pulled as 0644, never the
    /// write bit, whatever the umask), modes with group or other bits kept; a directory mode in base-256 with Go's `os.ModeDir` bit (`imgpkg push
    /// --preserve-permissions`) is read, not taken as 0644 (it was pulled 0744, closed to others).
    #[test]
    fn modes_are_pulled_as_imgpkg_pulls_them() {
        let entry = |name: &str, kind: tar::EntryType, mode: Option<u32>| {
            let mut header = tar::Header::new_gnu();
            header.set_path(name).unwrap();
            header.set_entry_type(kind);
            header.set_size(0);
            match mode {
                Some(mode) => header.set_mode(mode),
                // 0o20000000755 does not fit 7 octal digits: Go writes it in base-256.
                None => {
                    let field = &mut header.as_old_mut().mode;
                    field.copy_from_slice(&[0x80, 0, 0, 0, 0x80, 0, 0x01, 0xed]);
                }
            }
            header.set_cksum();
            header
        };
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, mode) in [
            ("d/", tar::EntryType::Directory, None),
            ("d/owner.txt", tar::EntryType::Regular, Some(0o600)),
            ("d/run.sh", tar::EntryType::Regular, Some(0o700)),
            ("d/ro.txt", tar::EntryType::Regular, Some(0o400)),
            ("d/group.txt", tar::EntryType::Regular, Some(0o660)),
            ("closed/", tar::EntryType::Directory, Some(0o700)),
        ] {
            builder.append(&entry(name, kind, mode), &[][..]).unwrap();
        }
        let layer = builder.into_inner().unwrap();
        let outer = tempfile::tempdir().unwrap();
        let mut extraction = Extraction::new(outer.path()).unwrap();
        extraction.layer(&layer[..], "layer", false).unwrap();
        extraction.finish().unwrap();
        let mode = |name: &str| fs::metadata(outer.path().join(name)).unwrap().permissions().mode() & 0o7777;
        let masked = |bits: u32| bits & !umask();
        for (name, expected) in [
            ("d", 0o755),
            ("closed", 0o755),
            ("d/owner.txt", 0o644),
            ("d/run.sh", 0o755),
            ("d/ro.txt", 0o444),
            ("d/group.txt", 0o660),
        ] {
            assert_eq!(mode(name), masked(expected), "{name}: {:o}", mode(name));
        }
        // Before the umask: never a write bit the header did not give.
        for (given, pulled) in [(0o600, 0o644), (0o700, 0o755), (0o200, 0o200), (0o4700, 0o755), (0o640, 0o640)] {
            assert_eq!(pulled_mode(&entry("f", tar::EntryType::Regular, Some(given))), pulled, "{given:o}");
        }
    }

    /// A pull stops before its layers fill the disk (a small layer can hold gigabytes of
    /// zeros): here the disk says it has 100 MiB of 100 GiB free, under the 1 GiB ferry leaves.
    #[test]
    fn a_pull_stops_before_its_layers_fill_the_disk() {
        let outer = tempfile::tempdir().unwrap();
        let mut extraction = Extraction::new(outer.path()).unwrap();
        extraction.space = |_| Some((100 << 20, 100 << 30));
        let zeros = vec![0u8; 3 << 20];
        let err = extraction.layer(&tar_of(&[("big", tar::EntryType::Regular, &zeros, None)])[..], "layer", false);
        let err = err.expect_err("stopped").to_string();
        assert!(err.contains("before the layers fill it") && err.contains("100 MiB left"), "{err}");
        // With room enough, the same layer is written.
        let other = tempfile::tempdir().unwrap();
        let mut roomy = Extraction::new(other.path()).unwrap();
        roomy.space = |_| Some((50 << 30, 100 << 30));
        assert!(roomy.layer(&tar_of(&[("big", tar::EntryType::Regular, &zeros, None)])[..], "layer", false).is_ok());
    }

    fn run(
        entries: &[(&str, tar::EntryType, &[u8], Option<&str>)],
    ) -> (tempfile::TempDir, Result<Extracted, ExtractError>) {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("out");
        fs::create_dir(&root).unwrap();
        let mut extraction = Extraction::new(&root).unwrap();
        let result = extraction.layer(&tar_of(entries)[..], "layer", false).and_then(|_| extraction.finish());
        (outer, result)
    }

    use tar::EntryType::{Directory, Link, Regular, Symlink};

    #[test]
    fn plain_files_and_directories_land_with_safe_modes() {
        let (outer, result) = run(&[
            ("./a/", Directory, b"", None),
            ("a/b.txt", Regular, b"hello", None),
            ("c", Symlink, b"", Some("a/b.txt")),
        ]);
        let done = result.unwrap();
        assert_eq!((done.files, done.bytes), (1, 5));
        let root = outer.path().join("out");
        assert_eq!(fs::read(root.join("a/b.txt")).unwrap(), b"hello");
        let mode = fs::metadata(root.join("a/b.txt")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "setuid is dropped");
        assert_eq!(fs::read(root.join("c")).unwrap(), b"hello");
    }

    #[test]
    fn every_escape_is_refused_and_nothing_is_written_outside() {
        let cases: Vec<Vec<Entry<'_>>> = vec![
            vec![("../evil", Regular, b"x", None)],
            vec![("a/../../evil", Regular, b"x", None)],
            vec![("/tmp/evil", Regular, b"x", None)],
            vec![("link", Symlink, b"", Some("../..")), ("link/evil", Regular, b"x", None)],
            vec![("link", Symlink, b"", Some("/etc"))],
            vec![("inner", Symlink, b"", Some(".")), ("inner/evil", Regular, b"x", None)],
            vec![("hard", Link, b"", Some("../outside"))],
            vec![("dev", tar::EntryType::Char, b"", None)],
            vec![("fifo", tar::EntryType::Fifo, b"", None)],
            vec![("dir/.wh.file", Regular, b"", None)],
        ];
        for case in cases {
            let (outer, result) = run(&case);
            let err = result.expect_err(&format!("{case:?} must be refused"));
            assert!(matches!(err, ExtractError::Unsafe { .. }), "{case:?}: {err}");
            let outside: Vec<_> = fs::read_dir(outer.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(outside, vec![std::ffi::OsString::from("out")], "{case:?} wrote outside");
        }
    }
}

/// The test suite's seeded generator (tests/support/xorshift.rs), shared by path.
#[cfg(test)]
#[path = "../../../tests/support/xorshift.rs"]
mod xorshift;

/// Property test (issue 12): for random layers built from names, spellings, link chains and
/// gzip member splits an attacker would try, what the bundle reader reads as the lock (what
/// `verify` shows) is exactly what extraction writes (what `pull` gives), both refuse the same
/// layers, nothing is ever written outside the directory, and no link written resolves outside
/// it. Seeded, bounded (`FERRY_LAYER_CASES`, default 800).
#[cfg(test)]
mod layer_properties {
    use std::fs;
    use std::path::Path;

    use super::Extraction;
    use crate::engine::layer::tests::{gzip, raw_entry, tar};
    use crate::engine::layer::{self, LayerError};
    use crate::model::media::Compression;

    use super::xorshift::Prng;

    const NAMES: [&str; 16] = [
        "a",
        "b",
        "a/b",
        "a/c",
        "a/up",
        "esc",
        "a/b/c",
        "d",
        "d/x",
        ".imgpkg",
        ".imgpkg/images.yml",
        "./.imgpkg/images.yml",
        ".imgpkg/./images.yml",
        ".imgpkg//images.yml",
        "./a/./b",
        "x.yml",
    ];
    const TARGETS: [&str; 16] = [
        "..",
        ".",
        "a",
        "a/up/..",
        "a/up/../..",
        "../x",
        "b",
        "a/b/../..",
        ".imgpkg",
        ".imgpkg/images.yml",
        "esc/..",
        "d/../..",
        "x.yml",
        "../../x",
        "a/up/a/up/..",
        "up/../..",
    ];
    const LOCK_PATH: &str = ".imgpkg/images.yml";

    /// A random layer: its entries' bytes.
    fn random_layer(rng: &mut Prng) -> Vec<Vec<u8>> {
        let count = 1 + rng.next() % 7;
        (0..count)
            .map(|i| {
                let name = NAMES[rng.below(NAMES.len())];
                match rng.next() % 6 {
                    0 | 1 => raw_entry(name, b'0', format!("content {i}").as_bytes(), ""),
                    2 => raw_entry(name, b'5', b"", ""),
                    3 | 4 => raw_entry(name, b'2', b"", TARGETS[rng.below(TARGETS.len())]),
                    _ => raw_entry(name, b'1', b"", NAMES[rng.below(NAMES.len())]),
                }
            })
            .collect()
    }

    /// The tar gzipped as one member or split into several at random entry boundaries.
    fn compressed(rng: &mut Prng, entries: &[Vec<u8>]) -> Vec<u8> {
        let whole = tar(entries);
        if rng.next() % 2 == 0 {
            return gzip(&whole);
        }
        let mut out = Vec::new();
        let mut start = 0;
        for entry in entries {
            if rng.next() % 2 == 0 {
                let end = start + entry.len();
                out.extend(gzip(&whole[..end][start..]));
                start = end;
            }
        }
        out.extend(gzip(&whole[start..]));
        out
    }

    #[test]
    fn the_reader_and_the_extractor_agree_and_stay_inside() {
        let cases: u64 = std::env::var("FERRY_LAYER_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(800);
        let scratch = tempfile::tempdir().unwrap();
        for seed in 1..=cases {
            let mut rng = Prng::seeded(seed);
            let entries = random_layer(&mut rng);
            let layer = compressed(&mut rng, &entries);
            let read = layer::read_small_files(
                layer::decompress(Compression::Gzip, &layer[..]).unwrap(),
                "layer",
                true,
                &[LOCK_PATH],
            );
            let outer = scratch.path().join(seed.to_string());
            let root = outer.join("out");
            fs::create_dir_all(&root).unwrap();
            // Decoys outside, so an escaping link resolves to something that exists.
            for decoy in ["x", "a", "b", "esc", "d", ".imgpkg"] {
                fs::create_dir_all(outer.join(decoy)).unwrap();
            }
            fs::write(outer.join("x.yml"), "victim").unwrap();
            let extracted = {
                let mut extraction = Extraction::new(&root).unwrap();
                extraction
                    .layer(layer::decompress(Compression::Gzip, &layer[..]).unwrap(), "layer", true)
                    .and_then(|_| extraction.finish())
            };
            let replay = format!(
                "seed {seed}: {entries:?}",
                entries = entries
                    .iter()
                    .map(|e| String::from_utf8_lossy(&e[..100]).trim_end_matches('\0').to_string())
                    .collect::<Vec<_>>()
            );
            match (&read, &extracted) {
                (Ok(found), Ok(_)) => {
                    let lock = root.join(LOCK_PATH);
                    match &found[0] {
                        Some(text) => {
                            let meta = fs::symlink_metadata(&lock).unwrap_or_else(|e| panic!("{replay}: {e}"));
                            assert!(meta.is_file(), "{replay}: the lock on disk is not a regular file");
                            assert_eq!(&fs::read_to_string(&lock).unwrap(), text, "{replay}");
                        }
                        None => assert!(
                            !fs::symlink_metadata(&lock).is_ok_and(|m| m.is_file()),
                            "{replay}: pull wrote a lock the reader did not see"
                        ),
                    }
                    assert_links_inside(&root, &replay);
                }
                (Err(LayerError::Refused { .. }), Err(_)) => {}
                (read, extracted) => panic!("{replay}: the reader said {read:?}, extraction {extracted:?}"),
            }
            assert_eq!(fs::read_to_string(outer.join("x.yml")).unwrap(), "victim", "{replay}");
            let mut outside: Vec<String> =
                fs::read_dir(&outer).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            outside.sort();
            assert_eq!(outside, [".imgpkg", "a", "b", "d", "esc", "out", "x", "x.yml"], "{replay}: wrote outside");
            for decoy in ["x", "a", "b", "esc", "d", ".imgpkg"] {
                assert_eq!(fs::read_dir(outer.join(decoy)).unwrap().count(), 0, "{replay}: wrote into {decoy}");
            }
            fs::remove_dir_all(&outer).unwrap();
        }
    }

    /// Every symlink under `root` whose target exists resolves inside `root`.
    fn assert_links_inside(root: &Path, replay: &str) {
        let real_root = root.canonicalize().unwrap();
        for entry in walkdir::WalkDir::new(root).min_depth(1) {
            let entry = entry.unwrap();
            if entry.path_is_symlink() {
                if let Ok(resolved) = entry.path().canonicalize() {
                    assert!(
                        resolved.starts_with(&real_root),
                        "{replay}: {} resolves to {}",
                        entry.path().display(),
                        resolved.display()
                    );
                }
            }
        }
    }
}
