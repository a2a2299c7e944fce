//! Finding and opening an archive's files: one file, or the volumes its table of contents
//! (`ARCHIVE.volumes.json`) lists, given the table, any volume or the archive's own name
//! (spec/archive.md AR-S2). Every listed volume must be there with its listed size, and no
//! further volume may sit beside them, before a byte is read.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::{ArchiveError, ArchiveProblem};
use crate::model::volume_table::{self, MAX_TABLE_BYTES, VolumeTable};
use crate::store::StoreError;
use crate::store::volumes::Volumes;

/// The table of contents `path` stands for, if it names a split archive: the table itself, a
/// volume beside its table, or an archive name with no file but a table.
pub fn table_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(volume_table::SUFFIX) {
        return Some(path.to_path_buf());
    }
    let beside = |archive: &str| path.with_file_name(format!("{archive}{}", volume_table::SUFFIX));
    if let Some(archive) = volume_table::archive_of_volume(name) {
        let table = beside(archive);
        // Anything under the table's name is taken for it, and refused unless a regular file.
        if table.exists() {
            return Some(table);
        }
    }
    let table = beside(name);
    (!path.exists() && table.exists()).then_some(table)
}

/// Opens the archive `path` names: its volumes (checked against their table) or its one file.
pub fn open(path: &Path) -> Result<(Volumes, Option<VolumeTable>), StoreError> {
    let name = path.display().to_string();
    let Some(table_path) = table_path(path) else {
        let file = File::open(path).map_err(|e| StoreError::io(format!("opening {name}"), e))?;
        let metadata = file.metadata().map_err(|e| StoreError::io(format!("reading {name}"), e))?;
        if !metadata.is_file() {
            return Err(StoreError::Invalid { store: name, reason: "not a regular file".into() });
        }
        return Ok((Volumes::single(path, file, metadata.len()), None));
    };
    let table = read_table(&table_path)?;
    let problem = |reason: String| {
        StoreError::Archive(ArchiveError { archive: name.clone(), problem: ArchiveProblem::Volume { reason } })
    };
    // The table speaks for the archive whose name it bears: `week2.tar.volumes.json` saying
    // `"archive": "week1.tar"` would have ferry read week1's volumes for week2.
    let own_name = table_path.file_name().map(|name| name.to_string_lossy().into_owned());
    if own_name.as_deref() != Some(format!("{}{}", table.archive, volume_table::SUFFIX).as_str()) {
        return Err(problem(format!(
            "{} names the archive {:?}; a table is named after its archive ({}{})",
            table_path.display(),
            table.archive,
            table.archive,
            volume_table::SUFFIX
        )));
    }
    let count = table.volumes.len();
    // Every volume stays open while the archive is read (beside the files already open).
    if count > 256 {
        raise_open_file_limit(u64::MAX);
    }
    let mut files = Vec::with_capacity(count);
    for (index, volume) in table.volumes.iter().enumerate() {
        let path = table_path.with_file_name(&volume.name);
        let which = format!("volume {} of {count}, {}", index + 1, path.display());
        let file = match open_volume(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(problem(format!("{which}, is missing")));
            }
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                return Err(problem(format!(
                    "{which}, is a symbolic link; a volume is a regular file beside its table"
                )));
            }
            Err(err) => return Err(StoreError::io(format!("opening {which}"), err)),
        };
        let metadata = file.metadata().map_err(|e| StoreError::io(format!("reading {which}"), e))?;
        if !metadata.is_file() {
            return Err(problem(format!("{which}, is not a regular file")));
        }
        if metadata.len() != volume.size {
            let hint = if metadata.len() < volume.size {
                "truncated: copy it again"
            } else {
                "not the volume the table lists"
            };
            return Err(problem(format!(
                "{which}, is {} bytes, but the table says {} ({hint})",
                metadata.len(),
                volume.size
            )));
        }
        files.push((path, file, volume.size));
    }
    let extra = table_path.with_file_name(volume_table::volume_name(&table.archive, count + 1));
    if extra.exists() {
        return Err(problem(format!(
            "{} lies beside the {count} volumes of {} but is not in their table: it belongs to another export; move it away",
            extra.display(),
            table_path.display()
        )));
    }
    Ok((Volumes::new(files), Some(table)))
}

fn read_table(path: &Path) -> Result<VolumeTable, StoreError> {
    let what = path.display().to_string();
    let file = open_without_waiting(path).map_err(|e| StoreError::io(format!("opening {what}"), e))?;
    if !file.metadata().is_ok_and(|metadata| metadata.is_file()) {
        return Err(StoreError::Invalid { store: what, reason: "not a regular file".into() });
    }
    let mut bytes = Vec::new();
    file.take(MAX_TABLE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| StoreError::io(format!("reading {what}"), e))?;
    let problem = |reason: String| {
        StoreError::Archive(ArchiveError { archive: what.clone(), problem: ArchiveProblem::Volume { reason } })
    };
    if bytes.len() as u64 > MAX_TABLE_BYTES {
        return Err(problem(format!("the table of contents is over {MAX_TABLE_BYTES} bytes")));
    }
    VolumeTable::parse(&bytes, &what).map_err(problem)
}

/// Raises the soft limit on open files towards `wanted`, up to the hard limit (as Go programs
/// do at start): a volume set of more than the usual 1,024 files, written where the limit was
/// higher, is then read here too.
fn raise_open_file_limit(wanted: u64) {
    // SAFETY: getrlimit/setrlimit on this process's own limit, with a valid struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && (limit.rlim_cur as u64) < wanted {
            limit.rlim_cur = (wanted as libc::rlim_t).min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Opens a file the volume table names without waiting on it: a FIFO under a volume's name
/// would block a plain open until something wrote to it (`verify` hung); opened non-blocking,
/// it is refused as not a regular file like any other. Reads of a regular file never block.
pub fn open_without_waiting(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)
}

/// [`open_without_waiting`], and never through a symbolic link: a volume set is the files
/// beside its table, as ferry wrote them (a link could make it any file the user can read).
fn open_volume(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}
