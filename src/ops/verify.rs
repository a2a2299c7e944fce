//! `ferry verify`: the offline integrity check of an archive (spec/cli.md "verify").
//!
//! Every blob entry is hashed in parallel against its name; every descriptor reachable from
//! `index.json` must be present with its size (non-distributable layers the archive records as
//! left out excepted); every problem is reported, not only the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::artifacts_of_index;
use crate::engine::{Graph, Reporter, WalkOptions, walk};
use crate::model::{Digest, media, sha256_digest};
use crate::store::layout_tar::LayoutTarSource;
use crate::store::{Source, StoreError};
use crate::verify::{BlobCheck, hash_all};

/// The outcome of a verification.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub archive: String,
    /// `sha256` of `index.json`: the archive's identity (spec/archive.md AR-6).
    pub identity: Option<Digest>,
    pub ok: bool,
    pub artifacts: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
}

/// Verifies the archive at `path`. An archive that cannot be opened for a reason other than
/// its content (it does not exist, permission denied) is an `Err`; everything about the
/// content is in the report.
pub fn verify_archive(path: &Path, workers: usize, reporter: &dyn Reporter) -> Result<VerifyReport, StoreError> {
    check_archive(path, workers, reporter).map(|(report, _)| report)
}

/// [`verify_archive`], also handing back the opened archive and its walked graph when the
/// archive could be indexed, so a caller that goes on (import) reads the metadata once.
pub fn check_archive(
    path: &Path,
    workers: usize,
    reporter: &dyn Reporter,
) -> Result<(VerifyReport, Option<(LayoutTarSource, Graph)>), StoreError> {
    let mut report = VerifyReport {
        archive: path.display().to_string(),
        identity: None,
        ok: false,
        artifacts: 0,
        blobs: 0,
        bytes: 0,
        failures: Vec::new(),
        warnings: Vec::new(),
    };
    let archive = match LayoutTarSource::open(path) {
        Ok(archive) => archive,
        Err(err) if err.is_integrity() || matches!(err, StoreError::Invalid { .. }) => {
            report.failures.push(err.to_string());
            return Ok((report, None));
        }
        Err(err) => return Err(err),
    };
    report.identity = Some(sha256_digest(archive.index_bytes()));
    report.artifacts = archive.index().manifests.len();

    // One failure message per subject: the first (most specific) wins.
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let entries: Vec<_> = archive.blob_entries().collect();
    report.blobs = entries.len();
    report.bytes = entries.iter().map(|(_, entry)| entry.size).sum();
    let checks: Vec<BlobCheck<'_>> = entries
        .iter()
        .map(|(digest, entry)| BlobCheck {
            digest: *digest,
            size: entry.size,
            open: Box::new(|| Ok(Box::new(archive.open_entry(entry)) as Box<dyn std::io::Read>)),
        })
        .collect();
    reporter.phase("hashing", checks.len() as u64, report.bytes);
    let outcomes = hash_all(&checks, archive.name(), &|size| reporter.bytes(size));
    for ((digest, _), outcome) in entries.iter().zip(outcomes) {
        if let Err(failure) = outcome {
            failures.insert(digest.to_string(), failure.to_string());
        }
    }

    let options = WalkOptions { workers, include_non_distributable: true };
    let graph = walk(&archive, artifacts_of_index(archive.index()), &options);
    for problem in &graph.problems {
        let subject = problem.subject.map_or_else(|| problem.message.clone(), |d| d.to_string());
        failures.entry(subject).or_insert_with(|| problem.message.clone());
    }
    let recorded_omitted: BTreeSet<String> = archive.index().omitted_layers().into_iter().collect();
    for (digest, (descriptor, _)) in &graph.blobs {
        let subject = digest.to_string();
        match archive.entry(digest) {
            Some(entry) if entry.size != descriptor.size => {
                failures.entry(subject).or_insert_with(|| {
                    format!(
                        "blob {digest}: a descriptor says {} bytes but the archive entry holds {} (AR-R9)",
                        descriptor.size, entry.size
                    )
                });
            }
            Some(_) => {}
            None if media::is_non_distributable(&descriptor.media_type) && recorded_omitted.contains(&subject) => {
                report.warnings.push(format!("non-distributable layer {digest} was left out at export, as recorded"));
            }
            None => {
                failures
                    .entry(subject)
                    .or_insert_with(|| format!("blob {digest} is referenced but missing from the archive"));
            }
        }
    }
    let referenced: BTreeSet<Digest> = graph.manifests.keys().chain(graph.blobs.keys()).copied().collect();
    for (digest, _) in &entries {
        if !referenced.contains(digest) {
            report.warnings.push(format!("blob {digest} is not referenced by any artifact"));
        }
    }
    report.failures = failures.into_values().collect();
    report.ok = report.failures.is_empty();
    // The hashing jobs and the entry list borrow the archive; it is handed back after them.
    drop(checks);
    drop(entries);
    Ok((report, Some((archive, graph))))
}
