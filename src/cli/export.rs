//! `ferry export`: flags, source selection and the summary.

use std::path::PathBuf;

use clap::Args;

use super::args::Global;
use super::exit::{Exit, Failure, fail};
use super::output::{self, human_bytes};
use super::progress::Progress;
use super::push::BuildFlags;
use super::registry::RegistryFlags;
use ferry::engine::TransferOptions;
use ferry::model::Reference;
use ferry::model::platform::PlatformFilter;
use ferry::ops::export::{self, ExportOptions};
use ferry::ops::input::{ExportInput, RegistryRequest};
use ferry::ops::referrers::ReferrerChoice;

/// Write a bundle or images, with everything they reference, into one OCI-layout archive.
///
/// -b exports an imgpkg bundle with every image its lock lists (nested bundles and every
/// platform of an index included); -i exports one image or index; --lock exports what a
/// BundleLock or ImagesLock names; --oci-layout archives a local OCI image layout directory;
/// --imgpkg-tar turns a tarball of imgpkg copy --to-tar into the archive ferry export -b writes
/// of the same bundle;
/// -f builds a bundle from files on disk (exactly as ferry push -b would, so importing the
/// archive gives the bundle the digest a push would have) and exports it with every image its
/// lock names, with no staging registry.
/// Every blob is verified as it arrives, written once however many images share it, by
/// parallel workers straight into its place in the archive. The archive is written as
/// ARCHIVE.partial and renamed only when complete; the same input always gives a
/// byte-identical archive.
///
/// An interrupted export (Ctrl-C, a lost network, a full disk) keeps ARCHIVE.partial: run the
/// same command again with --resume to hash what it holds and fetch only what is missing.
///
/// Examples:
///   ferry export -b registry.example.com/team/bundle:1.0 -o bundle.tar
///   ferry export -b registry.example.com/team/bundle:1.0 -o bundle.tar --resume
///   ferry export -i registry.example.com/team/app@sha256:... -o app.tar
///   ferry export -i registry.example.com/team/app:1.0 --platform linux/arm64 -o app-arm64.tar
///   ferry export --oci-layout ./layout -o layout.tar
///   ferry export --imgpkg-tar imgpkg-bundle.tar -o bundle.tar
///   ferry export -f ./bundle -o bundle.tar
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
#[command(group = clap::ArgGroup::new("input").required(true).multiple(false))]
pub struct ExportArgs {
    #[command(flatten)]
    pub from: RegistryInput,
    /// OCI image layout directory to archive
    #[arg(long, value_name = "DIR", group = "input")]
    pub oci_layout: Option<PathBuf>,
    /// imgpkg tarball (written by imgpkg copy --to-tar) to turn into a ferry archive, every
    /// digest unchanged
    #[arg(long, value_name = "FILE", group = "input")]
    pub imgpkg_tar: Option<PathBuf>,
    #[command(flatten)]
    pub build: BuildFlags,
    /// Archive to write
    #[arg(short, long, value_name = "ARCHIVE")]
    pub output: PathBuf,
    /// Also carry layers marked non-distributable (foreign), which are left out by default
    #[arg(long)]
    pub include_non_distributable_layers: bool,
    /// Continue an interrupted export of the same content: every blob ARCHIVE.partial already
    /// holds is hashed again and kept when intact; only missing or damaged blobs are fetched,
    /// and the archive comes out identical to an uninterrupted one. A partial file written for
    /// other content is not trusted: the export says why and starts over.
    #[arg(long)]
    pub resume: bool,
    /// Split the archive into volumes of at most SIZE (e.g. 4GiB for FAT32, 4480MB for a DVD):
    /// ARCHIVE.001, ARCHIVE.002, ... and ARCHIVE.volumes.json listing each one's size and
    /// sha256. Concatenated, the volumes are the archive; ferry reads them in place.
    #[arg(long, value_name = "SIZE", value_parser = super::registry::parse_size)]
    pub volume_size: Option<u64>,
    #[command(flatten)]
    pub referrers: ReferrerFlags,
    /// Write a delta: leave out the layers FILE holds (an earlier archive, itself possibly a
    /// delta, or a `ferry inventory` of the target) and record them; manifests, indexes and
    /// configs are always written. Repeatable.
    #[arg(long = "base", value_name = "FILE")]
    pub bases: Vec<PathBuf>,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// Which signatures, attestations, SBOMs and OCI 1.1 referrers travel (spec/archive.md AR-RF1).
#[derive(Args, Debug, Default, Clone)]
pub struct ReferrerFlags {
    /// Signatures, attestations, SBOMs and OCI referrers to carry with every image: all (the
    /// default), signatures, or none
    #[arg(long, value_name = "WHICH", value_parser = ["all", "signatures", "none"])]
    pub referrers: Option<String>,
    /// imgpkg's spelling: carry cosign signatures (ferry carries them by default)
    #[arg(long, conflicts_with = "referrers")]
    pub cosign_signatures: bool,
}

impl ReferrerFlags {
    pub fn choice(&self) -> ReferrerChoice {
        match self.referrers.as_deref() {
            Some("none") => ReferrerChoice::None,
            Some("signatures") => ReferrerChoice::Signatures,
            _ => ReferrerChoice::All,
        }
    }
}

impl ExportArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let options = ExportOptions {
            transfer: TransferOptions { workers: global.workers(), retry: self.registry.retry_policy() },
            include_non_distributable: self.include_non_distributable_layers,
            resume: self.resume,
            volume_size: self.volume_size,
            referrers: self.referrers.choice(),
            bases: self
                .bases
                .iter()
                .map(|base| ferry::ops::delta::load_base(base, global.workers(), true))
                .collect::<Result<_, _>>()
                .map_err(fail)?,
        };
        self.from.check_platform()?;
        // Before any registry is asked anything: a wrong -o must not cost a download.
        export::check_destination(&self.output).map_err(fail)?;
        let progress = Progress::new(global.quiet);
        let input = if !self.build.files.is_empty() {
            let client = self.registry.client(global.workers()).map_err(|e| Failure::new(e, false))?;
            ExportInput::Files { client, build: self.build.options(true) }
        } else if let Some(tarball) = &self.imgpkg_tar {
            ExportInput::ImgpkgTar(tarball.clone())
        } else if let Some(layout) = &self.oci_layout {
            ExportInput::OciLayout(layout.clone())
        } else {
            let client = self.registry.client(global.workers()).map_err(|e| Failure::new(e, false))?;
            ExportInput::Registry { client, request: self.from.request()? }
        };
        let result = export::export_from(&input, &self.output, &options, &progress);
        progress.finish();
        let summary = match result {
            Ok(summary) => summary,
            Err(err) => {
                // A script asking for JSON gets the failure as JSON too, with every name the
                // message only summarises (spec/cli.md "export").
                if self.json {
                    output::json(&err.report())?;
                }
                return Err(fail(err));
            }
        };
        if self.json {
            output::json(&summary)?;
        } else if !global.quiet {
            if summary.reused_blobs > 0 {
                let partial = if summary.volumes > 0 {
                    format!("the partial volumes of {}", summary.archive)
                } else {
                    format!("{}.partial", summary.archive)
                };
                output::note(&format!(
                    "resumed: {} blobs ({}) were already intact in {partial}",
                    summary.reused_blobs,
                    human_bytes(summary.reused_bytes),
                ));
            }
            let written = if summary.volumes > 0 {
                format!("{} volumes of {} with {}.volumes.json", summary.volumes, summary.archive, summary.archive)
            } else {
                summary.archive.clone()
            };
            let referrers = &summary.referrers;
            let carried = if referrers.total() > 0 {
                format!(
                    " ({} signatures, {} attestations, {} SBOMs, {} other referrers)",
                    referrers.signatures, referrers.attestations, referrers.sboms, referrers.other_referrers
                )
            } else {
                String::new()
            };
            output::note(&format!(
                "wrote {written} ({}): {} bundles, {} images{carried}, {} manifests, {} blobs; dedup saved {} in {:.1}s",
                human_bytes(summary.archive_bytes),
                summary.bundles,
                summary.images,
                summary.manifests,
                summary.blobs,
                human_bytes(summary.dedup_saved_bytes),
                summary.seconds
            ));
            if let Some(delta) = &summary.delta {
                let bases: Vec<String> = delta.bases.iter().map(|b| format!("{} {}", b.name, b.identity)).collect();
                output::note(&format!(
                    "delta: relies on {} blobs ({}) held by {}",
                    delta.relied_on_blobs,
                    human_bytes(delta.relied_on_bytes),
                    bases.join(", ")
                ));
            }
            output::data(&format!("identity {}", summary.identity))?;
        }
        Ok(Exit::Success)
    }
}

/// What to take from the registries: `-b`, `-i` or `--lock`, in the command's one group of
/// inputs (export and copy share it, so both read the same flags the same way).
#[derive(Args, Debug, Default, Clone)]
pub struct RegistryInput {
    /// Bundle, e.g. registry.example.com/team/bundle:1.0
    #[arg(short = 'b', long = "bundle", value_name = "REF", group = "input")]
    pub bundle: Option<String>,
    /// Image or index
    #[arg(short = 'i', long = "image", value_name = "REF", group = "input")]
    pub image: Option<String>,
    /// BundleLock or ImagesLock file naming what to take
    #[arg(long = "lock", value_name = "FILE", group = "input")]
    pub lock: Option<PathBuf>,
    /// With -i of a multi-platform index: take only its image for this platform (e.g.
    /// linux/amd64, linux/arm/v7), under that image's own digest. Not for bundles or locks: they
    /// pin whole indexes by digest, and a registry refuses an index missing platforms.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<PlatformFilter>,
}

impl RegistryInput {
    /// `--platform` goes with `-i` only (a usage error otherwise, before anything is fetched).
    pub fn check_platform(&self) -> Result<(), Failure> {
        if self.platform.is_none() || self.image.is_some() {
            return Ok(());
        }
        let message = "--platform goes with -i: bundles and locks pin whole indexes by digest, and a registry \
                       refuses an index whose other platforms are missing";
        Err(Failure { error: anyhow::anyhow!(message), exit: Exit::Usage })
    }

    /// What `-b`, `-i` or `--lock` names, as the setting ops resolves.
    pub fn request(&self) -> Result<RegistryRequest, Failure> {
        let parse = |text: &str| text.parse::<Reference>().map_err(|e| Failure::new(anyhow::Error::new(e), false));
        Ok(match (&self.lock, &self.bundle, &self.image) {
            (Some(lock), _, _) => RegistryRequest::Lock(lock.clone()),
            (None, Some(bundle), _) => RegistryRequest::Bundle(parse(bundle)?),
            (None, None, Some(image)) => {
                RegistryRequest::Image { reference: parse(image)?, platform: self.platform.clone() }
            }
            (None, None, None) => unreachable!("clap requires one input"),
        })
    }
}
