//! `ferry inventory`: flags and output (spec/cli.md "inventory").

use std::path::PathBuf;

use clap::Args;

use super::args::Global;
use super::exit::{Exit, Failure, fail};
use super::output;
use super::registry::RegistryFlags;
use ferry::model::Repository;
use ferry::ops::inventory;

/// Write what a repository or archives hold, to carry back across the gap for export --base.
///
/// Given a repository, walks the manifests of every tag (internal .imgpkg tags included) and
/// lists every manifest, index, config and layer digest they reach; given archive files, lists
/// what they hold (a delta also what it relies on). The file is sorted text, one
/// `sha256:<hex> <size> <kind>` line per digest under a `# ferry inventory v1` header, so a
/// person can read it and a reviewer can diff it. Its sha256 is printed on stdout.
///
/// Examples:
///   ferry inventory registry.internal/team/bundle -o target.inventory
///   ferry inventory week1.tar week2.tar -o carried.inventory
///   ferry export -b registry.example.com/team/bundle:v2 --base target.inventory -o week2.tar
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InventoryArgs {
    /// One repository (e.g. registry.internal/team/bundle), or archive files
    #[arg(value_name = "REPO | ARCHIVE", required = true)]
    pub sources: Vec<String>,
    /// The inventory file to write (`-` for standard output; its sha256 then goes to stderr)
    #[arg(short = 'o', long = "output", value_name = "FILE", value_parser = parse_inventory_output)]
    pub output: PathBuf,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `-` (standard output), or a file name as `--lock-output` takes one.
fn parse_inventory_output(text: &str) -> Result<PathBuf, String> {
    if text == "-" {
        return Ok(PathBuf::from("-"));
    }
    super::registry::parse_output_file(text)
}

impl InventoryArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let files: Vec<&std::path::Path> = self.sources.iter().map(std::path::Path::new).collect();
        let made = if files.iter().all(|file| file.is_file()) {
            inventory::of_archives(&files, global.workers()).map_err(fail)?
        } else {
            let [repository] = self.sources.as_slice() else {
                return Err(Failure {
                    error: anyhow::anyhow!(
                        "give one repository, or archive files that exist (a name that is not a file is read as a repository)"
                    ),
                    exit: Exit::Usage,
                });
            };
            let repository = Repository::parse(repository).map_err(|e| Failure::new(e, false))?;
            let client = self.registry.client(global.workers()).map_err(|e| Failure::new(e, false))?;
            inventory::of_repository(&client, &repository, global.workers()).map_err(fail)?
        };
        let text = made.to_text();
        if self.output.as_os_str() == "-" {
            output::data(text.trim_end_matches('\n'))?;
            if !global.quiet {
                output::note(&format!("{}  {} digests (the inventory's sha256)", made.identity(), made.entries.len()));
            }
            return Ok(Exit::Success);
        }
        ferry::store::user_file::write_user_file(&self.output, &text, false)
            .map_err(|e| Failure::new(anyhow::anyhow!("writing {}: {e}", self.output.display()), false))?;
        if !global.quiet {
            output::note(&format!("wrote {}: {} digests", self.output.display(), made.entries.len()));
        }
        output::data(&format!("{}  {}", made.identity(), self.output.display()))?;
        Ok(Exit::Success)
    }
}
