//! `ferry serve`: flags, the ready line and the request log (spec/cli.md "`ferry serve`",
//! spec/serve.md SV-4).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use super::args::Global;
use super::exit::{Exit, Failure};
use super::output::{self, shown};
use super::progress::Progress;
use ferry::model::Digest;
use ferry::ops::serve::{RequestRecord, ServeLog, ServeOptions, TlsFiles, VerifyMode, start};

/// Serve an archive as a read-only registry, straight from the media.
///
/// Every image and bundle is served under its original repository path and tag (point a
/// containerd or CRI-O mirror of the original registry at it), and with --repo NAME also
/// everything in the one repository NAME, tagged as `ferry import --to-repo` tags it, so
/// `imgpkg pull -b HOST/NAME:TAG` and `imgpkg copy` work against it. Nothing is extracted:
/// blobs are read in place from the archive (or its volumes), and every blob served is
/// verified (all before listening, or with --verify lazy each on its first full read); a blob
/// that fails is never served. Write requests are refused (405). Stop with Ctrl-C or SIGTERM.
///
/// Examples:
///   ferry serve bundle.tar
///   ferry serve bundle.tar --addr 0.0.0.0:5000 --repo team/bundle --tls-cert c.pem --tls-key k.pem
///   ferry serve bundle.tar.volumes.json --verify lazy --json
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// Archive to serve (a file, a volume table or any of its volumes)
    pub archive: PathBuf,
    /// Address to listen on (port 0: any free port)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,
    /// Also serve everything in this one repository, tagged as an import tags it
    #[arg(long, value_name = "NAME")]
    pub repo: Option<String>,
    /// When blobs are hashed: all before listening, or each on its first full read
    #[arg(long, value_enum, default_value = "eager")]
    pub verify: VerifyFlag,
    /// Refuse the archive unless its identity (sha256 of its index.json) is this one
    #[arg(long, value_name = "sha256:HEX")]
    pub identity: Option<Digest>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Print the ready line as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum VerifyFlag {
    Eager,
    Lazy,
}

/// The request log on stderr: one line per request unless quiet; blob failures always. Lines
/// go through a bounded queue to a thread of their own, so a stderr that stops taking them (a
/// pipe nobody reads, a terminal paused with Ctrl-S) never stops the server; lines that do not
/// fit are counted and the count said once stderr takes lines again.
struct StderrLog {
    quiet: bool,
    lines: std::sync::mpsc::SyncSender<Line>,
    dropped: std::sync::atomic::AtomicU64,
    /// Says when the writer has written every line queued (all senders gone).
    drained: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

enum Line {
    Note(String),
    Warning(String),
}

/// Lines queued for stderr before new ones are dropped.
const LOG_QUEUE: usize = 4096;

impl StderrLog {
    fn start(quiet: bool) -> StderrLog {
        let (lines, queued) = std::sync::mpsc::sync_channel::<Line>(LOG_QUEUE);
        let (done, drained) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("ferry-serve-log".into()).spawn(move || {
            for line in queued {
                match line {
                    Line::Note(text) => output::note(&text),
                    Line::Warning(text) => output::warn(&text),
                }
            }
            let _ = done.send(());
        });
        if let Err(err) = spawned {
            output::warn(&format!("the request log is off: {err}"));
        }
        let drained = std::sync::Mutex::new(Some(drained));
        StderrLog { quiet, lines, dropped: std::sync::atomic::AtomicU64::new(0), drained }
    }

    /// Ends the log: the lines still queued are written, for at most a second (a stderr that
    /// takes nothing does not hold the exit).
    fn finish(log: Arc<StderrLog>) {
        let drained = log.drained.lock().ok().and_then(|mut drained| drained.take());
        drop(log);
        if let Some(drained) = drained {
            let _ = drained.recv_timeout(std::time::Duration::from_secs(1));
        }
    }

    fn send(&self, line: Line) {
        use std::sync::atomic::Ordering;
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let said = format!("{dropped} log line(s) dropped: stderr was not taking them");
            if self.lines.try_send(Line::Warning(said)).is_err() {
                self.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
        if self.lines.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ServeLog for StderrLog {
    fn request(&self, record: &RequestRecord) {
        if !self.quiet {
            let cut = match (record.complete, record.announced) {
                (true, _) => String::new(),
                (false, Some(announced)) => format!(" cut short: {} of {announced} bytes sent", record.bytes),
                (false, None) => " cut short".to_string(),
            };
            self.send(Line::Note(format!(
                "{} {} {} {} {}ms {}{cut}",
                record.method,
                shown(&record.path),
                record.status,
                record.bytes,
                record.millis,
                record.peer
            )));
        }
    }

    fn blob_failed(&self, digest: &Digest, message: &str) {
        let message = shown(message);
        self.send(Line::Warning(format!("blob {digest} failed verification and is no longer served: {message}")));
    }
}

impl ServeArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        };
        let options = ServeOptions {
            addr: self.addr,
            repo: self.repo.clone(),
            verify: match self.verify {
                VerifyFlag::Eager => VerifyMode::Eager,
                VerifyFlag::Lazy => VerifyMode::Lazy,
            },
            identity: self.identity,
            tls,
            workers: global.workers(),
        };
        let progress = Progress::new(global.quiet || self.json);
        let started = start(&self.archive, &options, &progress);
        progress.finish();
        let server = started.map_err(|err| {
            let integrity = err.is_integrity();
            Failure::new(err, integrity)
        })?;
        for warning in server.warnings() {
            output::warn(warning);
        }
        let ready = server.ready();
        if self.json {
            // One line, so a script can read it with a line read and start pulling.
            output::json_line(ready)?;
        } else {
            output::data(&format!(
                "serving {} at {} (identity {}, {} repositories)",
                shown(&ready.archive),
                ready.url,
                ready.identity,
                ready.repositories.len()
            ))?;
        }
        let log = Arc::new(StderrLog::start(global.quiet));
        let served = server.run(Arc::clone(&log) as Arc<dyn ServeLog>);
        // The server's clones of the log went with its runtime: the queue can drain.
        StderrLog::finish(log);
        served.map_err(|err| Failure::new(err, false))?;
        Ok(Exit::Success)
    }
}
