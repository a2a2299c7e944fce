//! ferry carries OCI images and imgpkg bundles across an air gap as one deterministic,
//! verifiable OCI-layout archive.
//!
//! Layers, each depending only on those before it (enforced by `tests/architecture.rs`):
//! [`model`] <- [`verify`] <- [`store`] <- [`engine`] <- [`ops`] <- `cli` (binary only).

pub mod engine;
pub mod model;
pub mod ops;
pub mod store;
pub mod verify;
