//! The registry store: a [`RegistrySource`] that reads from any registry and a
//! [`RegistrySink`] that writes into one repository (distribution-spec), over one shared
//! [`RegistryClient`].

pub mod auth;
pub mod client;
pub mod credentials;
pub mod error;
mod source;

pub use client::{Operation, RegistryClient, RegistryOptions, RequestBody};
pub use credentials::{Credential, CredentialStore, FlagCredentials, Secret};
pub use error::{RegistryError, RegistryErrorKind};
pub use source::RegistrySource;
