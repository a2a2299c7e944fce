//! `ferry tag list` and `ferry tag resolve`.

use clap::{Args, Subcommand};

use super::args::Global;
use super::exit::{Exit, Failure};
use super::output;
use super::registry::RegistryFlags;
use ferry::model::{Reference, Repository};
use ferry::ops::tags;

/// Work with tags in a registry.
#[derive(Args, Debug)]
pub struct TagArgs {
    #[command(subcommand)]
    pub command: TagCommand,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

#[derive(Subcommand, Debug)]
pub enum TagCommand {
    List(TagListArgs),
    Resolve(TagResolveArgs),
}

/// List a repository's tags.
///
/// Tags ending in `.imgpkg` (the `sha256-<hex>.imgpkg` tags imgpkg and ferry write for every
/// artifact, and the `.image-locations.imgpkg` records) are hidden unless asked for.
///
/// Example: ferry tag list registry.example.com/team/bundle --digests
#[derive(Args, Debug)]
pub struct TagListArgs {
    /// Repository, e.g. registry.example.com/team/app (imgpkg's -i also works)
    #[arg(value_name = "REPO", required_unless_present = "image")]
    pub repository: Option<String>,
    #[arg(short = 'i', long = "image", hide = true, conflicts_with = "repository")]
    pub image: Option<String>,
    /// Show the digest each tag points at
    #[arg(long)]
    pub digests: bool,
    /// Include imgpkg/ferry internal tags (`*.imgpkg`)
    #[arg(long)]
    pub imgpkg_internal_tags: bool,
    /// Print JSON on stdout: [{"tag": .., "digest": ..}]
    #[arg(long)]
    pub json: bool,
}

/// Resolve a tag (or digest) to `REPO@sha256:..`.
///
/// Example: ferry tag resolve registry.example.com/team/bundle:v1
#[derive(Args, Debug)]
pub struct TagResolveArgs {
    /// Image reference, e.g. registry.example.com/team/app:v1 (imgpkg's -i also works)
    #[arg(value_name = "REF", required_unless_present = "image")]
    pub reference: Option<String>,
    #[arg(short = 'i', long = "image", hide = true, conflicts_with = "reference")]
    pub image: Option<String>,
}

impl TagArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let client = self.registry.client(global.workers()).map_err(|e| Failure::new(e, false))?;
        match &self.command {
            TagCommand::List(args) => {
                let text = args.repository.as_ref().or(args.image.as_ref()).expect("clap requires one");
                let repository = Repository::parse(text).map_err(|e| Failure::new(e, false))?;
                let listing =
                    tags::list(&client, &repository, args.imgpkg_internal_tags, args.digests, global.workers())
                        .map_err(|e| Failure::new(e, false))?;
                if args.json {
                    output::json(&listing)?;
                } else {
                    for info in &listing {
                        match &info.digest {
                            Some(digest) => output::data(&format!("{}\t{digest}", info.tag))?,
                            None => output::data(&info.tag)?,
                        }
                    }
                }
            }
            TagCommand::Resolve(args) => {
                let text = args.reference.as_ref().or(args.image.as_ref()).expect("clap requires one");
                let reference: Reference = text.parse().map_err(|e| Failure::new(anyhow::Error::new(e), false))?;
                let resolved = tags::resolve(&client, &reference).map_err(|e| Failure::new(e, false))?;
                output::data(&resolved.to_string())?;
            }
        }
        Ok(Exit::Success)
    }
}
