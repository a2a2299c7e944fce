//! What an interrupt (SIGINT, SIGTERM, SIGHUP) leaves behind: directories registered here, which
//! hold unverified work (a pull's staging directory of layer bytes not yet checked), are removed
//! before the process exits with 128 + the signal's number. Without this, Ctrl-C during a pull
//! left `DIR.ferry-pull-*` beside the output for ever (a failed pull removes it; an interrupted
//! one never ran its cleanup). Work a user may resume (an export's `ARCHIVE.partial`) is never
//! registered.
//!
//! The first registration starts one thread that waits for the signals (through tokio, already
//! the server's runtime); from then on an interrupt ends the process this way, registered
//! directories or not.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

/// The directories to remove on an interrupt.
static REGISTERED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static LISTENING: Once = Once::new();

/// Keeps `path` registered until dropped (the work in it finished or was cleaned up).
pub struct RemovedOnInterrupt(PathBuf);

/// Registers `path` for removal on an interrupt.
pub fn remove_on_interrupt(path: &Path) -> RemovedOnInterrupt {
    LISTENING.call_once(listen);
    registered().push(path.to_path_buf());
    RemovedOnInterrupt(path.to_path_buf())
}

impl Drop for RemovedOnInterrupt {
    fn drop(&mut self) {
        let mut paths = registered();
        if let Some(at) = paths.iter().position(|path| *path == self.0) {
            paths.swap_remove(at);
        }
    }
}

fn registered() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    REGISTERED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the thread that waits for a signal. If the signals cannot be listened to, the
/// default (ending the process where it is) stays.
fn listen() {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
        Ok(runtime) => runtime,
        Err(_) => return,
    };
    let streams = runtime.block_on(async {
        Some((
            signal(SignalKind::interrupt()).ok()?,
            signal(SignalKind::terminate()).ok()?,
            signal(SignalKind::hangup()).ok()?,
        ))
    });
    let Some((mut interrupt, mut terminate, mut hangup)) = streams else { return };
    let spawned = std::thread::Builder::new().name("ferry-signals".into()).spawn(move || {
        let number = runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => libc::SIGINT,
                _ = terminate.recv() => libc::SIGTERM,
                _ = hangup.recv() => libc::SIGHUP,
            }
        });
        // Held to the exit: nothing registers or finishes a directory after this point.
        let paths = registered();
        for path in paths.iter() {
            if std::fs::remove_dir_all(path).is_ok() {
                eprintln!("interrupted: removed {}", path.display());
            }
        }
        std::process::exit(128 + number);
    });
    if spawned.is_err() {
        // No one would act on the signals tokio now catches: give them their default back.
        for number in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: restoring a signal's default disposition has no other effect.
            unsafe { libc::signal(number, libc::SIG_DFL) };
        }
    }
}
