//! `ferry describe`: flags and the printed tree.

use std::path::PathBuf;

use clap::Args;

use super::args::Global;
use super::exit::{Exit, Failure, fail};
use super::output::{self, human_bytes, shown};
use super::registry::RegistryFlags;
use ferry::model::Reference;
use ferry::ops::describe::{Node, describe_archive, describe_in_registry};

/// Show a bundle's tree: nested bundles and images, where each lives and where it came from.
///
/// Walks the bundle's lock, and the locks of its nested bundles, and prints every entry with its
/// kind (bundle, image, or index with its platforms), digest, size, lock annotations, where it
/// is read from now and the reference its lock names. A bundle relocated by ferry import, ferry
/// copy or imgpkg copy is described from its repository alone: the origins its locks name are
/// shown, never contacted. --tar describes the bundles of an archive with no registry.
///
/// Examples:
///   ferry describe -b registry.internal/team/bundle:1.0
///   ferry describe --tar bundle.tar --json
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(false))]
pub struct DescribeArgs {
    /// Bundle to describe
    #[arg(short = 'b', long = "bundle", value_name = "REF", group = "what")]
    pub bundle: Option<String>,
    /// Describe the bundles of this archive instead
    #[arg(long, value_name = "ARCHIVE", group = "what")]
    pub tar: Option<PathBuf>,
    /// Print the tree as JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

impl DescribeArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let nodes = match (&self.bundle, &self.tar) {
            (_, Some(archive)) => {
                let source = ferry::ops::archive::open_archive(archive, global.workers()).map_err(fail)?;
                let artifacts = ferry::ops::artifacts_of_index(source.index());
                let cannot = "the sizes shown count them, but their contents cannot be read from this archive";
                if let Some(notice) = ferry::ops::delta::delta_notice(&source, cannot) {
                    super::output::warn(&notice);
                }
                describe_archive(&source, artifacts, global.workers()).map_err(fail)?
            }
            (Some(bundle), None) => {
                let reference = bundle.parse::<Reference>().map_err(|e| Failure::new(anyhow::Error::new(e), false))?;
                let client = self.registry.client(global.workers()).map_err(|e| Failure::new(e, false))?;
                vec![describe_in_registry(&client, &reference, global.workers()).map_err(fail)?]
            }
            (None, None) => unreachable!("clap requires -b or --tar"),
        };
        if self.json {
            match nodes.as_slice() {
                [one] if self.tar.is_none() => output::json(&serde_json::json!({ "bundle": one }))?,
                _ => output::json(&serde_json::json!({ "bundles": nodes }))?,
            }
        } else {
            for node in &nodes {
                print_node(node, 0)?;
            }
        }
        Ok(Exit::Success)
    }
}

fn print_node(node: &Node, depth: usize) -> Result<(), Failure> {
    let indent = "  ".repeat(depth);
    // Every value from a lock, an archive or a registry is shown escaped (spec/cli.md "Output").
    let platforms =
        if node.platforms.is_empty() { String::new() } else { format!(" [{}]", shown(&node.platforms.join(", "))) };
    let reference = shown(&node.reference);
    output::data(&format!("{indent}{} {reference}{platforms} ({})", node.kind, human_bytes(node.size)))?;
    if !node.reference.contains(&node.digest.to_string()) {
        output::data(&format!("{indent}    digest: {}", node.digest))?;
    }
    if let Some(origin) = node.origin.as_ref().filter(|origin| **origin != node.reference) {
        output::data(&format!("{indent}    from: {}", shown(origin)))?;
    }
    for (key, value) in &node.annotations {
        output::data(&format!("{indent}    {}: {}", shown(key), shown(value)))?;
    }
    for child in &node.children {
        print_node(child, depth + 1)?;
    }
    Ok(())
}
