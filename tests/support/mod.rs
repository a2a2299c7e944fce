//! Test support: a real registry (Debian's `docker-registry`, CNCF distribution 2.8) started on
//! 127.0.0.1 per test, in four variants, plus the small tools the tests around it need
//! (spec/testing.md TS-1). Use it from any integration test file with `mod support;`.
//!
//! API:
//! - [`Registry::start`]`(`[`Variant`]`)` starts `docker-registry serve` on a free loopback port
//!   with a generated config and a temporary storage dir (deletes enabled), waits until
//!   `GET /v2/` answers 200 or 401 (at most [`registry::START_TIMEOUT`], else panics with the
//!   registry's log), and kills and reaps the process on drop, also when the test panics.
//!   - [`Variant::Plain`]: plain HTTP, anonymous.
//!   - [`Variant::Tls`]: HTTPS with a certificate for `127.0.0.1` and `localhost` signed by a CA
//!     made for this registry ([`Registry::ca_cert_path`]).
//!   - [`Variant::TlsBasicAuth`]: HTTPS + htpasswd basic auth ([`Registry::credentials`]).
//!   - [`Variant::TlsTokenAuth`]: HTTPS + bearer tokens from a token issuer running in the test
//!     process ([`token::TokenIssuer`]); [`Registry::token_requests`] counts the requests it got.
//!     [`Registry::token_request_log`] records who asked for which scopes, [`Registry::realm`]
//!     gives the realm; credentials are [`registry::USERNAME`] / [`registry::PASSWORD`].
//! - [`Registry::host`] (`127.0.0.1:PORT`), [`Registry::url`] (`http://..` or `https://..`),
//!   [`Registry::ca_cert_path`] and [`Registry::cert_dir`] (TLS), [`Registry::credentials`]
//!   (auth variants), [`Registry::log`] (stdout and stderr so far), [`Registry::pid`],
//!   [`Registry::dir`] (config, certificates, storage).
//! - Seeding and reading back with skopeo: [`Registry::push_layout`] copies an OCI layout's image
//!   or index with `skopeo copy --all --preserve-digests`; [`Registry::skopeo_flags`] gives the
//!   TLS/credential flags for any other skopeo command; [`Registry::curl_args`] the same for curl.
//! - [`Registry::write_docker_config`] writes a `config.json` with this registry's credentials.
//! - [`layout::write_image_layout`] writes a one-layer OCI image into an image layout.
//! - [`process::run_bounded`] runs a command with a deadline, killing it when the deadline passes.
//! - [`process::imgpkg`] finds the real imgpkg (`FERRY_TEST_IMGPKG`, else ../shared/tools/imgpkg).
//!
//! Every wait here is bounded, so a test built from these pieces bounds its time.

// Each test binary compiles its own copy of this module and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod layout;
pub mod pki;
pub mod process;
pub mod raw_tar;
pub mod registry;
pub mod token;

pub use layout::{LayoutImage, write_image_layout};
pub use process::{imgpkg, run_bounded};
pub use registry::{Registry, Variant};
