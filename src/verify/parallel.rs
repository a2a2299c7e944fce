//! Parallel hashing of blobs already on local storage, on rayon's pool (CPU work only).

use std::io::{self, Read};

use rayon::prelude::*;

use super::reader::{VerifyError, VerifyingReader, copy_verified, verify_error};
use crate::model::Digest;

/// One blob to check: what it should be, and how to open its bytes.
pub struct BlobCheck<'a> {
    pub digest: Digest,
    pub size: u64,
    pub open: Box<dyn Fn() -> io::Result<Box<dyn Read + 'a>> + Send + Sync + 'a>,
}

/// How hashing a blob ended: verified, wrong, or unreadable.
pub type CheckOutcome = Result<(), CheckFailure>;

/// A blob that failed its check.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailure {
    #[error(transparent)]
    Mismatch(VerifyError),
    #[error("blob {digest} from {origin}: cannot be read: {source}")]
    Unreadable { digest: Digest, origin: String, source: io::Error },
}

/// Hashes every blob, largest first so the pool stays busy to the end, each through a
/// [`VerifyingReader`]; returns one outcome per input, in input order. `on_done` is called
/// with each blob's size as it finishes (for progress). Memory is one buffer per blob being
/// hashed, no bigger than the blob (an archive of 100,000 small blobs must not zero 100 GiB).
pub fn hash_all(
    blobs: &[BlobCheck<'_>],
    origin: &str,
    on_done: &(dyn Fn(u64) + Sync),
) -> Vec<Result<(), CheckFailure>> {
    const BUFFER: usize = 1 << 20;
    let mut order: Vec<usize> = (0..blobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(blobs[i].size));
    let mut outcomes: Vec<(usize, CheckOutcome)> = order
        .par_iter()
        .with_max_len(1)
        .map(|&i| {
            let blob = &blobs[i];
            let outcome = (blob.open)().and_then(|inner| {
                let mut reader = VerifyingReader::new(inner, blob.digest, blob.size, origin);
                let buffer = usize::try_from(blob.size).map_or(BUFFER, |size| size.min(BUFFER));
                copy_verified(&mut reader, &mut io::sink(), buffer)
            });
            on_done(blob.size);
            let outcome = outcome.map(|_| ()).map_err(|err| match verify_error(&err) {
                Some(mismatch) => CheckFailure::Mismatch(mismatch.clone()),
                None => CheckFailure::Unreadable { digest: blob.digest, origin: origin.to_string(), source: err },
            });
            (i, outcome)
        })
        .collect();
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, outcome)| outcome).collect()
}
