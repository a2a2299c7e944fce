//! The client half of `make bench`'s registry measurements (scripts/bench-registry.sh): one
//! blob streamed from a registry through the verifying reader to nowhere, or from a file to a
//! registry, with ferry's own client, so the script can time it beside curl doing the same.
//!
//! Usage:
//!   registry_bench get HOST REPO sha256:HEX SIZE
//!   registry_bench raw-get HOST REPO sha256:HEX SIZE   (no HTTP client: the bound without its copy)
//!   registry_bench put HOST REPO FILE sha256:HEX

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use ferry::model::{Descriptor, Digest, Repository};
use ferry::store::read_ahead::ReadAhead;
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
        [command, host, repo, digest, size] if command == "raw-get" => {
            // Not a client: the bound of removing the HTTP client's copy (issue 18). The same GET
            // on a plain socket, the body received straight into the read-ahead pool's buffers
            // and hashed there. Bench use only: the one docker-registry of the bench answers.
            let digest: Digest = digest.parse()?;
            let size: u64 = size.parse()?;
            let mut stream = TcpStream::connect(host.as_str())?;
            write!(stream, "GET /v2/{repo}/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
            let mut head = vec![0u8; 16 << 10];
            let mut filled = 0;
            let head_end = loop {
                let n = stream.read(&mut head[filled..])?;
                if n == 0 {
                    return Err("the registry closed the connection before its answer's head ended".into());
                }
                filled += n;
                if let Some(at) = head[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                if filled == head.len() {
                    return Err("the answer's head is longer than 16 KiB".into());
                }
            };
            if !head.starts_with(b"HTTP/1.1 200 ") {
                return Err(format!("the registry answered {}", String::from_utf8_lossy(&head[..head_end])).into());
            }
            let body = io::Cursor::new(head[head_end..filled].to_vec()).chain(stream.take(size));
            let chunks = ReadAhead::new(body, 2);
            let mut reader = VerifyingReader::from_chunks(Box::new(chunks), digest, size, "raw GET");
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
        _ => return Err("usage: registry_bench get|raw-get HOST REPO DIGEST SIZE | put HOST REPO FILE DIGEST".into()),
    }
    Ok(())
}
