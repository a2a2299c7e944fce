//! `--key` and `--require-signatures` (verify and import; spec/cli.md, spec/archive.md AR-RF4).

use std::path::PathBuf;

use clap::Args;

use super::exit::{Exit, Failure};
use ferry::ops::signatures::{PublicKey, SignatureOptions};

/// The signature flags verify and import share.
#[derive(Args, Debug, Default, Clone)]
pub struct SignatureFlags {
    /// Check cosign signatures and attestations against this public key (PEM, e.g.
    /// cosign.pub; ECDSA P-256/P-384, Ed25519, RSA); repeat for several keys
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<PathBuf>,
    /// Fail when any image or bundle has no signature that verifies with a --key
    #[arg(long, requires = "keys")]
    pub require_signatures: bool,
}

impl SignatureFlags {
    /// The keys read, and what to require; a key that cannot be read is a usage error.
    pub fn options(&self) -> Result<SignatureOptions, Failure> {
        let keys = self
            .keys
            .iter()
            .map(|path| PublicKey::read(path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure { error: anyhow::Error::new(e), exit: Exit::Usage })?;
        Ok(SignatureOptions { keys, require_signatures: self.require_signatures })
    }

    /// Signatures are checked on an archive read as a file (or volumes), not a stream.
    pub fn refuse_stream(&self) -> Result<(), Failure> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let message = "--key checks the signatures of an archive given as a file (or its volumes), not read from -";
        Err(Failure { error: anyhow::anyhow!(message), exit: Exit::Usage })
    }
}
