//! Executing a plan: blobs by N workers, largest first, each "open, copy, verify" retried as a
//! unit under the one retry policy (spec/cli.md "Registry flags", RF-2) when the failure is
//! retryable (never a digest mismatch); then manifests, children before parents; then the sink
//! publishes. Attempts the store already made inside a unit (a request retried, a body resumed)
//! count against the same budget, so a unit is tried at most `1 + retries` times in all.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::pool::run_all;
use super::report::{Items, Reporter};
use crate::model::{Digest, RawManifest};
use crate::store::registry::RetryPolicy;
use crate::store::{Plan, PlannedBlob, Sink, Source, StoreError};

/// How a transfer runs.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    pub workers: usize,
    /// The retry policy of the run (`--registry-retry-count`), shared with the registry client.
    pub retry: RetryPolicy,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions { workers: default_workers(), retry: RetryPolicy::default() }
    }
}

/// Workers for I/O-bound transfers: a few per core, at least 4.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).max(4))
}

/// What a transfer did.
#[derive(Debug, Clone, Default)]
pub struct TransferStats {
    pub blobs_copied: u64,
    pub blobs_skipped: u64,
    /// Blobs the sink took without their bytes (a cross-repository mount).
    pub blobs_linked: u64,
    pub bytes_copied: u64,
    pub manifests: u64,
    pub elapsed: Duration,
}

/// Why a transfer failed: every blob that failed, not only the first. Failures that say only
/// that the registry refused the credentials (401, 403: the same cause for every blob) are
/// said once, with how many blobs met it.
#[derive(Debug, thiserror::Error)]
#[error("{}", said(.failures))]
pub struct TransferError {
    pub failures: Vec<StoreError>,
}

/// The failures' lines, a refusal of the credentials by one repository said once.
fn said(failures: &[StoreError]) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut refusals: Vec<((String, String, u16), usize)> = Vec::new();
    for failure in failures {
        let refusal = match failure {
            StoreError::Registry(error) => error
                .status()
                .filter(|status| matches!(status, 401 | 403))
                .map(|status| (error.registry.clone(), error.repository.clone(), status)),
            _ => None,
        };
        match refusal {
            Some(key) => match refusals.iter_mut().find(|(known, _)| *known == key) {
                Some((_, more)) => *more += 1,
                None => {
                    refusals.push((key, 0));
                    lines.push(failure.to_string());
                }
            },
            None => lines.push(failure.to_string()),
        }
    }
    let more: usize = refusals.iter().map(|(_, more)| more).sum();
    if more > 0 {
        lines.push(format!("({more} more blob(s) refused the same way)"));
    }
    lines.join("\n")
}

impl TransferError {
    pub fn is_integrity(&self) -> bool {
        self.failures.iter().any(StoreError::is_integrity)
    }
}

impl From<StoreError> for TransferError {
    fn from(err: StoreError) -> Self {
        TransferError { failures: vec![err] }
    }
}

/// Copies everything in `plan` from `source` to `sink`.
pub fn transfer(
    source: &dyn Source,
    sink: &mut dyn Sink,
    plan: &Plan,
    options: &TransferOptions,
    reporter: &dyn Reporter,
) -> Result<TransferStats, TransferError> {
    let started = Instant::now();
    sink.prepare(plan)?;
    let mut jobs: Vec<&PlannedBlob> = plan.blobs.iter().collect();
    jobs.sort_by(|a, b| b.descriptor.size.cmp(&a.descriptor.size).then(a.descriptor.digest.cmp(&b.descriptor.digest)));
    reporter.phase("copying", Items::blobs(jobs.len()), plan.blob_bytes());

    let shared_sink: &dyn Sink = sink;
    let moved = Arc::new(AtomicU64::new(0));
    let outcomes = with_byte_ticker(&moved, reporter, || {
        run_all(&jobs, options.workers, true, |blob| copy_blob(source, shared_sink, blob, options, reporter, &moved))
    });
    let mut stats = TransferStats::default();
    let mut failures = Vec::new();
    for (blob, outcome) in jobs.iter().zip(outcomes) {
        match outcome {
            Some(Ok(BlobOutcome::Present)) => stats.blobs_skipped += 1,
            Some(Ok(BlobOutcome::Linked)) => stats.blobs_linked += 1,
            Some(Ok(BlobOutcome::Copied)) => {
                stats.blobs_copied += 1;
                stats.bytes_copied += blob.descriptor.size;
            }
            Some(Err(err)) => failures.push(err),
            None => {}
        }
    }
    if !failures.is_empty() {
        return Err(TransferError { failures });
    }
    stats.manifests = put_manifests(sink, plan, options.workers, reporter)?;
    sink.finish(plan)?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// Stores every manifest of the plan, each after all it points at. A sink that takes manifests
/// concurrently gets them wave by wave (a wave: the manifests whose children are all in earlier
/// waves), `workers` at a time; any other gets them one by one in the plan's order.
fn put_manifests(sink: &dyn Sink, plan: &Plan, workers: usize, reporter: &dyn Reporter) -> Result<u64, TransferError> {
    let put = |manifest: &RawManifest| {
        sink.put_manifest(manifest)?;
        reporter.item_done(&manifest.descriptor(), false);
        Ok::<(), StoreError>(())
    };
    if !sink.takes_manifests_concurrently() {
        for manifest in &plan.manifests {
            put(manifest)?;
        }
        return Ok(plan.manifests.len() as u64);
    }
    for wave in manifest_waves(&plan.manifests) {
        let failures: Vec<StoreError> = run_all(&wave, workers, true, |manifest| put(manifest))
            .into_iter()
            .flatten()
            .filter_map(Result::err)
            .collect();
        if !failures.is_empty() {
            return Err(TransferError { failures });
        }
    }
    Ok(plan.manifests.len() as u64)
}

/// `manifests` (children before parents) grouped so that every manifest comes in a later wave
/// than each manifest of the list it points at (children, and a referrer's subject).
fn manifest_waves(manifests: &[RawManifest]) -> Vec<Vec<&RawManifest>> {
    let mut wave_of: HashMap<Digest, usize> = HashMap::new();
    let mut waves: Vec<Vec<&RawManifest>> = Vec::new();
    for manifest in manifests {
        let wave = manifest
            .children()
            .iter()
            .filter_map(|child| wave_of.get(&child.digest))
            .map(|wave| wave + 1)
            .max()
            .unwrap_or(0);
        wave_of.insert(manifest.digest(), wave);
        if waves.len() <= wave {
            waves.resize_with(wave + 1, Vec::new);
        }
        waves[wave].push(manifest);
    }
    waves
}

/// How one blob reached the sink.
enum BlobOutcome {
    Present,
    Linked,
    Copied,
}

/// Copies one blob, unless the sink has it already or can take it without its bytes.
fn copy_blob(
    source: &dyn Source,
    sink: &dyn Sink,
    blob: &PlannedBlob,
    options: &TransferOptions,
    reporter: &dyn Reporter,
    moved: &Arc<AtomicU64>,
) -> Result<BlobOutcome, StoreError> {
    let descriptor = &blob.descriptor;
    if sink.has_blob(descriptor)? {
        moved.fetch_add(descriptor.size, Ordering::Relaxed);
        reporter.item_done(descriptor, true);
        return Ok(BlobOutcome::Present);
    }
    if sink.link_blob(descriptor)? {
        moved.fetch_add(descriptor.size, Ordering::Relaxed);
        reporter.item_done(descriptor, true);
        return Ok(BlobOutcome::Linked);
    }
    reporter.item_started(descriptor);
    let policy = options.retry;
    let mut attempts = 0;
    loop {
        let mut counted = 0;
        let result = source.blob(descriptor).and_then(|reader| {
            let mut reader = reader.with_progress(Arc::clone(moved));
            let put = sink.put_blob(descriptor, &mut reader);
            counted = reader.position();
            put
        });
        let err = match result {
            Ok(()) => {
                reporter.item_done(descriptor, false);
                return Ok(BlobOutcome::Copied);
            }
            Err(err) => err,
        };
        let Some(delay) = policy.after(&err, &mut attempts) else { return Err(err) };
        // The next attempt reads the blob from its start: take back what this one counted, so
        // the bytes are counted once (issue 17: a blob retried at 59% showed 159%). The ticker
        // reports only growth past what it already reported.
        let _ = moved.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| Some(now.saturating_sub(counted)));
        reporter.warn(&policy.retrying(format_args!("blob {}", descriptor.digest), attempts, &err));
        std::thread::sleep(delay);
    }
}

/// Runs `work` while a ticker thread passes the growth of `moved` to the reporter ten times a
/// second, so readers only bump an atomic counter on their hot path.
fn with_byte_ticker<T>(moved: &AtomicU64, reporter: &dyn Reporter, work: impl FnOnce() -> T) -> T {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let ticker = scope.spawn(|| {
            let mut reported = 0;
            loop {
                let finished = done.load(Ordering::Acquire);
                let now = moved.load(Ordering::Relaxed);
                if now > reported {
                    reporter.bytes(now - reported);
                    reported = now;
                }
                if finished {
                    return;
                }
                std::thread::park_timeout(Duration::from_millis(100));
            }
        });
        let result = work();
        done.store(true, Ordering::Release);
        ticker.thread().unpark();
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review s8 G10: a refusal of the credentials by one repository is said once, with how many
    /// more blobs met it (a copy printed four near-identical 401 lines); other failures each.
    #[test]
    fn a_refusal_of_the_credentials_is_said_once() {
        use crate::store::registry::{RegistryError, RegistryErrorKind};
        let failure = |operation: &str, status: u16| {
            StoreError::Registry(Box::new(RegistryError {
                registry: "r.example".into(),
                repository: "team/app".into(),
                operation: operation.into(),
                kind: RegistryErrorKind::Status { status, code: None, message: None, retry_after: None },
                attempts: 1,
            }))
        };
        let error = TransferError {
            failures: vec![
                failure("blob a", 401),
                failure("blob b", 401),
                failure("blob c", 404),
                failure("blob d", 401),
            ],
        };
        let lines: Vec<String> = error.to_string().lines().map(String::from).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("blob a") && lines[1].starts_with("blob c"), "{lines:?}");
        assert_eq!(lines[2], "(2 more blob(s) refused the same way)");
    }

    fn digest(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    fn image(config: u8, subject: Option<&RawManifest>) -> RawManifest {
        let subject = subject.map_or(String::new(), |s| {
            format!(
                r#","subject":{{"mediaType":"{}","digest":"{}","size":{}}}"#,
                s.media_type(),
                s.digest(),
                s.bytes().len()
            )
        });
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[]{subject}}}"#,
            digest(config)
        );
        RawManifest::parse(json.into_bytes(), None).unwrap()
    }

    fn index(children: &[&RawManifest]) -> RawManifest {
        let list: Vec<String> = children
            .iter()
            .map(|c| {
                format!(r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#, c.media_type(), c.digest(), c.bytes().len())
            })
            .collect();
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            list.join(",")
        );
        RawManifest::parse(json.into_bytes(), None).unwrap()
    }

    #[test]
    fn every_manifest_is_stored_in_a_wave_after_all_it_points_at() {
        let (a, b) = (image(1, None), image(2, None));
        let signature = image(3, Some(&a));
        let platforms = index(&[&a, &b]);
        let outer = index(&[&platforms, &signature]);
        let plan = [a.clone(), b.clone(), signature.clone(), platforms.clone(), outer.clone()];
        let digests = |wave: &Vec<&RawManifest>| wave.iter().map(|m| m.digest()).collect::<Vec<_>>();
        let waves: Vec<Vec<Digest>> = manifest_waves(&plan).iter().map(digests).collect();
        assert_eq!(
            waves,
            vec![vec![a.digest(), b.digest()], vec![signature.digest(), platforms.digest()], vec![outer.digest()]]
        );
    }
}
