//! The registry store: a [`RegistrySource`] that reads from any registry and a
//! [`RegistrySink`] that writes into one repository (distribution-spec), over one shared
//! [`RegistryClient`].
//!
//! The client is split along its seams: [`agent`] (scheme, TLS roots, the pooled agent, typed
//! transport errors), [`auth`] (challenges, tokens) over [`credentials`] (resolved once per
//! host), [`retry`] (the one retry policy), [`error`] (what the registry really answered),
//! [`origin`] (where credentials may go, URLs); [`client`] sends one request through them, and
//! [`direct`] reads blob bodies from the connection straight into the caller's buffers, [`answer`]
//! every other body, whole and within a deadline.

// Errors carry registry, repository, operation, status, code and message; they are built only on
// the cold path, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod agent;
pub mod answer;
pub mod auth;
pub mod client;
pub mod credentials;
pub mod direct;
pub mod error;
pub mod origin;
mod referrers;
pub mod retry;
mod sink;
mod source;
mod tags;

pub use client::{Operation, RegistryClient, RegistryOptions, RequestBody};
pub use credentials::{Credential, CredentialStore, FlagCredentials, Secret};
pub use error::{RegistryError, RegistryErrorKind};
pub use retry::{RetryPolicy, Verdict};
pub use sink::{BlobProbe, RegistrySink, UPLOAD_PROBE_MAX};
pub use source::RegistrySource;
pub use tags::{TagListing, list_tags, list_tags_paged, list_tags_with};
