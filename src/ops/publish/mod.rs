//! Publishing a walked graph into one repository the imgpkg way, for import and copy
//! ([`relocate`]: blobs, manifests children first, imgpkg's tags, ImageLocations records,
//! `--lock-output`), asking the target first what it already holds so that only what it lacks
//! is read and sent ([`incremental`]; spec/cli.md IM-1, IM-2).

pub mod incremental;
pub mod relocate;
pub mod tag_names;
