//! Archives read from a stream in one pass (`ferry verify -`, `ferry import -`; spec/cli.md
//! "Streams"): nothing seeks and nothing is copied to disk. Small blobs (manifests, configs,
//! bundle locks: up to 4 MiB each, 64 MiB in all) are kept in memory for the walk; every other
//! blob is verified as it streams past and, by import, handed on to the registry. What is handed
//! on is guarded here, since it leaves before the graph is checked: `oci-layout` and `index.json`
//! must come before any blob (AR-W1 gives that order), and a blob is handed on only when the
//! manifests kept so far reach it as a config or layer ([`reachable`]). Only when the stream has
//! ended, complete and verified, is the graph checked and anything that names content (a
//! manifest, a tag) pushed.

mod reachable;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Instant;

use super::import::{ImportError, ImportOptions, ImportSummary};
use super::publish::relocate::{PublishOptions, publish};
use super::verify::{Unhashed, VerifyReport, check_graph, identity_mismatch};
use crate::engine::{Graph, Items, Reporter};
use crate::model::layout::{
    INDEX_FILE, LayoutIndex, MAX_INDEX_BYTES, MAX_OCI_LAYOUT_BYTES, OCI_LAYOUT_FILE, check_oci_layout,
};
use crate::model::manifest::MAX_MANIFEST_BYTES;
use crate::model::{Descriptor, Digest, Reference, Repository, sha256_digest};
use crate::store::layout_tar::stream::TarStream;
use crate::store::registry::{RegistryClient, RegistrySink, RetryPolicy};
use crate::store::tar::header::{Deviation, Trailer};
use crate::store::{BlobReader, Sink, Source, StoreError, digest_of_blob_path, resolve_in_layout};
use crate::verify::VerifyingReader;
use reachable::{Reach, Reachable};

/// The most bytes of small blobs kept in memory for the walk.
const RETAINED_TOTAL: u64 = 64 << 20;
/// How a stream is named in messages.
pub const STREAM_NAME: &str = "standard input";

/// What arrived through the stream.
pub struct Streamed {
    index: LayoutIndex,
    index_bytes: Vec<u8>,
    /// Headers and padding not as ferry writes them, and what followed the end (AR-R12).
    deviations: Vec<Deviation>,
    trailer: Trailer,
    /// Small blobs, kept for the walk (and uploaded from here by import).
    retained: HashMap<Digest, Vec<u8>>,
    retained_bytes: u64,
    /// Every blob that arrived verified, with its size.
    arrived: BTreeMap<Digest, u64>,
    bytes: u64,
}

/// A stream that failed: why, and what had arrived before.
#[derive(Debug, thiserror::Error)]
#[error("{cause}\n{blobs} blob(s), {bytes} bytes, had arrived verified before that; no manifest and no tag was pushed")]
pub struct StreamError {
    pub cause: StoreError,
    pub blobs: usize,
    pub bytes: u64,
}

impl Source for Streamed {
    fn name(&self) -> &str {
        STREAM_NAME
    }

    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        resolve_in_layout(self, &self.index, reference, |digest| Ok(self.arrived.get(&digest).copied()))
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError> {
        let Some(bytes) = self.retained.get(&descriptor.digest) else {
            // NotFound reads "<store>: <what> not found", so `what` is only the thing's name
            // (issue 17: it once read "... it is not in the stream not found").
            if self.arrived.contains_key(&descriptor.digest) {
                return Err(StoreError::Invalid {
                    store: STREAM_NAME.into(),
                    reason: format!(
                        "blob {} streamed past without being kept (it is large, or the 64 MiB kept for metadata \
                         was used up)",
                        descriptor.digest
                    ),
                });
            }
            return Err(StoreError::NotFound {
                store: STREAM_NAME.into(),
                what: format!("blob {}", descriptor.digest),
            });
        };
        let reader: Box<dyn Read + Send> = Box::new(io::Cursor::new(bytes.clone()));
        Ok(VerifyingReader::new(reader, descriptor.digest, descriptor.size, STREAM_NAME))
    }
}

/// Sees `index.json` (parsed, and its bytes) as soon as it arrives; an error stops the stream.
pub type OnIndex<'a> = dyn Fn(&LayoutIndex, &[u8]) -> Result<(), StoreError> + 'a;

/// Takes a blob too large to keep, with its verifying reader, which it must read to the end (or
/// leave: the rest is read and verified by the stream); an error stops the stream.
pub type PassOn<'a> = dyn FnMut(&Descriptor, &mut BlobReader<'_>) -> Result<(), StoreError> + 'a;

/// Reads the whole stream. `on_index` sees `index.json` as soon as it arrives. With `pass_on`,
/// each blob too large to keep is handed to it, and the stream is refused, before anything is
/// handed on, at a blob that comes before `oci-layout` and `index.json` or that nothing which
/// came before it reaches as a config or layer (see the module documentation). Without, large
/// blobs are only verified, in whatever order they come.
pub fn read_stream(
    input: impl Read + Send,
    on_index: &OnIndex<'_>,
    pass_on: Option<&mut PassOn<'_>>,
    reporter: &dyn Reporter,
) -> Result<Streamed, StreamError> {
    let mut streamed = Streamed {
        index: LayoutIndex::new(Vec::new(), BTreeMap::new()),
        index_bytes: Vec::new(),
        deviations: Vec::new(),
        trailer: Trailer::FERRYS,
        retained: HashMap::new(),
        retained_bytes: 0,
        arrived: BTreeMap::new(),
        bytes: 0,
    };
    let mut stream = TarStream::new(input, STREAM_NAME);
    let outcome = read_entries(&mut stream, &mut streamed, on_index, pass_on, reporter)
        .and_then(|()| stream.read_trailer().map(|trailer| streamed.trailer = trailer));
    streamed.deviations = stream.deviations().to_vec();
    match outcome {
        Ok(()) => Ok(streamed),
        Err(cause) => Err(StreamError { cause, blobs: streamed.arrived.len(), bytes: streamed.bytes }),
    }
}

fn read_entries<R: Read + Send>(
    stream: &mut TarStream<R>,
    streamed: &mut Streamed,
    on_index: &OnIndex<'_>,
    mut pass_on: Option<&mut PassOn<'_>>,
    reporter: &dyn Reporter,
) -> Result<(), StoreError> {
    let (mut saw_layout, mut saw_index) = (false, false);
    // Followed only when blobs are handed on; from index.json, which then comes first.
    let mut reachable: Option<Reachable> = None;
    let invalid = |reason: String| StoreError::Invalid { store: STREAM_NAME.into(), reason };
    while let Some(entry) = stream.next_entry()? {
        let read_small = |stream: &mut TarStream<R>, limit: u64| -> Result<Vec<u8>, StoreError> {
            if entry.size > limit {
                return Err(invalid(format!(
                    "{} is {} bytes, over its {limit}-byte limit (AR-R7)",
                    entry.name, entry.size
                )));
            }
            let mut bytes = Vec::with_capacity(entry.size as usize);
            stream.data().read_to_end(&mut bytes).map_err(|e| StoreError::io(format!("reading {}", entry.name), e))?;
            Ok(bytes)
        };
        match entry.name.as_str() {
            OCI_LAYOUT_FILE => {
                let bytes = read_small(stream, MAX_OCI_LAYOUT_BYTES)?;
                check_oci_layout(&bytes, OCI_LAYOUT_FILE).map_err(|e| invalid(e.to_string()))?;
                saw_layout = true;
            }
            INDEX_FILE => {
                let bytes = read_small(stream, MAX_INDEX_BYTES)?;
                streamed.index = LayoutIndex::parse(&bytes, INDEX_FILE).map_err(|e| invalid(e.to_string()))?;
                streamed.index_bytes = bytes;
                saw_index = true;
                on_index(&streamed.index, &streamed.index_bytes)?;
                if pass_on.is_some() {
                    reachable = Some(Reachable::new(&streamed.index, &streamed.retained));
                }
            }
            name => {
                let digest = digest_of_blob_path(name).expect("entry names were validated");
                if pass_on.is_some() && !(saw_layout && saw_index) {
                    let missing = match (saw_layout, saw_index) {
                        (false, false) => format!("{OCI_LAYOUT_FILE} and {INDEX_FILE}"),
                        (true, _) => INDEX_FILE.to_string(),
                        (false, true) => OCI_LAYOUT_FILE.to_string(),
                    };
                    return Err(invalid(blob_before_metadata(&digest, &missing)));
                }
                let descriptor = Descriptor::new("application/octet-stream", digest, entry.size);
                let data: Box<dyn Read + Send + '_> = Box::new(stream.data());
                let mut reader = VerifyingReader::new(data, digest, entry.size, STREAM_NAME);
                let keep = entry.size <= MAX_MANIFEST_BYTES && streamed.retained_bytes + entry.size <= RETAINED_TOTAL;
                let context = || format!("reading blob {digest}");
                if keep {
                    let mut bytes = Vec::with_capacity(entry.size as usize);
                    reader.read_to_end(&mut bytes).map_err(|e| StoreError::io(context(), e))?;
                    streamed.retained_bytes += entry.size;
                    streamed.retained.insert(digest, bytes);
                    if let Some(reachable) = &mut reachable {
                        reachable.kept(digest, &streamed.retained);
                    }
                } else {
                    if let (Some(pass_on), Some(reachable)) = (pass_on.as_mut(), &reachable) {
                        match reachable.reach(&digest) {
                            Reach::Blob => pass_on(&descriptor, &mut reader)?,
                            Reach::Manifest => return Err(invalid(manifest_not_kept(&digest, entry.size))),
                            Reach::Unknown => return Err(invalid(unreached_blob(&digest, entry.size))),
                        }
                    }
                    io::copy(&mut reader, &mut io::sink()).map_err(|e| StoreError::io(context(), e))?;
                }
                streamed.arrived.insert(digest, entry.size);
                streamed.bytes += entry.size;
                reporter.bytes(entry.size);
            }
        }
    }
    if !saw_layout || !saw_index {
        let missing = if saw_layout { INDEX_FILE } else { OCI_LAYOUT_FILE };
        return Err(invalid(format!("the stream holds no {missing}: it is not an OCI image layout archive")));
    }
    Ok(())
}

/// Why a stream whose blob `digest` comes before `missing` is not imported.
fn blob_before_metadata(digest: &Digest, missing: &str) -> String {
    format!(
        "blob {digest} comes before {missing} in the stream: `ferry import -` uploads blobs as they stream past, \
         so it needs oci-layout and index.json before any blob, as ferry writes them (spec/archive.md AR-W1); \
         nothing was uploaded. Import the archive from a file instead (`ferry import ARCHIVE --to-repo REPO`)"
    )
}

/// Why a stream is not imported past a large blob nothing that came before it reaches.
fn unreached_blob(digest: &Digest, size: u64) -> String {
    format!(
        "blob {digest} ({size} bytes) is reached by nothing that came before it in the stream, so it was not \
         uploaded: in an archive ferry wrote, every manifest comes before the blobs (AR-W1), so nothing \
         references it (the archive was changed after export); an archive whose manifests come after their \
         blobs must be imported from a file instead (`ferry import ARCHIVE --to-repo REPO`)"
    )
}

/// Why a stream is not imported past a manifest too large to keep for the walk.
fn manifest_not_kept(digest: &Digest, size: u64) -> String {
    format!(
        "manifest {digest} ({size} bytes) could not be kept for the walk: a manifest over {MAX_MANIFEST_BYTES} \
         bytes is refused (AR-R7), and one past the {RETAINED_TOTAL} bytes kept for metadata must be imported \
         from a file instead (`ferry import ARCHIVE --to-repo REPO`)"
    )
}

/// The graph checks of a verification over what arrived: failures and warnings into `report`.
fn check_streamed(streamed: &Streamed, workers: usize, report: &mut VerifyReport) -> Graph {
    let mut failures = BTreeMap::new();
    let unhashed = Unhashed {
        index: &streamed.index,
        index_bytes: &streamed.index_bytes,
        deviations: &streamed.deviations,
        trailer: streamed.trailer,
        imgpkg: false,
    };
    let graph = check_graph(streamed, unhashed, &streamed.arrived, workers, &mut failures, &mut report.warnings);
    report.failures.extend(failures.into_values());
    report.ok = report.failures.is_empty();
    graph
}

fn fill_report(report: &mut VerifyReport, streamed: &Streamed) {
    report.identity = Some(sha256_digest(&streamed.index_bytes));
    report.artifacts = streamed.index.manifests.iter().filter(|d| !super::delta::is_delta_entry(d)).count();
    report.blobs = streamed.arrived.len();
    report.bytes = streamed.bytes;
}

/// `ferry verify -`: every blob hashed as it streams past, then the graph checked.
pub fn verify_stream(input: impl Read + Send, workers: usize, reporter: &dyn Reporter) -> VerifyReport {
    let mut report = VerifyReport::empty(STREAM_NAME.to_string());
    reporter.phase("verifying the stream", Items::unknown(), 0);
    let streamed = match read_stream(input, &|_, _| Ok(()), None, reporter) {
        Ok(streamed) => streamed,
        Err(err) => {
            report
                .failures
                .push(format!("{}; {} blob(s), {} bytes, had arrived verified", err.cause, err.blobs, err.bytes));
            return report;
        }
    };
    fill_report(&mut report, &streamed);
    check_streamed(&streamed, workers, &mut report);
    report
}

/// Uploads a blob as it streams past. While none of its bytes has been read from the stream, a
/// retryable failure can be retried (under the run's one policy, RF-2); once the stream has
/// moved on, the bytes are gone and the failure ends the import.
fn upload_streamed(
    sink: &RegistrySink,
    policy: RetryPolicy,
    descriptor: &Descriptor,
    reader: &mut BlobReader<'_>,
    reporter: &dyn Reporter,
) -> Result<(), StoreError> {
    let mut attempts = 0;
    loop {
        let err = match sink.put_blob(descriptor, reader) {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        // Only a blob none of whose bytes have been read can be sent again from a stream.
        let delay = policy.after(&err, &mut attempts).filter(|_| reader.position() == 0);
        let Some(delay) = delay else { return Err(err) };
        reporter.warn(&policy.retrying(format_args!("blob {}", descriptor.digest), attempts, &err));
        std::thread::sleep(delay);
    }
}

/// `ferry import - --to-repo REPO`: large blobs are uploaded as they stream past, each only once
/// the manifests before it reach it (those the repository has are verified and skipped); once the stream has ended complete and verified,
/// the rest is published exactly as an import from a file: small blobs from memory, manifests
/// children first, tags, ImageLocations records, the tag check and `--lock-output`.
pub fn import_stream(
    input: impl Read + Send,
    client: Arc<RegistryClient>,
    repository: &Repository,
    options: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let sink = RegistrySink::new(Arc::clone(&client), repository.clone());
    let (mut streamed_uploads, mut streamed_bytes) = (0u64, 0u64);
    let streamed_delta = std::cell::Cell::new(false);
    // Checked as soon as index.json arrives, before any upload (read_stream refuses a blob
    // before it).
    let check_index = |index: &LayoutIndex, bytes: &[u8]| -> Result<(), StoreError> {
        if let Some(expected) = &options.identity {
            if let Some(mismatch) = identity_mismatch(Some(&sha256_digest(bytes)), expected) {
                return Err(StoreError::Invalid { store: STREAM_NAME.into(), reason: mismatch });
            }
        }
        // DL-5 asks the target for what a delta relies on before anything is pushed; that
        // needs the delta's record, which a stream reaches only after blobs went by.
        if index.manifests.iter().any(super::delta::is_delta_entry) {
            streamed_delta.set(true);
            return Err(StoreError::Invalid { store: STREAM_NAME.into(), reason: "a delta".into() });
        }
        let layers = index.omitted_layers();
        if layers.is_empty() {
            return Ok(());
        }
        Err(StoreError::Invalid {
            store: STREAM_NAME.into(),
            reason: format!(
                "the archive was exported without its non-distributable layers ({}); re-export with --include-non-distributable-layers",
                layers.join(", ")
            ),
        })
    };
    reporter.phase("streaming", Items::unknown(), 0);
    let streamed = read_stream(
        input,
        &check_index,
        Some(&mut |descriptor: &Descriptor, reader: &mut BlobReader<'_>| {
            if sink.has_blob(descriptor)? {
                return Ok(());
            }
            // A body that failed because the stream itself broke (cut short, unreadable) is
            // the stream's failure, not the registry's, whatever the HTTP client called it.
            upload_streamed(&sink, client.retry_policy(), descriptor, reader, reporter).map_err(|err| {
                match (reader.source_failure(), &err) {
                    (Some(cause), StoreError::Registry(_)) => {
                        StoreError::io(format!("reading blob {} from {STREAM_NAME}", descriptor.digest), cause)
                    }
                    _ => err,
                }
            })?;
            streamed_uploads += 1;
            streamed_bytes += descriptor.size;
            Ok(())
        }),
        reporter,
    );
    // A registry failure is not damage to the stream (RF-4): it gets its own error and exit code.
    let streamed = match streamed {
        Ok(streamed) => streamed,
        Err(_) if streamed_delta.get() => return Err(ImportError::StreamedDelta),
        Err(err) if matches!(err.cause, StoreError::Registry(_)) => {
            return Err(ImportError::Interrupted {
                cause: Box::new(err.cause),
                blobs_verified: err.blobs,
                blobs_uploaded: streamed_uploads,
                bytes_uploaded: streamed_bytes,
            });
        }
        Err(err) => {
            return Err(ImportError::Integrity { archive: STREAM_NAME.into(), failures: vec![err.to_string()] });
        }
    };

    let mut report = VerifyReport::empty(STREAM_NAME.to_string());
    fill_report(&mut report, &streamed);
    let graph = check_streamed(&streamed, options.transfer.workers, &mut report);
    if !report.ok {
        return Err(ImportError::Integrity { archive: STREAM_NAME.into(), failures: report.failures });
    }
    let publish_options = PublishOptions {
        transfer: options.transfer.clone(),
        lock_output: options.lock_output.clone(),
        tag_scheme: options.tag_scheme,
        ..PublishOptions::default()
    };
    let mut published = publish(&streamed, &graph, &client, repository, &publish_options, reporter)?;
    published.blobs_uploaded += streamed_uploads;
    published.bytes_uploaded += streamed_bytes;
    published.blobs_present = published.blobs_present.saturating_sub(streamed_uploads);
    Ok(ImportSummary {
        archive: "-".to_string(),
        repository: repository.to_string(),
        identity: sha256_digest(&streamed.index_bytes),
        published,
        seconds: started.elapsed().as_secs_f64(),
    })
}
