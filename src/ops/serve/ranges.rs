//! `Range` reads checked piece by piece (spec/serve.md SV-3): when a blob is hashed whole, the
//! sha256 of each [`CHUNK`]-aligned piece is kept (32 bytes per 256 KiB), and a range is read
//! in the aligned pieces that cover it, each hashed and compared before any of its bytes is
//! sent. A blob changed on the media after its check is then never served, however the
//! client cuts it into ranges (two ranges once rebuilt a changed blob whole).

use std::io::{self, Read, Write};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::content::CHUNK;
use crate::model::Digest;
use crate::verify::VerifyError;

/// The sha256 of each aligned piece of one blob, in order.
pub type ChunkTable = Arc<Vec<[u8; 32]>>;

/// Collects a [`ChunkTable`] from the bytes written to it, in order.
#[derive(Default)]
pub struct TableWriter {
    hashes: Vec<[u8; 32]>,
    current: Sha256,
    filled: usize,
}

impl TableWriter {
    pub fn finish(mut self) -> ChunkTable {
        if self.filled > 0 {
            self.hashes.push(self.current.finalize().into());
        }
        Arc::new(self.hashes)
    }
}

impl Write for TableWriter {
    fn write(&mut self, mut bytes: &[u8]) -> io::Result<usize> {
        let written = bytes.len();
        while !bytes.is_empty() {
            let take = (CHUNK - self.filled).min(bytes.len());
            self.current.update(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == CHUNK {
                self.hashes.push(std::mem::take(&mut self.current).finalize().into());
                self.filled = 0;
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes `start..start + len` of a blob of `size` bytes, read from `pieces` (a reader of the
/// blob from the aligned offset `start / CHUNK * CHUNK` on) and checked against `table`.
pub struct CheckedRange<R> {
    pieces: R,
    table: ChunkTable,
    digest: Digest,
    origin: String,
    size: u64,
    /// The index of the next piece to read.
    next: usize,
    /// The checked piece being served, and how far into it.
    piece: Vec<u8>,
    at: usize,
    /// Bytes of the range still to serve.
    left: u64,
}

impl<R: Read> CheckedRange<R> {
    pub fn new(pieces: R, table: ChunkTable, blob: (Digest, u64), origin: String, start: u64, len: u64) -> Self {
        let (digest, size) = blob;
        let next = (start / CHUNK as u64) as usize;
        let at = (start % CHUNK as u64) as usize;
        CheckedRange { pieces, table, digest, origin, size, next, piece: Vec::new(), at, left: len }
    }

    /// Reads and checks the next piece; `at` keeps its place in it.
    fn refill(&mut self) -> io::Result<()> {
        let offset = self.next as u64 * CHUNK as u64;
        let len = (self.size - offset).min(CHUNK as u64) as usize;
        self.piece.resize(len, 0);
        self.pieces.read_exact(&mut self.piece)?;
        let hash: [u8; 32] = Sha256::digest(&self.piece).into();
        if self.table.get(self.next) != Some(&hash) {
            let changed = VerifyError::Changed { origin: self.origin.clone(), digest: self.digest, offset };
            return Err(io::Error::new(io::ErrorKind::InvalidData, changed));
        }
        self.next += 1;
        Ok(())
    }
}

impl<R: Read> Read for CheckedRange<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || out.is_empty() {
            return Ok(0);
        }
        if self.at >= self.piece.len() {
            let skip = if self.piece.is_empty() { self.at } else { 0 };
            self.refill()?;
            self.at = skip;
        }
        let n = (self.piece.len() - self.at).min(out.len()).min(usize::try_from(self.left).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sha256_digest;

    fn table_of(blob: &[u8]) -> ChunkTable {
        let mut writer = TableWriter::default();
        for piece in blob.chunks(100_003) {
            writer.write_all(piece).unwrap();
        }
        writer.finish()
    }

    fn range(blob: &[u8], served: &[u8], start: u64, len: u64) -> io::Result<Vec<u8>> {
        let aligned = (start / CHUNK as u64 * CHUNK as u64) as usize;
        let blob_id = (sha256_digest(blob), blob.len() as u64);
        let mut reader = CheckedRange::new(&served[aligned..], table_of(blob), blob_id, "a.tar".into(), start, len);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn ranges_of_the_verified_bytes_are_served_and_changed_pieces_refused() {
        let blob: Vec<u8> = (0..CHUNK * 3 + 777).map(|i| (i * 7 % 251) as u8).collect();
        let size = blob.len() as u64;
        for (start, len) in [(0, size), (5, 10), (CHUNK as u64 - 3, 9), (size - 1, 1), (CHUNK as u64 * 3, 777)] {
            let got = range(&blob, &blob, start, len).unwrap();
            assert_eq!(got, &blob[start as usize..(start + len) as usize], "{start}+{len}");
        }
        // One byte changed in the second piece: a range touching it fails, one that does not
        // (the first piece alone) is still served.
        let mut changed = blob.clone();
        changed[CHUNK + 10] ^= 1;
        let err = range(&blob, &changed, CHUNK as u64 - 3, 9).unwrap_err();
        assert!(err.to_string().contains(&format!("the bytes from {CHUNK} changed")), "{err}");
        assert_eq!(range(&blob, &changed, 0, 100).unwrap(), &blob[..100]);
        assert!(range(&blob, &changed, size - 1, 1).is_ok());
    }
}
