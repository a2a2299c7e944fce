//! Import cost follows what the target lacks (issue 14 item 1; spec/cli.md "import", IM-1 and
//! IM-2), against a real registry: reads are counted through a source wrapper around the opened
//! archive (reads, not time), so a re-import is proven to read no blob the target holds.

mod cli;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cli::{ferry_at_home, json_of, text};
use ferry::engine::{NoReport, TransferOptions};
use ferry::model::{Descriptor, Digest, Reference, Repository};
use ferry::ops::archive::open_archive;
use ferry::ops::import::{ImportOptions, import_opened};
use ferry::store::registry::{CredentialStore, FlagCredentials, RegistryClient, RegistryOptions};
use ferry::store::{BlobReader, Source, StoreError};
use support::{Registry, Variant, write_image_layout};

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
    let layout = dir.join("layout");
    let mut layers = BTreeSet::new();
    for n in 0..images {
        let content = format!("image {n} of the incremental import test\n").repeat(200);
        let image = write_image_layout(&layout, &format!("app:v{n}"), &[("data.txt", content.as_bytes())]);
        layers.insert(image.layer_digest.parse().unwrap());
    }
    let archive = dir.join("images.tar");
    let output = ferry_at_home(dir)
        .args(["export", "-q", "--oci-layout"])
        .arg(&layout)
        .arg("-o")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    (archive, layers)
}

fn import_counting(
    archive_path: &Path,
    repository: &Repository,
) -> (Result<ferry::ops::import::ImportSummary, String>, BTreeSet<Digest>) {
    let archive = open_archive(archive_path, 4).unwrap();
    let counting = CountingSource { inner: &archive, opened: Mutex::new(Vec::new()) };
    let options = ImportOptions {
        transfer: TransferOptions { workers: 4, ..TransferOptions::default() },
        ..ImportOptions::default()
    };
    let result = import_opened("images.tar", &archive, &counting, client(), repository, &options, &NoReport)
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
