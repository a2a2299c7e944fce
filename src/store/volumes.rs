//! An archive's bytes as one range over one file or over ordered volumes (spec/archive.md
//! "Volumes"): positional reads and writes at archive offsets, split where they cross from one
//! volume into the next, so the archive reader and writer never know whether the archive is
//! split. Volumes are read in place: nothing is ever joined on disk.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One file holding the archive bytes `start..start + len`.
#[derive(Debug)]
pub struct Volume {
    pub path: PathBuf,
    file: File,
    pub start: u64,
    pub len: u64,
}

/// The archive's files in order; a plain archive is a set of one.
#[derive(Debug)]
pub struct Volumes {
    parts: Vec<Volume>,
    total: u64,
}

impl Volumes {
    /// One file holding the whole archive.
    pub fn single(path: &Path, file: File, len: u64) -> Self {
        Volumes { parts: vec![Volume { path: path.to_path_buf(), file, start: 0, len }], total: len }
    }

    /// Files in archive order, each with its length.
    pub fn new(files: Vec<(PathBuf, File, u64)>) -> Self {
        let mut parts = Vec::with_capacity(files.len());
        let mut start = 0;
        for (path, file, len) in files {
            parts.push(Volume { path, file, start, len });
            start += len;
        }
        Volumes { parts, total: start }
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn parts(&self) -> &[Volume] {
        &self.parts
    }

    /// Whether the archive is split into more than one file.
    pub fn is_split(&self) -> bool {
        self.parts.len() > 1
    }

    /// The index of the volume holding archive byte `offset` (the last one past the end).
    pub fn index_of(&self, offset: u64) -> usize {
        self.parts.partition_point(|part| part.start + part.len <= offset).min(self.parts.len().saturating_sub(1))
    }

    /// How to name the volume holding `offset` in a message ("volume 2 of 4, bundle.tar.002"),
    /// or `None` for an archive in one file.
    pub fn describe(&self, offset: u64) -> Option<String> {
        self.is_split().then(|| {
            let index = self.index_of(offset);
            format!("volume {} of {}, {}", index + 1, self.parts.len(), self.parts[index].path.display())
        })
    }

    /// Reads at most up to the end of the volume holding `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.total || buf.is_empty() {
            return Ok(0);
        }
        let part = &self.parts[self.index_of(offset)];
        let within = offset - part.start;
        let want = buf.len().min(usize::try_from(part.len - within).unwrap_or(usize::MAX));
        part.file.read_at(&mut buf[..want], within)
    }

    pub fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends early")),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    pub fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            if offset >= self.total {
                return Err(io::Error::other("a write past the end of the archive"));
            }
            let part = &self.parts[self.index_of(offset)];
            let within = offset - part.start;
            let n = buf.len().min(usize::try_from(part.len - within).unwrap_or(usize::MAX));
            part.file.write_all_at(&buf[..n], within)?;
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    /// Starts the writeback of archive bytes `offset..offset + length` (a hint; see the writer).
    pub fn start_writeback(&self, offset: u64, length: u64) {
        let end = offset + length;
        for part in &self.parts {
            let (from, to) = (offset.max(part.start), end.min(part.start + part.len));
            if from < to {
                start_writeback(&part.file, from - part.start, to - from);
            }
        }
    }

    /// The same files, opened again (shared offsets do not matter: every access is positional),
    /// for a reader of what was written.
    pub fn try_clone(&self) -> io::Result<Volumes> {
        let mut parts = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            parts.push(Volume {
                path: part.path.clone(),
                file: part.file.try_clone()?,
                start: part.start,
                len: part.len,
            });
        }
        Ok(Volumes { parts, total: self.total })
    }

    /// The same files opened again for direct writes (`O_DIRECT`: from the writer's memory to
    /// the disk, bypassing the page cache), through `/proc/self/fd` so the very files already
    /// open are reopened, never a path that could have been replaced since. `None` where the
    /// platform or filesystem offers no direct I/O, or a volume boundary is not block-aligned.
    pub fn reopen_direct(&self, alignment: u64) -> Option<Volumes> {
        if self.parts.iter().any(|part| part.start % alignment != 0) {
            return None;
        }
        let mut parts = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            parts.push(Volume {
                path: part.path.clone(),
                file: reopen_direct(&part.file)?,
                start: part.start,
                len: part.len,
            });
        }
        Some(Volumes { parts, total: self.total })
    }

    /// Makes every volume durable.
    pub fn sync_all(&self) -> io::Result<()> {
        self.parts.iter().try_for_each(|part| part.file.sync_all())
    }
}

/// Opens a file the archive writer owns (a partial archive or volume, the table being written)
/// for reading and writing, creating it when `create` is set (it is never truncated here).
/// Never through a symbolic link (`O_NOFOLLOW`: the link's target would be overwritten, then
/// the link published under the final name) and never blocking (`O_NONBLOCK`: a FIFO would
/// wait for a reader forever); anything but a regular file is refused, naming what it is
/// (spec/archive.md AR-W2a).
pub fn open_owned_file(path: &Path, create: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::EISDIR) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a directory, not a regular file (remove it, then run the export again)", path.display()),
            ),
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link; ferry never writes through a link (remove it, then run the export again)",
                    path.display()
                ),
            ),
            _ => err,
        })?;
    let Some(other) = other_than_a_file(file.metadata()?.file_type()) else { return Ok(file) };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {other}, not a regular file; ferry writes only regular files (remove it, then run the export again)",
            path.display()
        ),
    ))
}

/// What `kind` is when it is not a regular file ("a FIFO", "a device", ...); `None` for a file.
pub(crate) fn other_than_a_file(kind: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    Some(if kind.is_file() {
        return None;
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

/// Refuses a finished archive's name (`ARCHIVE`, a volume, the volumes' table) holding
/// anything but a regular file (spec/archive.md AR-W2a): the finished file is renamed onto
/// it, which would replace a device, a FIFO or a link itself (`-o /dev/null` run as root
/// would replace the system's `/dev/null`). Nothing there, or a regular file, is fine.
pub fn check_replaceable(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let Some(other) = other_than_a_file(meta.file_type()) else { return Ok(()) };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {other}, not a regular file; ferry puts the finished archive there by renaming it onto that name, \
             which would replace the {} itself (name a regular file, or remove it)",
            path.display(),
            other.trim_start_matches("a ").trim_start_matches("an ")
        ),
    ))
}

#[cfg(target_os = "linux")]
fn reopen_direct(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

/// Direct I/O is used on Linux only; elsewhere every write goes through the page cache.
#[cfg(not(target_os = "linux"))]
fn reopen_direct(_file: &File) -> Option<File> {
    None
}

/// Allocates the blocks of a file's first `len` bytes (`fallocate`, as unwritten extents that
/// read as zeros), best effort: a file whose blocks are allocated as blobs land takes the inode's
/// lock exclusively for every allocating direct write, so the workers' writes queue behind each
/// other (issue 18: 0.07 CPU-s of idle cores per GiB exported, `sched_switch` traces); into
/// allocated blocks, writes of whole aligned blocks (the writer's `disk`) go side by side. A
/// filesystem without `fallocate`, or too little space, changes nothing: blocks are then
/// allocated as they are written, and a full disk is reported by the write that meets it (the
/// partial file stays usable for `--resume`).
#[cfg(target_os = "linux")]
pub fn preallocate(file: &File, len: u64) {
    use std::os::fd::AsRawFd;
    let Ok(len) = i64::try_from(len) else { return };
    if len == 0 {
        return;
    }
    // SAFETY: the descriptor is open for the life of `file`; the call only reads its arguments.
    let failed = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0;
    if failed {
        // Whatever part was allocated before the space ran out is given back, so that a nearly
        // full disk holds as many whole blobs as it did without this.
        // SAFETY: as above.
        unsafe {
            libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, len);
        }
    }
}

/// Other Unix systems: blocks are allocated as they are written.
#[cfg(not(target_os = "linux"))]
pub fn preallocate(_file: &File, _len: u64) {}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: queue the range for writing, return at once. A
/// hint only; failure changes nothing (the final fsync is what makes the archive durable).
/// Linux only (README "Platforms"); elsewhere the hint is left out.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, length: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(length)) = (i64::try_from(offset), i64::try_from(length)) else { return };
    // SAFETY: the descriptor is open for the life of `file`; the call only reads its arguments.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, length, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Other Unix systems have no `sync_file_range`; the final fsync alone makes the archive durable.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _length: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_cross_volume_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(PathBuf, File, u64)> = [3u64, 4, 2]
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let path = dir.path().join(format!("v.{i:03}"));
                let file =
                    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
                file.set_len(len).unwrap();
                (path, file, len)
            })
            .collect();
        let volumes = Volumes::new(files);
        assert_eq!(volumes.len(), 9);
        volumes.write_all_at(b"abcdefghi", 0).unwrap();
        assert_eq!(std::fs::read(dir.path().join("v.001")).unwrap(), b"defg");
        let mut middle = [0u8; 5];
        volumes.read_exact_at(&mut middle, 2).unwrap();
        assert_eq!(&middle, b"cdefg");
        assert_eq!(volumes.index_of(6), 1);
        assert_eq!(volumes.index_of(7), 2);
        assert!(volumes.describe(8).unwrap().starts_with("volume 3 of 3, "));
        assert!(volumes.write_all_at(b"xy", 8).is_err());
    }
}
