//! What a command reads from, as settings the CLI hands over (spec/cli.md "export", "copy"):
//! the registry request of `-b`, `-i`, `--lock`, resolved into roots and the one source that
//! reads them under the relocation rule (spec/imgpkg.md "Where a bundle is read from"), and
//! the inputs of an export (a registry, files to build, an OCI layout, an imgpkg tarball).
//! The CLI builds no store itself.

use std::path::PathBuf;
use std::sync::Arc;

use super::bundle::build::BuildOptions;
use super::bundle::located;
use super::export::{self, Expect, ExportError};
use crate::engine::Artifact;
use crate::model::Reference;
use crate::model::platform::PlatformFilter;
use crate::store::registry::{RegistryClient, RegistrySource};

/// What `-b`, `-i` or `--lock` names.
#[derive(Debug, Clone)]
pub enum RegistryRequest {
    /// A bundle (`-b`).
    Bundle(Reference),
    /// An image or index (`-i`), with `--platform` to take one image of an index.
    Image { reference: Reference, platform: Option<PlatformFilter> },
    /// A BundleLock or ImagesLock file (`--lock`).
    Lock(PathBuf),
}

impl RegistryRequest {
    /// The roots named, resolved through `client`, what they must be, and the source to read
    /// them through: a relocated bundle's own repository, never its lock's origins.
    pub fn resolve(
        &self,
        client: &Arc<RegistryClient>,
    ) -> Result<(RegistrySource, Vec<Artifact>, Expect), ExportError> {
        let plain = RegistrySource::new(Arc::clone(client));
        let (roots, expect) = match self {
            RegistryRequest::Lock(lock) => export::lock_roots(&plain, lock)?,
            RegistryRequest::Bundle(reference) => (vec![export::reference_root(&plain, reference)?], Expect::Bundle),
            RegistryRequest::Image { reference, platform } => {
                let mut root = export::reference_root(&plain, reference)?;
                if let Some(platform) = platform {
                    root = export::platform_root(&plain, root, platform)?;
                }
                (vec![root], Expect::Image)
            }
        };
        let (source, _) = located::read_from(client, plain, &roots)?;
        Ok((source, roots, expect))
    }
}

/// Where an export reads from.
pub enum ExportInput {
    /// Artifacts in registries.
    Registry { client: Arc<RegistryClient>, request: RegistryRequest },
    /// Files built into a bundle as `ferry push -b` would; the images its lock names come from
    /// their registries.
    Files { client: Arc<RegistryClient>, build: BuildOptions },
    /// An OCI image layout directory.
    OciLayout(PathBuf),
    /// A tarball of `imgpkg copy --to-tar`.
    ImgpkgTar(PathBuf),
}
