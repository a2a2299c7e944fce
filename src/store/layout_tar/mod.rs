//! The OCI-layout tarball: ferry's archive (spec/archive.md).
//!
//! [`LayoutTarSink`] writes the deterministic archive at its final layout, with blobs written in
//! place by concurrent workers; [`LayoutTarSource`] indexes an archive's headers once, validates
//! every entry, and reads blobs in place by positional reads; both readers (file and stream)
//! take their headers from the one walk in [`crate::store::tar`], which also owns the header
//! format; [`ArchiveError`] names each way an archive can be malformed.

mod error;
pub use super::tar::header;
mod layout;
mod reader;
pub mod stream;
pub mod volume_set;
mod writer;

pub use error::{ArchiveError, ArchiveProblem};
pub use layout::{ArchiveLayout, EntryKind, PlannedEntry};
pub use reader::{ArchiveEntry, LayoutTarSource};
pub use writer::LayoutTarSink;
