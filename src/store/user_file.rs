//! Small files ferry writes at a name the user chose (an import's or push's lock file, an
//! inventory): written in place over a regular file or created, and never through anything
//! else. A symbolic link there (a planted `/tmp/lock.yml -> ~/.bashrc`) is refused, not
//! followed (`O_NOFOLLOW`); a FIFO fails at once instead of waiting for a reader (`O_NONBLOCK`);
//! a device, socket or directory is refused, naming what it is.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::volumes::other_than_a_file;

/// Checks, before any work, that `file` could be written: nothing is there or a regular file
/// (a link is not followed to find out). The write checks again, as the name may change.
pub fn check_user_file(file: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(file) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(format!("{}: {err}", file.display())),
        Ok(found) => match other_than_a_file(found.file_type()) {
            None => Ok(()),
            Some(other) => {
                Err(format!("{} is {other}; ferry writes only regular files there (give another name)", file.display()))
            }
        },
    }
}

/// Writes `text` to `file`, truncating what was there. A `private` file gets mode 0600 (set on
/// the open file too, so an existing one has it before anything is written); any other is
/// created 0666 less the umask and an existing one keeps its mode.
pub fn write_user_file(file: &Path, text: &str, private: bool) -> io::Result<()> {
    let mode = if private { 0o600 } else { 0o666 };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(file)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("it is a symbolic link, which ferry never writes through"),
            Some(libc::ENXIO) => io::Error::other("it is a FIFO no one reads; ferry writes only regular files"),
            _ => err,
        })?;
    if let Some(other) = other_than_a_file(out.metadata()?.file_type()) {
        return Err(io::Error::other(format!("it is {other}; ferry writes only regular files")));
    }
    if private {
        out.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    out.set_len(0)?;
    out.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_fifos_and_devices_are_refused_and_files_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = write_user_file(&link, "x", true).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");

        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let err = write_user_file(&fifo, "x", true).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");

        let err = write_user_file(Path::new("/dev/null"), "x", false).unwrap_err();
        assert!(err.to_string().contains("a device"), "{err}");

        for (refused, what) in
            [(&link, "a symbolic link"), (&fifo, "a FIFO"), (&dir.path().to_path_buf(), "a directory")]
        {
            assert!(check_user_file(refused).unwrap_err().contains(what), "{}", refused.display());
        }
        assert!(check_user_file(Path::new("/dev/null")).unwrap_err().contains("a device"));
        assert_eq!(check_user_file(&victim), Ok(()));
        assert_eq!(check_user_file(&dir.path().join("absent")), Ok(()));

        write_user_file(&victim, "new", true).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "new");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
