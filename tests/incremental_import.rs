//! Import cost follows what the target lacks (issue 14 item 1; spec/cli.md "import", IM-1 and
//! IM-2), against a real registry: reads are counted through a source wrapper around the opened
//! archive (reads, not time), so a re-import is proven to read no blob the target holds.

mod cli;
mod fault;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cli::{ferry_at_home, json_of, text};
use fault::harness::{TEST_LIMIT, bounded, content};
use fault::{Fault, FaultServer, Logged, Rule};
use ferry::engine::{NoReport, TransferOptions};
use ferry::model::{Descriptor, Digest, Reference, Repository};
use ferry::ops::archive::open_archive;
use ferry::ops::import::{ImportOptions, import_opened};
use ferry::store::registry::{
    BlobProbe, CredentialStore, FlagCredentials, RegistryClient, RegistryOptions, RegistrySink, UPLOAD_PROBE_MAX,
};
use ferry::store::{BlobReader, Sink, Source, StoreError};
use ferry::verify::VerifyingReader;
use support::{LayoutImage, Registry, Variant, write_image_layout};

/// A source that remembers the digest of every manifest and blob opened through it.
struct CountingSource<'a> {
    inner: &'a dyn Source,
    opened: Mutex<Vec<Digest>>,
}

impl CountingSource<'_> {
    fn opened(&self) -> BTreeSet<Digest> {
        self.opened.lock().unwrap().iter().copied().collect()
    }
}

impl Source for CountingSource<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        self.inner.resolve(reference)
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError> {
        self.opened.lock().unwrap().push(descriptor.digest);
        self.inner.blob(descriptor)
    }
}

fn client() -> Arc<RegistryClient> {
    let options = RegistryOptions { insecure: true, ..RegistryOptions::default() };
    let credentials = CredentialStore::new(FlagCredentials::default(), &Default::default(), Vec::new());
    Arc::new(RegistryClient::new(options, credentials).unwrap())
}

/// An archive of `images` one-layer images (each layer distinct), with the layer digests.
fn many_images(dir: &Path, images: usize) -> (PathBuf, BTreeSet<Digest>) {
    let contents: Vec<Vec<u8>> =
        (0..images).map(|n| format!("image {n} of the incremental import test\n").repeat(200).into_bytes()).collect();
    let (archive, written) = archive_of(dir, &contents);
    (archive, written.iter().map(|image| image.layer_digest.parse().unwrap()).collect())
}

/// An archive of one one-layer image per entry of `contents` (the file in its layer).
fn archive_of(dir: &Path, contents: &[Vec<u8>]) -> (PathBuf, Vec<LayoutImage>) {
    let layout = dir.join("layout");
    let written = contents
        .iter()
        .enumerate()
        .map(|(n, bytes)| write_image_layout(&layout, &format!("app:v{n}"), &[("data.txt", bytes)]))
        .collect();
    (export_layout(dir, &layout), written)
}

fn export_layout(dir: &Path, layout: &Path) -> PathBuf {
    let archive = dir.join("images.tar");
    let output =
        ferry_at_home(dir).args(["export", "-q", "--oci-layout"]).arg(layout).arg("-o").arg(&archive).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    archive
}

fn import_counting(
    archive_path: &Path,
    repository: &Repository,
) -> (Result<ferry::ops::import::ImportSummary, String>, BTreeSet<Digest>) {
    import_counting_with(archive_path, repository, client(), 4)
}

fn import_counting_with(
    archive_path: &Path,
    repository: &Repository,
    client: Arc<RegistryClient>,
    workers: usize,
) -> (Result<ferry::ops::import::ImportSummary, String>, BTreeSet<Digest>) {
    let archive = open_archive(archive_path, 4).unwrap();
    let counting = CountingSource { inner: &archive, opened: Mutex::new(Vec::new()) };
    let options = ImportOptions {
        transfer: TransferOptions { workers, ..TransferOptions::default() },
        ..ImportOptions::default()
    };
    let result = import_opened("images.tar", &archive, &counting, client, repository, &options, &NoReport)
        .map_err(|err| err.to_string());
    (result, counting.opened())
}

/// IM-2: a re-import into a target that holds everything reads no blob bytes (only manifests
/// and the configs that say whether an image is a bundle), and says what it did not read.
#[test]
fn a_reimport_reads_no_blob_the_target_holds() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let (archive, layers) = many_images(scratch.path(), 6);
    let repository = Repository::parse(&format!("{}/team/many", registry.host())).unwrap();

    let (first, opened) = import_counting(&archive, &repository);
    let first = first.unwrap();
    assert_eq!(first.published.blobs_uploaded, 12, "6 layers and 6 configs");
    // IM-1: every blob sent was hashed first, then read again while uploading.
    assert!(layers.is_subset(&opened), "a fresh import reads every layer");

    let (second, opened) = import_counting(&archive, &repository);
    let second = second.unwrap();
    assert!(opened.is_disjoint(&layers), "the re-import opened layers: {opened:?}");
    assert_eq!(second.published.blobs_uploaded, 0);
    assert_eq!(second.published.manifests_present, 6);
    assert_eq!(second.published.blobs_not_read, 12);
    assert_eq!(second.published.blobs_present, 12);
}

/// IM-2 with part of the content there: of an archive whose images partly exist in the target,
/// only the missing images' blobs are read; the CLI summary counts what was not read.
#[test]
fn an_import_reads_only_what_the_target_lacks() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let week1 = scratch.path().join("week1");
    let (archive1, layers1) = many_images(&week1, 3);
    let week2 = scratch.path().join("week2");
    let (archive2, layers2) = many_images(&week2, 5);
    assert!(layers1.is_subset(&layers2), "the first three images are the same");
    let repository = Repository::parse(&format!("{}/team/grow", registry.host())).unwrap();

    let (first, _) = import_counting(&archive1, &repository);
    first.unwrap();
    let (second, opened) = import_counting(&archive2, &repository);
    let second = second.unwrap();
    assert!(opened.is_disjoint(&layers1), "layers the target holds were opened");
    let new: BTreeSet<Digest> = layers2.difference(&layers1).copied().collect();
    assert!(new.is_subset(&opened));
    assert_eq!(second.published.blobs_uploaded, 4, "2 layers and 2 configs");
    assert_eq!(second.published.blobs_not_read, 6);

    // The same through the CLI: --json counts what was present and not read.
    let output = ferry_at_home(scratch.path())
        .arg("import")
        .arg(&archive2)
        .args(["--to-repo", &repository.to_string(), "--json"])
        .args(registry.access_flags())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = json_of(&output);
    assert_eq!(summary["blobsUploaded"], 0);
    assert_eq!(summary["blobsNotRead"], 10);
    assert_eq!(summary["manifestsPresent"], 5);
}

// --- IM-3: requests per blob ---------------------------------------------------------------

/// The requests the server saw that name `digest` (in their path or query).
fn requests_naming(requests: &[Logged], digest: &str) -> Vec<(String, String)> {
    let encoded = digest.replace(':', "%3A");
    requests
        .iter()
        .filter(|r| r.path.contains(digest) || r.query.contains(digest) || r.query.contains(&encoded))
        .map(|r| (r.method.clone(), if r.query.contains("mount=") { "mount".into() } else { r.path.clone() }))
        .collect()
}

/// The blobs (configs and layers) of the images, with their sizes, read from the layout.
fn blobs_of(dir: &Path, images: &[LayoutImage]) -> Vec<(String, usize)> {
    let size =
        |digest: &str| std::fs::metadata(dir.join("layout/blobs/sha256").join(&digest[7..])).unwrap().len() as usize;
    images
        .iter()
        .flat_map(|image| [image.config_digest.clone(), image.layer_digest.clone()])
        .map(|digest| (digest.clone(), size(&digest)))
        .collect()
}

/// IM-3 (issue 14 item 1): a fresh import spends two requests per small blob on the wire, the
/// `POST` that asks for it by opening its upload and the `PUT` that sends it into that session
/// (no `HEAD`, no second `POST`); a blob over [`UPLOAD_PROBE_MAX`] is asked with `HEAD`.
#[test]
fn a_fresh_import_spends_two_requests_per_small_blob() {
    bounded(TEST_LIMIT, || {
        let scratch = tempfile::tempdir().unwrap();
        let mut contents: Vec<Vec<u8>> = (0..4).map(|n| format!("small image {n}\n").repeat(50).into_bytes()).collect();
        // Incompressible, so its gzip layer stays over the limit.
        contents.push(content(14, UPLOAD_PROBE_MAX as usize + 4096));
        let (archive, images) = archive_of(scratch.path(), &contents);
        let server = FaultServer::start();
        let repository = Repository::parse(&format!("{}/team/app", server.host())).unwrap();

        let (summary, _) = import_counting_with(&archive, &repository, client(), 4);
        assert_eq!(summary.unwrap().published.blobs_uploaded, 10);
        let requests = server.requests();
        let mut large = 0;
        for (digest, size) in blobs_of(scratch.path(), &images) {
            let named = requests_naming(&requests, &digest);
            if size as u64 <= UPLOAD_PROBE_MAX {
                assert_eq!(named.len(), 2, "blob {digest} ({size} bytes): {named:?}");
                assert_eq!(named[0], ("POST".into(), "mount".into()), "{digest}: asked by opening its upload");
                assert_eq!(named[1].0, "PUT", "{digest}: sent into that session");
            } else {
                large += 1;
                let methods: Vec<&str> = named.iter().map(|(method, _)| method.as_str()).collect();
                assert_eq!(methods, ["HEAD", "PUT"], "blob {digest} ({size} bytes): {named:?}");
            }
        }
        assert_eq!(large, 1, "one layer is over the limit");
        // The only POST not naming a blob is the large blob's upload start.
        let plain_posts = requests.iter().filter(|r| r.method == "POST" && !r.query.contains("mount=")).count();
        assert_eq!(plain_posts, 1, "no second POST for a small blob");
        assert!(requests.iter().all(|r| r.method != "DELETE"), "no session opened in vain");
    });
}

/// IM-2 with IM-3: a small blob the target holds under no manifest is found by that one `POST`
/// (`201`) and neither read nor sent.
#[test]
fn a_held_blob_under_no_manifest_costs_one_post_and_is_not_read() {
    bounded(TEST_LIMIT, || {
        let scratch = tempfile::tempdir().unwrap();
        let contents: Vec<Vec<u8>> = (0..2).map(|n| format!("held image {n}\n").repeat(50).into_bytes()).collect();
        let (archive, images) = archive_of(scratch.path(), &contents);
        let server = FaultServer::start();
        let held = &images[0].layer_digest;
        let bytes = std::fs::read(scratch.path().join("layout/blobs/sha256").join(&held[7..])).unwrap();
        assert_eq!(&server.put_blob("team/app", bytes), held);
        let repository = Repository::parse(&format!("{}/team/app", server.host())).unwrap();

        let (summary, opened) = import_counting_with(&archive, &repository, client(), 4);
        let summary = summary.unwrap();
        assert!(!opened.contains(&held.parse().unwrap()), "the held layer was read");
        assert_eq!(summary.published.blobs_uploaded, 3);
        assert_eq!(summary.published.blobs_not_read, 1);
        let named = requests_naming(&server.requests(), held);
        assert_eq!(named, [("POST".to_string(), "mount".to_string())]);
    });
}

/// IM-3: a registry that answers the asking `POST` with an error is asked with `HEAD` from then
/// on, and the import still sends every blob once.
#[test]
fn a_registry_refusing_the_asking_post_is_asked_with_head() {
    bounded(TEST_LIMIT, || {
        let scratch = tempfile::tempdir().unwrap();
        let contents: Vec<Vec<u8>> = (0..3).map(|n| format!("refused image {n}\n").repeat(50).into_bytes()).collect();
        let (archive, images) = archive_of(scratch.path(), &contents);
        let server = FaultServer::start();
        server.add(Rule::new(Some("POST"), "/blobs/uploads/", Fault::Status(405)));
        let repository = Repository::parse(&format!("{}/team/app", server.host())).unwrap();

        // One worker, so that no other question is in flight when the refusal arrives.
        let (summary, _) = import_counting_with(&archive, &repository, client(), 1);
        assert_eq!(summary.unwrap().published.blobs_uploaded, 6);
        let requests = server.requests();
        let mounts = requests.iter().filter(|r| r.method == "POST" && r.query.contains("mount=")).count();
        assert_eq!(mounts, 1, "asked by POST after the refusal");
        for (digest, _) in blobs_of(scratch.path(), &images) {
            assert!(server.blob("team/app", &digest).is_some(), "{digest} was not sent");
        }
        let heads = requests.iter().filter(|r| r.method == "HEAD" && r.path.contains("/blobs/sha256:")).count();
        assert_eq!(heads, 6, "every blob asked with HEAD, the refused one too");
    });
}

/// IM-3 against docker-registry (distribution), whose answers the design relies on: a mount
/// from the repository itself answers `202` with a session for a missing blob, which takes the
/// blob's `PUT`, and `201` once the repository holds it; a blob linked only in another
/// repository of the same registry is not found this way (the repository must hold it).
#[test]
fn docker_registry_answers_a_mount_from_the_repository_itself() {
    let registry = Registry::start(Variant::Plain);
    let client = client();
    let here =
        RegistrySink::new(Arc::clone(&client), Repository::parse(&format!("{}/team/here", registry.host())).unwrap());
    let other =
        RegistrySink::new(Arc::clone(&client), Repository::parse(&format!("{}/team/other", registry.host())).unwrap());
    let bytes = b"a small blob asked for by opening its upload\n".to_vec();
    let digest: Digest = ferry::model::sha256_digest(&bytes);
    let descriptor = Descriptor::new("application/octet-stream", digest, bytes.len() as u64);

    let Ok(BlobProbe::Missing { upload: Some(upload) }) = here.probe_blob(&descriptor) else {
        panic!("a missing blob opens a session")
    };
    let mut reader: BlobReader<'static> =
        VerifyingReader::new(Box::new(std::io::Cursor::new(bytes.clone())), digest, bytes.len() as u64, "test data");
    here.put_blob_in(&descriptor, &mut reader, upload).unwrap();
    assert_eq!(here.probe_blob(&descriptor).unwrap(), BlobProbe::Present);
    assert!(here.has_blob(&descriptor).unwrap());

    let Ok(BlobProbe::Missing { upload: Some(upload) }) = other.probe_blob(&descriptor) else {
        panic!("a blob linked only in another repository is missing here")
    };
    other.cancel_upload(&upload);
    assert!(!other.has_blob(&descriptor).unwrap());
}
