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

/// Runs `finish` (the rename that publishes the directory at `registered`) with no interrupt
/// acting meanwhile: the directory is no longer removed on an interrupt once `finish` starts,
/// and an interrupt that came first has removed it and ended the process before (removing it
/// while it was renamed would delete the published output).
pub fn publish_without_interrupt<T>(registered: RemovedOnInterrupt, finish: impl FnOnce() -> T) -> T {
    let mut paths = self::registered();
    if let Some(at) = paths.iter().position(|path| *path == registered.0) {
        paths.swap_remove(at);
    }
    std::mem::forget(registered);
    finish()
}

/// Whether `number`'s disposition is "ignore", as `nohup` sets SIGHUP and a non-interactive
/// shell sets SIGINT for a command run with `&`: those stay ignored.
fn ignored(number: libc::c_int) -> bool {
    // SAFETY: a null new action only reads the current disposition into `current`.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(number, std::ptr::null(), &mut current) == 0 && current.sa_sigaction == libc::SIG_IGN
    }
}

/// Starts the thread that waits for a signal. If the signals cannot be listened to, the
/// default (ending the process where it is) stays.
fn listen() {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
        Ok(runtime) => runtime,
        Err(_) => return,
    };
    let kinds = [
        (libc::SIGINT, SignalKind::interrupt()),
        (libc::SIGTERM, SignalKind::terminate()),
        (libc::SIGHUP, SignalKind::hangup()),
    ];
    let watched: Vec<libc::c_int> = kinds.iter().map(|(number, _)| *number).filter(|n| !ignored(*n)).collect();
    let streams = runtime.block_on(async {
        let mut streams = Vec::new();
        for (number, kind) in kinds.into_iter().filter(|(number, _)| watched.contains(number)) {
            streams.push((number, signal(kind).ok()?));
        }
        Some(streams)
    });
    let Some(mut streams) = streams.filter(|streams| !streams.is_empty()) else {
        // A signal registered before another failed would be caught and never acted on.
        default_dispositions(&watched);
        return;
    };
    let spawned = std::thread::Builder::new().name("ferry-signals".into()).spawn(move || {
        let number = runtime.block_on(async {
            let waits = streams.iter_mut().map(|(number, stream)| {
                let number = *number;
                Box::pin(async move {
                    stream.recv().await;
                    number
                })
            });
            futures_select_first(waits).await
        });
        // Held to the exit: nothing registers or publishes a directory after this point.
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
        default_dispositions(&watched);
    }
}

fn default_dispositions(numbers: &[libc::c_int]) {
    for &number in numbers {
        // SAFETY: restoring a signal's default disposition has no other effect.
        unsafe { libc::signal(number, libc::SIG_DFL) };
    }
}

/// The value of whichever of `waits` finishes first.
async fn futures_select_first<F: std::future::Future<Output = libc::c_int> + Unpin>(
    waits: impl Iterator<Item = F>,
) -> libc::c_int {
    let mut waits: Vec<F> = waits.collect();
    std::future::poll_fn(move |cx| {
        for wait in waits.iter_mut() {
            if let std::task::Poll::Ready(number) = std::pin::Pin::new(wait).poll(cx) {
                return std::task::Poll::Ready(number);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
