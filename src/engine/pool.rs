//! A bounded pool of plain threads for blocking I/O (network and disk), each pulling the next
//! job from a shared list; rayon stays reserved for CPU work. Its threads are named
//! `ferry-worker` (beside `ferry-receive` and `ferry-write` of a blob's transfer), so `top -H`
//! and a scheduler trace tell which stage of an export waits.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `job` on every item with at most `workers` threads, taking items in order, and returns
/// the results in input order. When `stop_on_error` is set, workers stop taking new items once
/// one job has failed (jobs already running finish).
pub fn run_all<T: Sync, R: Send, E: Send>(
    items: &[T],
    workers: usize,
    stop_on_error: bool,
    job: impl Fn(&T) -> Result<R, E> + Sync,
) -> Vec<Option<Result<R, E>>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, E>>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            let worker = std::thread::Builder::new().name("ferry-worker".into());
            worker
                .spawn_scoped(scope, || {
                    loop {
                        if stop_on_error && failed.load(Ordering::Relaxed) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { return };
                        let result = job(item);
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        results.lock().expect("no job panics while holding the lock")[i] = Some(result);
                    }
                })
                .expect("the system starts a worker thread");
        }
    });
    results.into_inner().expect("workers have finished")
}
