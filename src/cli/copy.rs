//! `ferry copy`: imgpkg's spelling of export (`--to-tar`) and import (`--tar ... --to-repo`),
//! so scripts written for imgpkg keep working, and the copy from registries straight into one
//! repository (`-b|-i|--lock ... --to-repo`).

use std::path::PathBuf;

use clap::Args;

use super::args::Global;
use super::exit::{Exit, Failure, fail};
use super::export::{ExportArgs, ReferrerFlags, RegistryInput};
use super::import::{ImportArgs, print_publication};
use super::output;
use super::progress::Progress;
use super::registry::RegistryFlags;
use ferry::engine::TransferOptions;
use ferry::model::Repository;
use ferry::ops::copy::{CopyOptions, copy_to_repo};

/// Copy a bundle or images into an archive or a repository, or an archive into a repository (imgpkg's copy).
///
/// `ferry copy -b REF --to-tar FILE` is `ferry export -b REF -o FILE`, and
/// `ferry copy --tar FILE --to-repo REPO` is `ferry import FILE --to-repo REPO`; flags keep
/// imgpkg's names.
///
/// `ferry copy -b REF --to-repo REPO` copies from the registries straight into one repository,
/// with no archive between: every blob is verified as it passes, blobs already in another
/// repository of the target registry are mounted instead of uploaded, and the tags, the
/// sha256-<hex>.image-locations.imgpkg records and --lock-output are those of ferry import.
///
/// Examples:
///   ferry copy -b registry.example.com/team/bundle:1.0 --to-tar bundle.tar
///   ferry copy --tar bundle.tar --to-repo registry.internal/team/bundle --lock-output lock.yml
///   ferry copy -b registry.example.com/team/bundle:1.0 --to-repo registry.example.com/prod/bundle
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
#[command(group = clap::ArgGroup::new("input").required(true).multiple(false))]
#[command(group = clap::ArgGroup::new("to").required(true).multiple(false))]
pub struct CopyArgs {
    #[command(flatten)]
    pub from: RegistryInput,
    /// Archive to copy from (written by ferry export or copy --to-tar)
    #[arg(long = "tar", value_name = "FILE", group = "input")]
    pub tar: Option<PathBuf>,
    /// Write an archive
    #[arg(long, value_name = "FILE", group = "to")]
    pub to_tar: Option<PathBuf>,
    /// Push into this one repository
    #[arg(long, value_name = "REPO", group = "to")]
    pub to_repo: Option<String>,
    /// With --to-repo: write a BundleLock or ImagesLock of the new location
    #[arg(long, value_name = "FILE", value_parser = super::registry::parse_output_file)]
    pub lock_output: Option<PathBuf>,
    /// Carry non-distributable layers too (left out by default)
    #[arg(long)]
    pub include_non_distributable_layers: bool,
    /// With --to-tar: finish an interrupted copy, reusing what FILE.partial holds
    #[arg(long)]
    pub resume: bool,
    /// With --to-repo: name each image's and bundle's tag after the repository it came from,
    /// <repo-path>-sha256-<hex>.imgpkg, instead of sha256-<hex>.imgpkg (as imgpkg's flag)
    #[arg(long)]
    pub repo_based_tags: bool,
    #[command(flatten)]
    pub referrers: ReferrerFlags,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

impl CopyArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let usage = |message: &str| Failure { error: anyhow::anyhow!("{message}"), exit: Exit::Usage };
        self.from.check_platform()?;
        match (&self.tar, &self.to_tar, &self.to_repo) {
            (None, Some(to_tar), None) => {
                if self.lock_output.is_some() || self.repo_based_tags {
                    return Err(usage("--lock-output and --repo-based-tags go with --to-repo"));
                }
                let export = ExportArgs {
                    from: self.from.clone(),
                    oci_layout: None,
                    imgpkg_tar: None,
                    build: Default::default(),
                    volume_size: None,
                    bases: Vec::new(),
                    output: to_tar.clone(),
                    include_non_distributable_layers: self.include_non_distributable_layers,
                    resume: self.resume,
                    referrers: self.referrers.clone(),
                    json: self.json,
                    registry: self.registry.clone(),
                };
                export.run(global)
            }
            (None, None, Some(to_repo)) => {
                if self.resume {
                    return Err(usage("--resume goes with --to-tar"));
                }
                self.registry_to_repo(to_repo, global)
            }
            (Some(tar), None, Some(to_repo)) => {
                // --include-non-distributable-layers is taken, as imgpkg takes it here: an import
                // uploads every layer the archive holds, so it changes nothing.
                if self.resume {
                    return Err(usage("--resume goes with --to-tar"));
                }
                let import = ImportArgs {
                    archive: tar.clone(),
                    to_repo: to_repo.clone(),
                    lock_output: self.lock_output.clone(),
                    identity: None,
                    signatures: Default::default(),
                    repo_based_tags: self.repo_based_tags,
                    json: self.json,
                    registry: self.registry.clone(),
                };
                import.run(global)
            }
            _ => Err(usage("--tar copies into a repository: use --to-repo")),
        }
    }

    /// From the registries straight into `to_repo`.
    fn registry_to_repo(&self, to_repo: &str, global: &Global) -> Result<Exit, Failure> {
        let repository = Repository::parse(to_repo).map_err(|e| Failure::new(e, false))?;
        let client = self.registry.client(global.workers()).map_err(|e| Failure::new(e, false))?;
        let (source, roots, expect) = self.from.request()?.resolve(&client).map_err(fail)?;
        let options = CopyOptions {
            transfer: TransferOptions { workers: global.workers(), retry: self.registry.retry_policy() },
            include_non_distributable: self.include_non_distributable_layers,
            lock_output: self.lock_output.clone(),
            referrers: self.referrers.choice(),
            tag_scheme: super::import::tag_scheme(self.repo_based_tags),
        };
        let progress = Progress::new(global.quiet);
        let result = copy_to_repo(&source, roots, expect, &client, &repository, &options, &progress);
        progress.finish();
        let summary = match result {
            Ok(summary) => summary,
            Err(err) => {
                if let (true, ferry::ops::copy::CopyError::Walk(walk)) = (self.json, &err) {
                    output::json(&walk.report())?;
                }
                return Err(fail(err));
            }
        };
        if self.json {
            output::json(&summary)?;
        } else if !global.quiet {
            let sources = summary.sources.join(", ");
            print_publication("copied", &sources, &summary.repository, &summary.published, summary.seconds);
        }
        Ok(Exit::Success)
    }
}
