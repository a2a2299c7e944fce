//! `ferry import`: flags and the summary.

use std::path::PathBuf;

use clap::Args;

use super::args::Global;
use super::exit::{Exit, Failure, fail};
use super::keys::SignatureFlags;
use super::output::{self, human_bytes};
use super::progress::Progress;
use super::registry::RegistryFlags;
use ferry::engine::TransferOptions;
use ferry::model::{Digest, Repository};
use ferry::ops::import::{ImportOptions, import_archive};
use ferry::ops::publish::relocate::{Publication, TagScheme};
use ferry::ops::stream::import_stream;

/// Push an archive into one repository, verified, tagged and recorded the imgpkg way.
///
/// The archive's structure and manifests are checked and every blob that will be sent is
/// hashed first (nothing is pushed from a damaged archive); the repository is asked first, top
/// down, and what it holds is neither read nor hashed (ferry verify proves a whole archive).
/// Every blob the repository lacks is uploaded from the archive in place, manifests follow,
/// children first, and tags last: sha256-<hex>.imgpkg on every bundle and image, the root's
/// original tag, and a sha256-<hex>.image-locations.imgpkg record for every bundle, which is
/// how imgpkg finds the images of a relocated bundle. Every tag is then read back and checked.
/// The registries named in the archive are never contacted. Re-running is cheap and changes
/// nothing.
///
/// An archive in volumes is read in place from its table, any volume or its name. With `-`,
/// the archive is read from standard input in one pass (cat bundle.tar.* | ferry import - ...,
/// or from a tape): each blob is verified and uploaded as it streams past, and manifests and
/// tags are pushed only once the whole stream has arrived intact; a cut or damaged stream
/// pushes no manifest and no tag.
///
/// Examples:
///   ferry import bundle.tar --to-repo registry.internal/team/bundle --lock-output bundle.lock.yml
///   ferry import bundle.tar.volumes.json --to-repo registry.internal/team/bundle
///   cat bundle.tar.0* | ferry import - --to-repo registry.internal/team/bundle
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ImportArgs {
    /// Archive written by `ferry export` (a file, a volume table, any volume, or - for stdin)
    pub archive: PathBuf,
    /// The one repository everything goes into, e.g. registry.internal/team/bundle
    #[arg(long, value_name = "REPO")]
    pub to_repo: String,
    /// Write a BundleLock (bundle archives) or ImagesLock pointing at the new location
    #[arg(long, value_name = "FILE", value_parser = super::registry::parse_output_file)]
    pub lock_output: Option<PathBuf>,
    /// Refuse the archive unless its identity (sha256 of its index.json) is this one, as the
    /// export printed it
    #[arg(long, value_name = "sha256:HEX")]
    pub identity: Option<Digest>,
    #[command(flatten)]
    pub signatures: SignatureFlags,
    /// Name each image's and bundle's tag after the repository it came from,
    /// <repo-path>-sha256-<hex>.imgpkg, instead of sha256-<hex>.imgpkg (as imgpkg's flag)
    #[arg(long)]
    pub repo_based_tags: bool,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// The one-line account of a publication into a repository (import and copy), and the lock
/// file written.
pub fn print_publication(verb: &str, from: &str, repository: &str, published: &Publication, seconds: f64) {
    let mounted =
        if published.blobs_mounted > 0 { format!(", {} mounted", published.blobs_mounted) } else { String::new() };
    // IM-2: what the target held and the import never read is said, so a fast re-import is
    // not mistaken for a verified one (`ferry verify` proves a whole archive).
    let not_read = if published.blobs_not_read > 0 || published.manifests_present > 0 {
        format!(
            " ({} not read, {}; {} manifests present with their subtrees)",
            published.blobs_not_read,
            human_bytes(published.bytes_not_read),
            published.manifests_present
        )
    } else {
        String::new()
    };
    output::note(&format!(
        "{verb} {from} into {repository}: {} blobs uploaded ({}){mounted}, {} already present{not_read}, {} manifests, {} tags, {} locations records in {seconds:.1}s",
        published.blobs_uploaded,
        human_bytes(published.bytes_uploaded),
        published.blobs_present,
        published.manifests,
        published.tags.len(),
        published.locations_records,
    ));
    if let Some(lock) = &published.lock_output {
        output::note(&format!("wrote {lock}"));
    }
}

impl ImportArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let repository = Repository::parse(&self.to_repo).map_err(|e| Failure::new(e, false))?;
        let client = self.registry.client(global.workers()).map_err(|e| Failure::new(e, false))?;
        let options = ImportOptions {
            transfer: TransferOptions { workers: global.workers(), retry: self.registry.retry_policy() },
            lock_output: self.lock_output.clone(),
            identity: self.identity,
            signatures: self.signatures.options()?,
            tag_scheme: tag_scheme(self.repo_based_tags),
        };
        let progress = Progress::new(global.quiet);
        let result = if self.archive.as_os_str() == "-" {
            self.signatures.refuse_stream()?;
            let input = super::stdin_archive()?;
            import_stream(input, client, &repository, &options, &progress)
        } else {
            import_archive(&self.archive, client, &repository, &options, &progress)
        };
        progress.finish();
        let summary = result.map_err(fail)?;
        if self.json {
            output::json(&summary)?;
        } else if !global.quiet {
            print_publication("imported", &summary.archive, &summary.repository, &summary.published, summary.seconds);
        }
        Ok(Exit::Success)
    }
}

/// `--repo-based-tags` as the tag scheme of an import or copy.
pub fn tag_scheme(repo_based_tags: bool) -> TagScheme {
    if repo_based_tags { TagScheme::RepoBased } else { TagScheme::Digest }
}
