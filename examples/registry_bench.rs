//! The client half of `make bench`'s registry measurements (scripts/bench-registry.sh): one
//! blob streamed from a registry through the verifying reader to nowhere, or from a file to a
//! registry, with ferry's own client, so the script can time it beside curl doing the same.
//!
//! Usage:
//!   registry_bench get HOST REPO sha256:HEX SIZE
//!   registry_bench put HOST REPO FILE sha256:HEX

use std::fs::File;
use std::io;
use std::sync::Arc;

use ferry::model::{Descriptor, Digest, Repository};
use ferry::store::registry::{
    CredentialStore, FlagCredentials, RegistryClient, RegistryOptions, RegistrySink, RegistrySource,
};
use ferry::store::{Sink, Source};
use ferry::verify::{VerifyingReader, copy_verified};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = RegistryOptions { insecure: true, ..RegistryOptions::default() };
    let client = Arc::new(RegistryClient::new(
        options,
        CredentialStore::new(FlagCredentials::default(), &Default::default(), Vec::new()),
    )?);
    match args.as_slice() {
        [command, host, repo, digest, size] if command == "get" => {
            let repository = Repository::parse(&format!("{host}/{repo}"))?;
            let digest: Digest = digest.parse()?;
            let source = RegistrySource::new(client);
            source.remember(digest, &repository);
            let descriptor = Descriptor::new("application/octet-stream", digest, size.parse()?);
            let mut reader = source.blob(&descriptor)?;
            copy_verified(&mut reader, &mut io::sink(), 1 << 20)?;
        }
        [command, host, repo, file, digest] if command == "put" => {
            let repository = Repository::parse(&format!("{host}/{repo}"))?;
            let digest: Digest = digest.parse()?;
            let file = File::open(file)?;
            let size = file.metadata()?.len();
            let descriptor = Descriptor::new("application/octet-stream", digest, size);
            let inner: Box<dyn io::Read + Send> = Box::new(io::BufReader::with_capacity(1 << 20, file));
            let mut reader = VerifyingReader::new(inner, digest, size, "bench file");
            RegistrySink::new(client, repository).put_blob(&descriptor, &mut reader)?;
        }
        _ => return Err("usage: registry_bench get HOST REPO DIGEST SIZE | put HOST REPO FILE DIGEST".into()),
    }
    Ok(())
}
