//! Every way an archive's structure can be wrong, each naming the entry and the rule of
//! spec/archive.md it breaks.

/// A malformed archive.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{archive}: {problem}")]
pub struct ArchiveError {
    pub archive: String,
    pub problem: ArchiveProblem,
}

impl ArchiveProblem {
    /// The archive byte the problem was found at, when it is about a position.
    pub fn offset(&self) -> Option<u64> {
        match self {
            ArchiveProblem::BadHeader { offset, .. } | ArchiveProblem::MissingEnd { offset } => Some(*offset),
            _ => None,
        }
    }
}

/// What is wrong with an archive, by rule of spec/archive.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveProblem {
    #[error("entry {name:?} is an absolute path (AR-R2: entries must be relative)")]
    AbsolutePath { name: String },
    #[error("entry {name:?} contains '..' (AR-R2: path traversal is refused)")]
    PathTraversal { name: String },
    #[error("entry {name:?} is a {kind} (AR-R3: only regular files and directories are allowed)")]
    NotRegular { name: String, kind: &'static str },
    #[error("entry {name:?} appears more than once (AR-R4: each name once)")]
    Duplicate { name: String },
    #[error(
        "entry {name:?} is not part of an OCI layout (AR-R5: allowed are oci-layout, index.json, blobs/sha256/<64 hex>)"
    )]
    UnexpectedEntry { name: String },
    #[error(
        "entry {name:?} is truncated: its header says {size} bytes but the archive ends {available} bytes into it (AR-R6; copy the archive again)"
    )]
    Truncated { name: String, size: u64, available: u64 },
    #[error(
        "the archive ends at byte {offset} without the end-of-archive marker (AR-R6: it is truncated; copy it again)"
    )]
    MissingEnd { offset: u64 },
    #[error("the header at byte {offset} is corrupt: {reason} (AR-R1)")]
    BadHeader { offset: u64, reason: String },
    #[error("entry {name:?} is {size} bytes, over the {limit}-byte limit for metadata (AR-R7)")]
    Oversize { name: String, size: u64, limit: u64 },
    #[error("the archive has no {name} (AR-R8: not an OCI image layout)")]
    MissingMetadata { name: &'static str },
    /// `reason` names the rule when it is a more specific one than AR-R8 (AR-R7, AR-R13..).
    #[error("{name}: {reason}{}", if reason.contains("(AR-R") { "" } else { " (AR-R8)" })]
    BadMetadata { name: String, reason: String },
    #[error("{reason} (AR-S3)")]
    Volume { reason: String },
    /// The manifest graph the layout holds fails a rule (a malformed manifest, a forged size,
    /// nesting past the limit: AR-R13, AR-R14); `reason` names each failure.
    #[error("its content is refused:\n  {reason}")]
    Graph { reason: String },
}

/// A problem the shared tar walk met in `archive`, as a store error: a failed read is an I/O
/// error naming what was being read, every other problem is the archive's own (AR-R1, AR-R6,
/// AR-R7). One rule for the file reader and the stream reader.
pub(crate) fn walk_failure(archive: &str, problem: crate::store::tar::walk::WalkProblem) -> crate::store::StoreError {
    use crate::store::tar::walk::WalkProblem;
    let problem = match problem {
        WalkProblem::Io(err) => return crate::store::StoreError::io(format!("reading {archive}"), err),
        WalkProblem::BadHeader { offset, reason } => ArchiveProblem::BadHeader { offset, reason },
        WalkProblem::Truncated { name, size, available } => ArchiveProblem::Truncated { name, size, available },
        WalkProblem::MissingEnd { offset } => ArchiveProblem::MissingEnd { offset },
        WalkProblem::Oversize { name, size, limit } => ArchiveProblem::Oversize { name, size, limit },
    };
    crate::store::StoreError::Archive(ArchiveError { archive: archive.to_string(), problem })
}
