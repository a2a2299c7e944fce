//! The listening side (spec/serve.md SV-0, SV-4): a small tokio runtime with a fixed number of
//! threads, at most [`MAX_CONNECTIONS`] connections, hyper's HTTP/1.1 with bounded headers and
//! a header timeout, a connection that takes no byte for a minute let go, TLS by rustls when
//! asked, and a graceful stop on SIGINT or SIGTERM.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::handler::{Shared, handle};
use super::stall::{WRITE_STALL, WriteDeadline};

/// The most connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// The most of them from one address: one client (or one host behind a NAT) cannot take every
/// slot, as 1024 clients that never read once did.
pub const MAX_CONNECTIONS_PER_PEER: usize = 256;
/// The longest a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a client may take over a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head hyper buffers.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long requests in flight may go on after a stop signal.
const GRACE: Duration = Duration::from_secs(10);

/// Threads: `workers` for the connections, at most `readers` for archive reads.
pub struct Threads {
    pub workers: usize,
    pub readers: usize,
}

/// Serves until SIGINT or SIGTERM, then lets requests in flight finish (for up to [`GRACE`]).
pub fn run(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    threads: Threads,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.workers.max(1))
        .max_blocking_threads(threads.readers.max(1))
        .thread_name("ferry-serve")
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(serve(listener, tls, shared))?;
    // Reads of clients cut off at the end of the grace period must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

async fn serve(listener: std::net::TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peers = Arc::new(PeerCounts::default());
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors or a connection reset before accept: wait, go on.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        };
        // Over its share: closed at once, its slot given back (the client sees the connection
        // end and may try again later).
        let Some(peer_slot) = PeerSlot::take(&peers, peer.ip()) else { continue };
        let _ = stream.set_nodelay(true);
        let stream = WriteDeadline::new(stream, WRITE_STALL);
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let _peer_slot = peer_slot;
            let service = service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(shared, request, peer).await) }
            });
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(MAX_HEAD_BYTES);
            match tls {
                None => {
                    let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
                }
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, graceful.shutdown()).await;
    Ok(())
}

/// Connections open per client address.
#[derive(Default)]
struct PeerCounts(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection counted against its address; given back when dropped.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    peer: std::net::IpAddr,
}

impl PeerSlot {
    /// A slot for `peer`, unless it already holds [`MAX_CONNECTIONS_PER_PEER`].
    fn take(counts: &Arc<PeerCounts>, peer: std::net::IpAddr) -> Option<PeerSlot> {
        let mut open = counts.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(peer).or_default();
        if *count >= MAX_CONNECTIONS_PER_PEER {
            return None;
        }
        *count += 1;
        Some(PeerSlot { counts: Arc::clone(counts), peer })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.counts.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_takes_at_most_its_share_and_gives_it_back() {
        let counts = Arc::new(PeerCounts::default());
        let (one, two): (std::net::IpAddr, std::net::IpAddr) =
            ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let held: Vec<PeerSlot> =
            (0..MAX_CONNECTIONS_PER_PEER).map(|_| PeerSlot::take(&counts, one).unwrap()).collect();
        assert!(PeerSlot::take(&counts, one).is_none(), "over its share");
        assert!(PeerSlot::take(&counts, two).is_some(), "another address is served");
        drop(held);
        assert!(PeerSlot::take(&counts, one).is_some(), "given back");
    }
}
