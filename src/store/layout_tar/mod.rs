//! The OCI-layout tarball: ferry's archive (spec/archive.md).
//!
//! [`LayoutTarSink`] writes the deterministic archive at its final layout, with blobs written in
//! place by concurrent workers; [`LayoutTarSource`] indexes an archive's headers once, validates
//! every entry, and reads blobs in place by positional reads. [`header`] owns the tar header
//! format both use; [`ArchiveError`] names each way an archive can be malformed.

mod error;
pub mod header;
mod layout;
mod reader;
pub mod stream;
pub mod volume_set;
mod writer;

pub use error::{ArchiveError, ArchiveProblem};
pub use layout::{ArchiveLayout, EntryKind, PlannedEntry};
pub use reader::{ArchiveEntry, LayoutTarSource};
pub use writer::LayoutTarSink;
