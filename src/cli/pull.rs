//! `ferry pull`: flags and the summary.

use std::path::PathBuf;

use clap::Args;

use super::args::Global;
use super::exit::{Exit, Failure, fail};
use super::output::{self, human_bytes};
use super::registry::RegistryFlags;
use ferry::model::Reference;
use ferry::ops::export::Expect;
use ferry::ops::pull::{PullOptions, PullSummary, pull_from_archive, pull_from_registry};

/// Write a bundle's or an image's files into a new directory (imgpkg's pull).
///
/// -b writes the bundle's files (its .imgpkg/ directory included); -i writes an image's layers,
/// in order. Every entry is checked first: names that would leave DIR ('..', absolute paths,
/// links pointing outside), devices, fifos and setuid bits never reach the disk. DIR must not
/// exist or be empty; it appears only when the pull is complete.
///
/// A bundle pulled from a registry gets .imgpkg/images.yml pointed at its own repository when
/// its images are there (imgpkg's rule: the ImageLocations record that ferry import and copy
/// write, or every image found there by digest); otherwise the lock stays as carried and
/// ferry says why. --recursive adds every nested bundle under .imgpkg/bundles/sha256-<hex>/.
///
/// --tar pulls from an archive with no registry at all: REF is matched by digest, by the
/// reference it was exported from, or by its name in the archive.
///
/// Examples:
///   ferry pull -b registry.internal/team/bundle:1.0 -o ./bundle
///   ferry pull -b registry.internal/team/bundle:1.0 -o ./bundle --recursive
///   ferry pull --lock bundle.lock.yml -o ./bundle   (the BundleLock import --lock-output wrote)
///   ferry pull --tar bundle.tar -b registry.example.com/team/bundle:1.0 -o ./bundle
///   ferry pull -i registry.internal/team/config@sha256:... -o ./config
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(false))]
pub struct PullArgs {
    /// Bundle to pull
    #[arg(short = 'b', long = "bundle", value_name = "REF", group = "what")]
    pub bundle: Option<String>,
    /// Image to pull (its layers, in order)
    #[arg(short = 'i', long = "image", value_name = "REF", group = "what")]
    pub image: Option<String>,
    /// BundleLock naming the bundle to pull (as imgpkg's pull --lock; an ImagesLock names no
    /// one thing to pull)
    #[arg(long, value_name = "FILE", group = "what", conflicts_with = "tar")]
    pub lock: Option<PathBuf>,
    /// New directory to write into (must not exist, or be empty)
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Also write every nested bundle under DIR/.imgpkg/bundles/sha256-<hex>/
    #[arg(short, long)]
    pub recursive: bool,
    /// Pull from this archive (written by ferry export) instead of a registry
    #[arg(long, value_name = "ARCHIVE")]
    pub tar: Option<PathBuf>,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

impl PullArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let locked;
        let (wanted, expect) = match (&self.bundle, &self.image, &self.lock) {
            (Some(bundle), _, _) => (bundle.as_str(), Expect::Bundle),
            (None, Some(image), _) => (image.as_str(), Expect::Image),
            (None, None, Some(lock)) => {
                locked = bundle_of_lock(lock)?;
                (locked.as_str(), Expect::Bundle)
            }
            (None, None, None) => unreachable!("clap requires -b, -i or --lock"),
        };
        let options = PullOptions { recursive: self.recursive, workers: global.workers() };
        let summary = match &self.tar {
            Some(archive) => {
                let source = ferry::ops::archive::open_archive(archive, global.workers()).map_err(fail)?;
                let artifacts = ferry::ops::artifacts_of_index(source.index());
                let cannot = "pulling an image that uses them fails here: pull it from the registry the delta was imported into, or from the base archive";
                if let Some(notice) = ferry::ops::delta::delta_notice(&source, cannot) {
                    super::output::warn(&notice);
                }
                pull_from_archive(&source, artifacts, wanted, expect, &self.output, &options)
            }
            None => {
                let reference = wanted.parse::<Reference>().map_err(|e| Failure::new(anyhow::Error::new(e), false))?;
                let client = self.registry.client(global.workers()).map_err(|e| Failure::new(e, false))?;
                pull_from_registry(&client, &reference, expect, &self.output, &options)
            }
        }
        .map_err(fail)?;
        self.print(&summary, global.quiet)?;
        Ok(Exit::Success)
    }

    fn print(&self, summary: &PullSummary, quiet: bool) -> Result<(), Failure> {
        if self.json {
            return output::json(summary);
        }
        if quiet {
            return Ok(());
        }
        let digest = summary.digest.to_string();
        let named = if summary.reference.contains(&digest) {
            summary.reference.clone()
        } else {
            format!("{} ({digest})", summary.reference)
        };
        output::note(&format!(
            "pulled {named} into {}: {} files, {}",
            summary.output,
            summary.files,
            human_bytes(summary.bytes)
        ));
        for bundle in &summary.bundles {
            let place = if bundle.path.is_empty() { "the bundle".to_string() } else { bundle.path.clone() };
            match (&bundle.lock.repository, &bundle.lock.reason) {
                (Some(repository), _) if bundle.lock.rewritten => {
                    output::note(&format!("{place}: .imgpkg/images.yml points at {repository}"))
                }
                (_, Some(reason)) => output::note(&format!("{place}: .imgpkg/images.yml kept as carried: {reason}")),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The bundle reference a BundleLock names (`pull --lock`): its image, pinned by digest.
fn bundle_of_lock(path: &std::path::Path) -> Result<String, Failure> {
    let what = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| Failure::new(anyhow::anyhow!("reading {what}: {e}"), false))?;
    let lock = ferry::model::lock::BundleLock::parse(&text, &what).map_err(|e| {
        Failure::new(
            anyhow::anyhow!("{e} (pull --lock takes a BundleLock, as ferry import --lock-output writes)"),
            false,
        )
    })?;
    let reference = lock.reference(&what).map_err(|e| Failure::new(anyhow::Error::new(e), false))?;
    Ok(reference.to_string())
}
