//! The client side of the fault tests: a time bound for every test, a client built the way the
//! tests need it (plain HTTP, small retry delays, every retry recorded), deterministic content,
//! and the reads and checks the tests share (a pull as the engine does it, secret leaks).

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ferry::model::{Descriptor, Digest, ManifestKind, RawManifest, Reference, Repository};
use ferry::store::registry::{
    CredentialStore, FlagCredentials, RegistryClient, RegistryError, RegistryOptions, RegistrySource, RetryPolicy,
    Secret,
};
use ferry::store::{BlobReader, Source, StoreError};
use ferry::verify::VerifyingReader;

use super::{FaultServer, Logged, SeededImage, digest_of};

/// No test may run longer than this.
pub const TEST_LIMIT: Duration = Duration::from_secs(20);
pub const USER: &str = "fault-user";
pub const PASSWORD: &str = "pa55-w0rd-S3CRET-9f2c";
pub const REPO: &str = "team/app";

/// Runs a test body on its own thread and fails the test if it is not done within `limit`.
pub fn bounded<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = done.send(body());
    });
    match finished.recv_timeout(limit) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => panic!("the test did not finish within {limit:?}"),
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the body sends its value before it returns"),
        },
    }
}

/// The messages the client passed to `on_retry`.
#[derive(Clone, Default)]
pub struct Retries(Arc<Mutex<Vec<String>>>);

impl Retries {
    pub fn messages(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Plain HTTP, three retries with 10 ms base delay, every retry recorded in `retries`.
pub fn options(retries: &Retries) -> RegistryOptions {
    let log = retries.clone();
    RegistryOptions {
        insecure: true,
        retry: RetryPolicy { retries: 3, base_delay: Duration::from_millis(10) },
        response_header_timeout: Duration::from_secs(5),
        on_retry: Some(Arc::new(move |message: &str| log.0.lock().unwrap().push(message.to_string()))),
        ..RegistryOptions::default()
    }
}

pub fn anonymous() -> CredentialStore {
    CredentialStore::new(FlagCredentials::default(), &BTreeMap::new(), Vec::new())
}

pub fn login(password: &str) -> CredentialStore {
    let flags =
        FlagCredentials { username: Some(USER.into()), password: Some(Secret::new(password)), ..Default::default() };
    CredentialStore::new(flags, &BTreeMap::new(), Vec::new())
}

pub fn connect(options: RegistryOptions, credentials: CredentialStore) -> Arc<RegistryClient> {
    Arc::new(RegistryClient::new(options, credentials).expect("a registry client"))
}

/// Deterministic bytes that differ from seed to seed (xorshift).
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Resolves the image's tag and fetches its manifest, as the engine does before any blob (the
/// source learns from a manifest which repository holds its blobs).
pub fn open_image(source: &RegistrySource, image: &SeededImage) -> (Descriptor, RawManifest) {
    let reference: Reference = image.reference.parse().expect("a reference");
    let descriptor = source.resolve(&reference).expect("resolve the tag");
    let manifest = source.manifest(&descriptor).expect("fetch the manifest");
    (descriptor, manifest)
}

pub fn layers(manifest: &RawManifest) -> Vec<Descriptor> {
    match manifest.kind() {
        ManifestKind::Image(image) => image.layers.clone(),
        ManifestKind::Index(_) => panic!("expected an image manifest"),
    }
}

/// Reads a blob to its end through the source's verifying reader; a failure comes back as the
/// engine's sinks see it (`StoreError::io` unwraps registry and verification errors).
pub fn read_blob(source: &RegistrySource, descriptor: &Descriptor) -> Result<Vec<u8>, StoreError> {
    let mut reader = source.blob(descriptor)?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| StoreError::io(format!("reading {}", descriptor.digest), e))?;
    Ok(bytes)
}

pub fn registry_error(err: &StoreError) -> &RegistryError {
    match err {
        StoreError::Registry(inner) => inner,
        other => panic!("expected a registry error, got {other:?}: {other}"),
    }
}

/// Requests for `digest` with this method.
pub fn requests_for(server: &FaultServer, method: &str, fragment: &str) -> Vec<Logged> {
    server.requests().into_iter().filter(|r| r.method == method && r.path.contains(fragment)).collect()
}

/// `Range: bytes=N-` → N.
pub fn range_start(request: &Logged) -> Option<u64> {
    request.header("range")?.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
}

/// Neither the password (plain or inside a basic header) nor any token the server issued
/// appears in `texts`.
pub fn assert_no_secrets<S: AsRef<str>>(server: &FaultServer, texts: &[S]) {
    let basic = STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let tokens = server.issued_tokens();
    for text in texts.iter().map(AsRef::as_ref) {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
        assert!(!text.contains(&basic), "the basic credentials leaked: {text}");
        for token in &tokens {
            assert!(!text.contains(token.as_str()), "a token leaked: {text}");
        }
    }
}

/// A blob reader over `bytes` claiming to be `digest`/`size`, as a source hands one out.
pub fn blob_reader(bytes: Vec<u8>, digest: Digest, size: u64) -> BlobReader<'static> {
    VerifyingReader::new(Box::new(Cursor::new(bytes)) as Box<dyn Read + Send>, digest, size, "test data")
}

pub fn descriptor_of(bytes: &[u8], media_type: &str) -> Descriptor {
    Descriptor::new(media_type, digest_of(bytes).parse().expect("a digest"), bytes.len() as u64)
}

pub fn repository(server: &FaultServer) -> Repository {
    Repository { registry: server.host(), path: REPO.into() }
}
