//! `ferry push`: flags and the summary.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::args::Global;
use super::exit::{Exit, Failure, fail};
use super::output::{self, human_bytes};
use super::progress::Progress;
use super::registry::RegistryFlags;
use ferry::engine::TransferOptions;
use ferry::model::Reference;
use ferry::ops::bundle::build::BuildOptions;
use ferry::ops::push::{PushOptions, push};

/// Build a bundle or image from files and push it (imgpkg's push), reproducibly.
///
/// -b builds a bundle: one -f directory must hold .imgpkg/images.yml at its top, and the lock
/// is checked now (every entry pinned by digest; every problem is listed), not when someone
/// relocates it later. -i builds a plain image and refuses a directory holding .imgpkg/.
///
/// The image has one gzip tar layer of the Docker type imgpkg accepts: entries in byte order,
/// mtime 0, owner 0:0, directories 0700, files with their owner's permission bits only (all
/// bits with --preserve-permissions), and a config with fixed dates and the bundle label. The
/// same files give the same digest on every run and machine. Symlinks, sockets, fifos and
/// devices are refused. The image is tagged with REF's tag (latest when none) and
/// sha256-<hex>.imgpkg, and the tag is read back and checked.
///
/// Examples:
///   ferry push -b registry.example.com/team/bundle:1.0 -f ./bundle
///   ferry push -b registry.example.com/team/bundle:1.0 -f ./config -f ./bundle-meta --lock-output bundle.lock.yml
///   ferry push -i registry.example.com/team/config:1.0 -f ./config -l org.example.team=platform
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(false))]
pub struct PushArgs {
    /// Push a bundle to this reference
    #[arg(short = 'b', long = "bundle", value_name = "REF", group = "what")]
    pub bundle: Option<String>,
    /// Push a plain image to this reference
    #[arg(short = 'i', long = "image", value_name = "REF", group = "what")]
    pub image: Option<String>,
    #[command(flatten)]
    pub build: BuildFlags,
    /// Write a BundleLock (-b) or ImagesLock (-i) naming what was pushed
    #[arg(long, value_name = "FILE", value_parser = super::registry::parse_output_file)]
    pub lock_output: Option<PathBuf>,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// How to build an image from files: shared by `push` and `export -f`, so both build the same
/// digest from the same files.
#[derive(Args, Debug, Default)]
pub struct BuildFlags {
    /// File or directory to include (repeatable); a directory's contents go at the layer root
    #[arg(short = 'f', long = "file", value_name = "PATH", group = "input")]
    pub files: Vec<PathBuf>,
    /// Relative path to leave out, matched exactly (repeatable)
    #[arg(long = "file-exclusion", value_name = "PATH", default_value = ".git")]
    pub file_exclusions: Vec<String>,
    /// Config label KEY=VALUE (repeatable)
    #[arg(short = 'l', long = "labels", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Keep group and other permission bits (only the owner's are kept by default)
    #[arg(long)]
    pub preserve_permissions: bool,
}

impl BuildFlags {
    pub fn options(&self, bundle: bool) -> BuildOptions {
        BuildOptions {
            paths: self.files.clone(),
            bundle,
            exclusions: self.file_exclusions.clone(),
            labels: self.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
            preserve_permissions: self.preserve_permissions,
        }
    }
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

impl PushArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let (target, bundle) = match (&self.bundle, &self.image) {
            (Some(bundle), _) => (bundle, true),
            (None, Some(image)) => (image, false),
            (None, None) => unreachable!("clap requires -b or -i"),
        };
        let reference = target.parse::<Reference>().map_err(|e| Failure::new(anyhow::Error::new(e), false))?;
        if reference.digest.is_some() {
            return Err(Failure::new(anyhow::anyhow!("{target}: push to a tag, not a digest"), false));
        }
        let options = PushOptions {
            build: self.build.options(bundle),
            transfer: TransferOptions { workers: global.workers(), retry: self.registry.retry_policy() },
            lock_output: self.lock_output.clone(),
        };
        let client = self.registry.client(global.workers()).map_err(|e| Failure::new(e, false))?;
        let progress = Progress::new(global.quiet);
        let result = push(&client, &reference, &options, &progress);
        progress.finish();
        let summary = result.map_err(fail)?;
        if self.json {
            output::json(&summary)?;
        } else if !global.quiet {
            output::note(&format!(
                "pushed {} {} ({} files, layer {}) in {:.1}s, tagged {}",
                if summary.bundle { "bundle" } else { "image" },
                summary.image,
                summary.files,
                human_bytes(summary.layer_bytes),
                summary.seconds,
                summary.tags.join(", ")
            ));
            if let Some(lock) = &summary.lock_output {
                output::note(&format!("wrote {lock}"));
            }
        }
        if !self.json {
            output::data(&summary.image)?;
        }
        Ok(Exit::Success)
    }
}
