//! `ferry copy`: imgpkg's spelling of export (`--to-tar`) and import (`--tar ... --to-repo`),
//! so scripts written for imgpkg keep working.

use std::path::PathBuf;

use clap::Args;

use super::args::Global;
use super::exit::{Exit, Failure};
use super::export::ExportArgs;
use super::import::ImportArgs;

/// Copy a bundle or images into an archive, or an archive into a repository (imgpkg's copy).
///
/// `ferry copy -b REF --to-tar FILE` is `ferry export -b REF -o FILE`, and
/// `ferry copy --tar FILE --to-repo REPO` is `ferry import FILE --to-repo REPO`; flags keep
/// imgpkg's names. Copying straight from one registry to another is not supported yet: export,
/// then import.
///
/// Examples:
///   ferry copy -b registry.example.com/team/bundle:1.0 --to-tar bundle.tar
///   ferry copy --tar bundle.tar --to-repo registry.internal/team/bundle --lock-output lock.yml
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
#[command(group = clap::ArgGroup::new("from").required(true).multiple(false))]
#[command(group = clap::ArgGroup::new("to").required(true).multiple(false))]
pub struct CopyArgs {
    /// Bundle to copy
    #[arg(short = 'b', long = "bundle", value_name = "REF", group = "from")]
    pub bundle: Option<String>,
    /// Image or index to copy
    #[arg(short = 'i', long = "image", value_name = "REF", group = "from")]
    pub image: Option<String>,
    /// BundleLock or ImagesLock naming what to copy
    #[arg(long = "lock", value_name = "FILE", group = "from")]
    pub lock: Option<PathBuf>,
    /// Archive to copy from (written by ferry export or copy --to-tar)
    #[arg(long = "tar", value_name = "FILE", group = "from")]
    pub tar: Option<PathBuf>,
    /// Write an archive
    #[arg(long, value_name = "FILE", group = "to")]
    pub to_tar: Option<PathBuf>,
    /// Push into this one repository
    #[arg(long, value_name = "REPO", group = "to")]
    pub to_repo: Option<String>,
    /// With --to-repo: write a BundleLock or ImagesLock of the new location
    #[arg(long, value_name = "FILE")]
    pub lock_output: Option<PathBuf>,
    /// With --to-tar: carry non-distributable layers too
    #[arg(long)]
    pub include_non_distributable_layers: bool,
    /// With --to-tar: finish an interrupted copy, reusing what FILE.partial holds
    #[arg(long)]
    pub resume: bool,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

impl CopyArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let usage = |message: &str| Failure { error: anyhow::anyhow!("{message}"), exit: Exit::Usage };
        match (&self.tar, &self.to_tar, &self.to_repo) {
            (None, Some(to_tar), None) => {
                if self.lock_output.is_some() {
                    return Err(usage("--lock-output goes with --to-repo"));
                }
                let export = ExportArgs {
                    bundle: self.bundle.clone(),
                    image: self.image.clone(),
                    lock: self.lock.clone(),
                    oci_layout: None,
                    output: to_tar.clone(),
                    include_non_distributable_layers: self.include_non_distributable_layers,
                    resume: self.resume,
                    json: self.json,
                };
                export.run(global)
            }
            (Some(tar), None, Some(to_repo)) => {
                if self.resume || self.include_non_distributable_layers {
                    return Err(usage("--resume and --include-non-distributable-layers go with --to-tar"));
                }
                let import = ImportArgs {
                    archive: tar.clone(),
                    to_repo: to_repo.clone(),
                    lock_output: self.lock_output.clone(),
                    json: self.json,
                };
                import.run(global)
            }
            (Some(_), Some(_), _) => Err(usage("--tar copies into a repository: use --to-repo")),
            _ => Err(usage(
                "copying from one registry to another is not supported yet: run `ferry export ... -o FILE` then `ferry import FILE --to-repo REPO`",
            )),
        }
    }
}
