//! A connection that stops taking bytes is let go (spec/serve.md SV-0): a response write that
//! makes no progress for [`WRITE_STALL`] fails, which ends the connection and frees its slot.
//! Without it a client that asks for a large blob and never reads holds one of the
//! [`super::server::MAX_CONNECTIONS`] slots, and a chunk of memory, for as long as it likes.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The longest a response may wait for the client to take any byte.
pub const WRITE_STALL: Duration = Duration::from_secs(60);

/// `inner`, whose writes fail once one has waited `limit` without progress.
pub struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits; reset whenever one goes through.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline { inner, limit, waiting: None }
    }

    /// What an inner write or flush answered, seen against the limit: while it waits the timer
    /// runs (a failure once it runs out), and any answer resets it.
    fn watched<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(stall_error(limit))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, bytes);
        self.watched(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        pieces: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, pieces);
        self.watched(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watched(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn stall_error(limit: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("the client took no byte for {} s", limit.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that never reads: the writes fill the socket's buffers, then fail after the
    /// limit instead of waiting for ever.
    #[test]
    fn a_write_nobody_takes_fails_after_the_limit() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let _client = tokio::net::TcpStream::connect(address).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let mut stream = WriteDeadline::new(server, Duration::from_millis(200));
            let started = std::time::Instant::now();
            let chunk = vec![0u8; 64 * 1024];
            let failed = loop {
                let written = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_write(cx, &chunk));
                match tokio::time::timeout(Duration::from_secs(10), written).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(err)) => break err,
                    Err(_) => panic!("a write waited 10 s"),
                }
            };
            assert_eq!(failed.kind(), io::ErrorKind::TimedOut, "{failed}");
            assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        });
    }
}
