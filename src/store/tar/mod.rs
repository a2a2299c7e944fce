//! Tar, as every archive reader meets it: [`header`] owns the header format (ferry's fixed
//! ustar headers written, any POSIX, PAX or GNU header parsed, every length bounded) and
//! [`walk`] the one pass over a tar's headers that the layout archive's file and stream readers
//! and the imgpkg tarball reader all take (extension headers applied and bounded, truncation
//! and the end-of-archive marker found, padding checked). Not a store itself: the stores share it.

pub mod header;
pub mod walk;
