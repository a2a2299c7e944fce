//! Read-ahead: a thread reads the next buffers of a stream while the consumer hashes and
//! writes the current one, so network (or disk) time and hashing overlap on two cores instead
//! of adding up. Memory is bounded: `depth` buffers of `buffer_size` bytes, recycled.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Wraps a reader with a prefetching thread.
pub struct ReadAhead {
    filled: Receiver<io::Result<(Vec<u8>, usize)>>,
    empty: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    length: usize,
    position: usize,
    finished: bool,
}

impl ReadAhead {
    pub fn new<R: Read + Send + 'static>(mut inner: R, depth: usize, buffer_size: usize) -> Self {
        let depth = depth.max(1);
        let (filled_tx, filled) = sync_channel::<io::Result<(Vec<u8>, usize)>>(depth);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(depth + 1);
        for _ in 0..depth {
            empty.send(vec![0; buffer_size]).expect("the channel has room for every buffer");
        }
        std::thread::spawn(move || {
            // Ends when the stream ends, fails, or the consumer is gone (a send or recv fails).
            while let Ok(mut buffer) = empty_rx.recv() {
                let (filled, error) = fill(&mut inner, &mut buffer);
                if filled > 0 && filled_tx.send(Ok((buffer, filled))).is_err() {
                    return;
                }
                match error {
                    Some(error) => {
                        let _ = filled_tx.send(Err(error));
                        return;
                    }
                    None if filled == 0 => {
                        let _ = filled_tx.send(Ok((Vec::new(), 0)));
                        return;
                    }
                    None => {}
                }
            }
        });
        ReadAhead { filled, empty, current: Vec::new(), length: 0, position: 0, finished: false }
    }
}

/// Reads until at least half the buffer is filled, the stream ends (no error, 0 bytes) or
/// fails; returns the bytes read and the failure, which is passed on after those bytes.
fn fill(inner: &mut impl Read, buffer: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut filled = 0;
    while filled < buffer.len() / 2 {
        match inner.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (filled, Some(e)),
        }
    }
    (filled, None)
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position == self.length {
            if self.finished {
                return Ok(0);
            }
            let spent = std::mem::take(&mut self.current);
            if !spent.is_empty() {
                let _ = self.empty.try_send(spent);
            }
            (self.position, self.length) = (0, 0);
            match self.filled.recv() {
                Ok(Ok((_, 0))) => self.finished = true,
                Ok(Ok((buffer, length))) => (self.current, self.length) = (buffer, length),
                Ok(Err(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                Err(_) => return Err(io::Error::other("the read-ahead thread stopped unexpectedly")),
            }
        }
        let n = buf.len().min(self.length - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_every_byte_in_order() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        ReadAhead::new(io::Cursor::new(data.clone()), 3, 64 * 1024).read_to_end(&mut out).unwrap();
        assert!(out == data);
    }

    #[test]
    fn passes_errors_through() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("boom"))
            }
        }
        let err = ReadAhead::new(Failing, 2, 1024).read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }
}
