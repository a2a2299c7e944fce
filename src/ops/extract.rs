//! Writing a layer's files into a directory without trusting the layer (spec/cli.md PL-1):
//! every name is cleaned and must stay inside the directory, nothing is written through a
//! symlink, links may only point inside, and special files, whiteouts and setuid bits never
//! reach the disk. The caller extracts into a fresh directory and keeps it only on success.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Longest entry name accepted.
const MAX_NAME_BYTES: usize = 4096;

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

/// Extracts the (already decompressed) tar stream `tar` into `root`, an existing directory.
/// `layer` names the layer in errors. Later entries of the same name replace earlier ones, so
/// several layers can be extracted into one directory in order.
pub fn extract(tar: impl Read, root: &Path, layer: &str) -> Result<Extracted, ExtractError> {
    let mut extractor = Extractor { root, layer, written: HashSet::new(), directories: Vec::new() };
    let mut archive = tar::Archive::new(tar);
    let mut done = Extracted::default();
    let entries = archive.entries().map_err(|e| extractor.io("reading the layer", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| extractor.io("reading the layer", e))?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let bytes = extractor.entry(&mut entry, &raw_name)?;
        if let Some(bytes) = bytes {
            done.files += 1;
            done.bytes += bytes;
        }
    }
    extractor.finish_directories()?;
    Ok(done)
}

struct Extractor<'a> {
    root: &'a Path,
    layer: &'a str,
    /// Regular files written so far (relative), the only valid hard-link targets.
    written: HashSet<PathBuf>,
    /// Directories and their modes, applied last so a read-only directory can still be filled.
    directories: Vec<(PathBuf, u32)>,
}

impl Extractor<'_> {
    fn io(&self, context: impl Into<String>, source: io::Error) -> ExtractError {
        ExtractError::Io { layer: self.layer.to_string(), context: context.into(), source }
    }

    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ExtractError {
        ExtractError::Unsafe { layer: self.layer.to_string(), entry: entry.to_string(), reason: reason.into() }
    }

    /// Writes one entry; returns the bytes of a regular file, `None` for anything else.
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, raw_name: &str) -> Result<Option<u64>, ExtractError> {
        let relative = self.clean(raw_name)?;
        let Some(relative) = relative else { return Ok(None) }; // the root itself ("./")
        let file_name = relative.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if file_name.starts_with(".wh.") {
            return Err(self.refuse(raw_name, "whiteout entries (deletions between image layers) are not supported"));
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let kind = entry.header().entry_type();
        self.make_parents(&relative, raw_name)?;
        let target = self.root.join(&relative);
        match kind {
            tar::EntryType::Directory => {
                self.make_directory(&relative, raw_name)?;
                self.directories.push((target, mode | 0o700));
                Ok(None)
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.clear(&target, raw_name)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| self.io(format!("creating {}", relative.display()), e))?;
                let bytes =
                    io::copy(entry, &mut file).map_err(|e| self.io(format!("writing {}", relative.display()), e))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                    .map_err(|e| self.io(format!("setting the mode of {}", relative.display()), e))?;
                self.written.insert(relative);
                Ok(Some(bytes))
            }
            tar::EntryType::Symlink => {
                let link =
                    entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                self.check_symlink(&relative, &link, raw_name)?;
                self.clear(&target, raw_name)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| self.io(format!("creating the symlink {}", relative.display()), e))?;
                self.written.remove(&relative);
                Ok(None)
            }
            tar::EntryType::Link => {
                let link =
                    entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                let source = self.clean(&link)?.filter(|source| self.written.contains(source)).ok_or_else(|| {
                    self.refuse(raw_name, format!("hard link to {link:?}, which is not an earlier file of this layer"))
                })?;
                self.clear(&target, raw_name)?;
                fs::hard_link(self.root.join(&source), &target)
                    .map_err(|e| self.io(format!("linking {}", relative.display()), e))?;
                self.written.insert(relative);
                Ok(None)
            }
            other => Err(self.refuse(raw_name, format!("{} entries are never extracted", kind_name(other)))),
        }
    }

    /// The entry's path relative to the root, or an error if it could leave it.
    fn clean(&self, raw: &str) -> Result<Option<PathBuf>, ExtractError> {
        if raw.len() > MAX_NAME_BYTES {
            return Err(
                self.refuse(&raw[..64], format!("its name is {} bytes long (limit {MAX_NAME_BYTES})", raw.len()))
            );
        }
        if raw.contains('\0') {
            return Err(self.refuse(raw, "its name holds a NUL byte"));
        }
        let mut clean = PathBuf::new();
        for component in Path::new(raw).components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refuse(raw, "absolute names are not allowed"));
                }
                Component::ParentDir => return Err(self.refuse(raw, "names with '..' could leave the directory")),
            }
        }
        Ok((!clean.as_os_str().is_empty()).then_some(clean))
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
        let path = self.root.join(relative);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(meta) if meta.file_type().is_symlink() => {
                Err(self.refuse(raw, format!("it would be written through the symlink {}", relative.display())))
            }
            Ok(_) => Err(self.refuse(raw, format!("{} is a file, not a directory", relative.display()))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(|e| self.io(format!("creating {}", relative.display()), e))
            }
            Err(err) => Err(self.io(format!("reading {}", relative.display()), err)),
        }
    }

    /// A symlink may only point inside the directory, by a relative path.
    fn check_symlink(&self, relative: &Path, link: &str, raw: &str) -> Result<(), ExtractError> {
        if link.is_empty() || link.starts_with('/') {
            return Err(self.refuse(raw, format!("symlink to {link:?}: only relative links inside the directory")));
        }
        let mut depth: usize = relative.components().count() - 1;
        for component in Path::new(link).components() {
            match component {
                Component::Normal(_) => depth += 1,
                Component::CurDir => {}
                Component::ParentDir if depth > 0 => depth -= 1,
                _ => return Err(self.refuse(raw, format!("symlink to {link:?} points outside the directory"))),
            }
        }
        Ok(())
    }

    /// Removes what an earlier entry left at `target` (a later layer replaces it), but never a
    /// directory.
    fn clear(&self, target: &Path, raw: &str) -> Result<(), ExtractError> {
        match fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => Err(self.refuse(raw, "a directory of that name was extracted before")),
            Ok(_) => fs::remove_file(target).map_err(|e| self.io(format!("replacing {}", target.display()), e)),
            Err(_) => Ok(()),
        }
    }

    fn finish_directories(&mut self) -> Result<(), ExtractError> {
        // Deepest first, so tightening a parent never blocks a child.
        self.directories.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, mode) in &self.directories {
            fs::set_permissions(path, fs::Permissions::from_mode(*mode))
                .map_err(|e| self.io(format!("setting the mode of {}", path.display()), e))?;
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn run(
        entries: &[(&str, tar::EntryType, &[u8], Option<&str>)],
    ) -> (tempfile::TempDir, Result<Extracted, ExtractError>) {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("out");
        fs::create_dir(&root).unwrap();
        let result = extract(&tar_of(entries)[..], &root, "layer");
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
