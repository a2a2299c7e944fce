//! Flags and commands (clap), each command turning its flags into a call into `ferry::ops`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::copy::CopyArgs;
use super::describe::DescribeArgs;
use super::exit::{Exit, Failure, fail};
use super::export::ExportArgs;
use super::import::ImportArgs;
use super::keys::SignatureFlags;
use super::output::{self, human_bytes, shown};
use super::progress::Progress;
use super::pull::PullArgs;
use super::push::PushArgs;
use super::serve::ServeArgs;
use super::tag::TagArgs;
use ferry::engine::TransferOptions;
use ferry::model::Digest;
use ferry::ops::{inspect, verify};

/// Carry OCI images and imgpkg bundles across an air gap as one verifiable archive.
///
/// The archive is an OCI image layout in a plain tar: skopeo (`oci-archive:FILE:NAME`), umoci
/// and oras read it, and `ferry verify` proves every byte offline.
#[derive(Parser, Debug)]
#[command(name = "ferry", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Exit codes: 0 success, 1 failure, 2 usage error, 3 integrity failure (see spec/cli.md).\n\
imgpkg's global flags (--tty, --color, --column, --debug, -y/--yes) are accepted and change nothing.")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Args, Debug)]
pub struct Global {
    /// Parallel workers for transfers and hashing [default: twice the cores, at least 4]
    #[arg(long, global = true, value_name = "N", env = "FERRY_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Print nothing but errors, warnings and requested data
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// imgpkg's global flags, accepted so that imgpkg scripts run unchanged; they change
    /// nothing here: ferry shows progress on a terminal by itself (and none elsewhere), never
    /// prompts, prints no colour, and prints no tables to filter. Hidden from --help; the
    /// top-level help and spec/cli.md "Global flags" say so.
    #[command(flatten)]
    pub imgpkg: ImgpkgGlobals,
}

/// A boolean as Go's flag package reads one (`1`, `t`, `T`, `TRUE`, `true`, `True`, and the
/// same for false), so `--tty=1` works as it does for imgpkg.
fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (true, false, 1, 0, t, f)")),
    }
}

/// imgpkg's global flags (`--tty`, `--color`, `--debug`, `-y/--yes`, `--column`), taken and
/// ignored, in imgpkg's spellings (`--tty`, `--tty=true`, `--tty=1`, `--column name,digest`).
#[derive(Args, Debug)]
pub struct ImgpkgGlobals {
    #[arg(long, global = true, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL", value_parser = go_bool)]
    pub tty: Option<bool>,
    #[arg(long, global = true, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL", value_parser = go_bool)]
    pub color: Option<bool>,
    #[arg(long, global = true, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL", value_parser = go_bool)]
    pub debug: Option<bool>,
    #[arg(short = 'y', long, global = true, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL", value_parser = go_bool)]
    pub yes: Option<bool>,
    #[arg(long, global = true, hide = true, value_delimiter = ',', value_name = "COLUMNS")]
    pub column: Vec<String>,
}

impl Global {
    pub fn workers(&self) -> usize {
        self.concurrency.filter(|&n| n > 0).unwrap_or_else(|| TransferOptions::default().workers)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Export(ExportArgs),
    Import(ImportArgs),
    Copy(CopyArgs),
    Push(PushArgs),
    Pull(PullArgs),
    Describe(DescribeArgs),
    Verify(VerifyArgs),
    Inspect(InspectArgs),
    Tag(TagArgs),
    Serve(ServeArgs),
    Inventory(super::inventory::InventoryArgs),
}

/// Check an archive's integrity offline: every blob hashed, every reference present.
///
/// Hashes every blob (in parallel) against its name, checks every descriptor reachable from
/// index.json is present with its size, and prints the archive's identity: the sha256 of its
/// index.json, which names the whole archive because every other entry is named by its digest.
/// Exits 0 only if everything holds, 3 if anything does not; every failure is listed.
///
/// An archive split into volumes (export --volume-size) is verified in place, given its
/// ARCHIVE.volumes.json, any of its volumes, or its name: every volume must be there with the
/// size its table lists, and a damaged blob is reported with the volume it lies in.
///
/// Blob bytes are covered by their digests; index.json, which names them, only by itself. To
/// know it is the index.json that was exported, and not a consistent forgery, pass the identity
/// the export printed (carried apart from the archive) with --identity.
///
/// Examples:
///   ferry verify bundle.tar
///   ferry verify bundle.tar --identity sha256:3f2a...   (the identity export printed)
///   ferry verify bundle.tar.volumes.json --volume-digests
///   cat bundle.tar.0* | ferry verify -
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct VerifyArgs {
    /// Archive to verify (a file, a volume table, any of its volumes, or - for stdin)
    pub archive: PathBuf,
    /// Also hash every volume whole against the sha256 its table lists (reads everything twice)
    #[arg(long)]
    pub volume_digests: bool,
    /// Fail unless the archive's identity (sha256 of its index.json) is this one
    #[arg(long, value_name = "sha256:HEX")]
    pub identity: Option<Digest>,
    #[command(flatten)]
    pub signatures: SignatureFlags,
    /// For a delta: the archive (verified too) or inventory it was made against; every blob
    /// the delta relies on must be in one of them, proving the pair complete. Repeatable.
    #[arg(long = "base", value_name = "FILE")]
    pub bases: Vec<PathBuf>,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// List what an archive holds: bundles, lock entries, images, platforms, sizes.
///
/// Reads only metadata (manifests, configs, bundle locks), so it is fast on any size;
/// use `ferry verify` to check the bytes.
///
/// Example: ferry inspect bundle.tar --json
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Archive to inspect
    pub archive: PathBuf,
    /// Print the listing as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

impl VerifyArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let progress = Progress::new(global.quiet || self.json);
        let options = verify::VerifyOptions { workers: global.workers(), volume_digests: self.volume_digests };
        let signatures = self.signatures.options()?;
        let result = if self.archive.as_os_str() == "-" {
            self.signatures.refuse_stream()?;
            let input = super::stdin_archive()?;
            Ok(ferry::ops::stream::verify_stream(input, global.workers(), &progress))
        } else {
            verify::check_archive(&self.archive, &options, &progress).map(|(mut report, checked)| {
                report.check_signatures(checked.as_ref(), &signatures);
                report
            })
        };
        progress.finish();
        let mut report = result.map_err(super::exit::fail)?;
        if let Some(expected) = &self.identity {
            report.expect_identity(expected);
        }
        if !self.bases.is_empty() {
            let bases: Vec<&std::path::Path> = self.bases.iter().map(PathBuf::as_path).collect();
            ferry::ops::delta::verify_with_bases(&mut report, &bases, &options, &ferry::engine::NoReport)
                .map_err(super::exit::fail)?;
        }
        if self.json {
            output::json(&report)?;
        } else {
            for warning in &report.warnings {
                output::warn(warning);
            }
            if let Some(signatures) = &report.signatures {
                for line in render_signatures(signatures) {
                    output::data(&line)?;
                }
            }
            for failure in &report.failures {
                // Continuation lines indented: text quoted in a failure cannot forge an `OK` line.
                output::data(&format!("FAIL {}", failure.replace('\n', "\n  ")))?;
            }
            let identity = report.identity.map_or_else(|| "unknown".to_string(), |d| d.to_string());
            if let Some(delta) = &report.delta {
                // DL-4: what a delta relies on is listed, never a failure by itself.
                let bytes = delta.relies_on.iter().map(|r| r.size).fold(0, u64::saturating_add);
                output::data(&format!(
                    "DELTA relies on {} blobs ({}) not in this archive:",
                    delta.relies_on.len(),
                    human_bytes(bytes)
                ))?;
                for relied in &delta.relies_on {
                    output::data(&format!(
                        "  {} {} from {}",
                        relied.digest,
                        relied.size,
                        shown(&delta.base_of(relied))
                    ))?;
                }
                if self.bases.is_empty() {
                    output::note("give the base with --base to prove the pair complete");
                }
            }
            if report.ok {
                let volumes = if report.volumes > 0 { format!(" ({} volumes)", report.volumes) } else { String::new() };
                output::data(&format!(
                    "OK {}{volumes}: {} artifacts, {} blobs, {} verified\nidentity {identity}",
                    report.archive,
                    report.artifacts,
                    report.blobs,
                    human_bytes(report.bytes)
                ))?;
            } else {
                output::data(&format!(
                    "FAILED {}: {} problem(s) found; do not import this archive\nidentity {identity}",
                    report.archive,
                    report.failures.len()
                ))?;
            }
        }
        Ok(if report.ok { Exit::Success } else { Exit::Integrity })
    }
}

impl InspectArgs {
    pub fn run(&self, global: &Global) -> Result<Exit, Failure> {
        let report = inspect::inspect_archive(&self.archive, global.workers()).map_err(fail)?;
        if self.json {
            output::json(&report)?;
        } else {
            output::data(&render_inspect(&report))?;
        }
        for problem in report.problems.iter().chain(&report.warnings) {
            // One line each: a problem quotes names from the archive, which may hold line breaks.
            output::warn(&output::shown(problem));
        }
        // What inspect could not read of an archive (a refused bundle layer, a missing blob)
        // is damage, as verify would say: never an OK listing of part of it.
        Ok(if report.problems.is_empty() { Exit::Success } else { Exit::Integrity })
    }
}

/// One line per image: `signed by KEY`, `unsigned` or `bad`, with keyless identities and
/// verified attestations (spec/cli.md "verify").
fn render_signatures(report: &ferry::ops::signatures::SignatureReport) -> Vec<String> {
    let mut lines = Vec::new();
    for image in &report.images {
        let status = match image.status.as_str() {
            "signed" => format!("signed by {}", image.signed_by.join(", ")),
            other => other.to_string(),
        };
        lines.push(format!("SIGNATURE {} {}: {status}", shown(&image.name), image.digest));
        for keyless in &image.keyless {
            lines.push(format!(
                "  keyless signature by {} (issuer {}): reported, not verified offline",
                shown(&keyless.identity),
                shown(&keyless.issuer)
            ));
        }
        for attestation in &image.attestations {
            lines.push(format!("  attestation {}", shown(attestation)));
        }
    }
    lines
}

/// The human form of `inspect`: roots first, bundles with their lock entries indented.
fn render_inspect(report: &inspect::InspectReport) -> String {
    // Every value from the archive is shown escaped: a lock annotation or a name must not
    // drive the terminal or forge a line (spec/cli.md "Output").
    let mut lines = vec![format!("archive  {}", shown(&report.archive)), format!("identity {}", report.identity)];
    let mut ordered: Vec<&inspect::ArtifactInfo> = report.artifacts.iter().collect();
    ordered.sort_by_key(|a| (!a.root, a.kind != "bundle", a.name.clone()));
    for artifact in ordered {
        let name = artifact.name.clone().unwrap_or_else(|| artifact.digest.to_string());
        let mut line = format!("{:<7} {}", artifact.kind, shown(&name));
        if artifact.root {
            line.push_str("  [root]");
        }
        lines.push(line);
        lines.push(format!("        digest {}  {}", artifact.digest, human_bytes(artifact.bytes)));
        if let Some(tag) = &artifact.root_tag {
            lines.push(format!("        tag {}", shown(tag)));
        }
        if !artifact.platforms.is_empty() {
            lines.push(format!("        platforms {}", shown(&artifact.platforms.join(", "))));
        }
        if artifact.kind == "image" || artifact.kind == "bundle" {
            lines.push(format!("        layers {}", artifact.layers));
        }
        if let Some(subject) = &artifact.referrer_of {
            lines.push(format!("        refers to {subject}"));
        }
        for referrer in &artifact.referrers {
            let what = match (&referrer.tag, &referrer.artifact_type) {
                (Some(tag), _) => format!(" tag {}", shown(tag)),
                (None, Some(artifact_type)) => format!(" type {}", shown(artifact_type)),
                (None, None) => String::new(),
            };
            let kind = serde_json::to_value(referrer.kind).ok().and_then(|v| v.as_str().map(str::to_string));
            let predicates = if referrer.predicate_types.is_empty() {
                String::new()
            } else {
                format!(" predicate {}", shown(&referrer.predicate_types.join(", ")))
            };
            lines.push(format!("        {} {}{what}{predicates}", kind.unwrap_or_default(), referrer.digest));
        }
        for entry in &artifact.lock {
            lines.push(format!("        - {}", shown(&entry.image)));
            for (key, value) in &entry.annotations {
                lines.push(format!("            {}: {}", shown(key), shown(value)));
            }
        }
    }
    for omitted in &report.omitted_layers {
        lines.push(format!("omitted non-distributable layer {omitted}"));
    }
    if let Some(delta) = &report.delta {
        let bytes = delta.relies_on.iter().map(|r| r.size).fold(0, u64::saturating_add);
        lines.push(format!("delta: relies on {} blobs ({}) its bases hold", delta.relies_on.len(), human_bytes(bytes)));
        for base in &delta.bases {
            lines.push(format!("        base {} {} {}", base.kind, shown(&base.name), base.identity));
        }
        for relied in &delta.relies_on {
            lines.push(format!("        relies on {} {}", relied.digest, relied.size));
        }
    }
    lines.push(format!(
        "{} blobs, {} stored, {} without deduplication",
        report.blobs,
        human_bytes(report.unique_bytes),
        human_bytes(report.total_bytes)
    ));
    lines.join("\n")
}
