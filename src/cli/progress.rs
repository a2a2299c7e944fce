//! The terminal side of [`Reporter`]: a progress bar on a terminal, plain periodic lines when
//! stderr is not one (logs, CI), nothing with `--quiet`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output;
use ferry::engine::{Items, Reporter};
use ferry::model::{Descriptor, Digest};

/// Shows progress according to where stderr goes.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    plain: Mutex<PlainState>,
    done: AtomicU64,
    /// Transfers under way, by digest, with their sizes.
    in_flight: Mutex<BTreeMap<Digest, u64>>,
}

struct PlainState {
    phase: String,
    total: u64,
    last: Instant,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{msg:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar
        });
        Progress {
            bar,
            quiet,
            plain: Mutex::new(PlainState { phase: String::new(), total: 0, last: Instant::now() }),
            done: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
        }
    }

    /// "3 in flight, largest 512.0 MiB sha256:0123456789ab": what a long transfer is waiting on.
    fn in_flight_summary(&self) -> String {
        let in_flight = self.in_flight.lock().expect("progress lock");
        match in_flight.iter().max_by_key(|(_, size)| **size) {
            Some((digest, size)) => {
                format!("{} in flight, largest {} {}", in_flight.len(), output::human_bytes(*size), digest.short())
            }
            None => String::new(),
        }
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Reporter for Progress {
    fn phase(&self, name: &str, items: Items, bytes: u64) {
        self.done.store(0, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_prefix(name.to_string());
            bar.set_message(String::new());
            bar.set_length(bytes);
            bar.set_position(0);
            bar.reset_eta();
        } else if !self.quiet {
            let mut plain = self.plain.lock().expect("progress lock");
            *plain = PlainState { phase: name.to_string(), total: bytes, last: Instant::now() };
            if bytes > 0 {
                output::note(&format!("{name}: {items}, {}", output::human_bytes(bytes)));
            } else {
                // A stream: its size is not known in advance.
                output::note(&format!("{name}..."));
            }
        }
    }

    fn bytes(&self, count: u64) {
        let done = self.done.fetch_add(count, Ordering::Relaxed) + count;
        if let Some(bar) = &self.bar {
            bar.inc(count);
        } else if !self.quiet {
            let mut plain = self.plain.lock().expect("progress lock");
            if plain.last.elapsed() >= Duration::from_secs(5) {
                plain.last = Instant::now();
                if plain.total == 0 {
                    output::note(&format!("{}: {} so far", plain.phase, output::human_bytes(done)));
                } else {
                    // Clamped: a phase never says more than all of it is done (issue 17).
                    let done = done.min(plain.total);
                    let percent = (done * 100).checked_div(plain.total).unwrap_or(100);
                    output::note(&format!(
                        "{}: {} of {} ({percent}%) {}",
                        plain.phase,
                        output::human_bytes(done),
                        output::human_bytes(plain.total),
                        self.in_flight_summary()
                    ));
                }
            }
        }
    }

    fn item_started(&self, descriptor: &Descriptor) {
        self.in_flight.lock().expect("progress lock").insert(descriptor.digest, descriptor.size);
        if let Some(bar) = &self.bar {
            bar.set_message(self.in_flight_summary());
        }
    }

    fn item_done(&self, descriptor: &Descriptor, _skipped: bool) {
        self.in_flight.lock().expect("progress lock").remove(&descriptor.digest);
        if let Some(bar) = &self.bar {
            bar.set_message(self.in_flight_summary());
        }
    }

    fn warn(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| output::warn(message)),
            None => output::warn(message),
        }
    }
}
