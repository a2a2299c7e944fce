//! Verification of bytes against their descriptors, independent of where the bytes come from.
//!
//! [`VerifyingReader`] wraps any `Read` and is the only way a source hands out blob bytes: it
//! hashes while reading, refuses to deliver more than the descriptor's size, and at end of stream
//! fails unless both size and digest match. [`hash_all`] hashes many local blobs in parallel.
//! This module knows nothing of files, archives or HTTP.

mod chunk;
mod parallel;
mod reader;

pub use chunk::{ALIGNMENT, AlignedBuffer, BufferPool, Chunk, ChunkSource};
pub use parallel::{BlobCheck, hash_all};
pub use reader::{CACHE_PIECE, Hasher, VerifyError, VerifyingReader, copy_verified, verify_error};
