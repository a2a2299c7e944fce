//! Annotation keys ferry reads and writes in an archive's `index.json` (spec/archive.md, AR-6).
//!
//! They are named once, here, so the archive writer, `inspect` and `import` agree on them.

/// OCI's key for the name of a top-level artifact in an image layout (image-spec
/// `annotations.md`); skopeo's `oci-archive:FILE:NAME` selects an entry by it.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The normalised reference the artifact was exported from (for lock entries, the lock's own).
pub const ORIGINAL_REF: &str = "dev.ferry.original-ref";
/// `"true"` when the artifact is an imgpkg bundle.
pub const IS_BUNDLE: &str = "dev.ferry.bundle";
/// `"true"` on the bundle or image the export was asked for.
pub const IS_ROOT: &str = "dev.ferry.root";
/// The tag the root was exported from, if it was named by tag (imgpkg re-applies it on import).
pub const ROOT_TAG: &str = "dev.ferry.root-tag";
/// On the entries of an ImagesLock export: that entry's lock annotations, as a JSON object, so
/// an import's `--lock-output` gives them back (imgpkg keeps them).
pub const LOCK_ANNOTATIONS: &str = "dev.ferry.lock-annotations";
/// On the entries of an ImagesLock export: the entry's position in the lock (from 0), so an
/// import's `--lock-output` keeps the lock's order.
pub const LOCK_POSITION: &str = "dev.ferry.lock-position";
/// On a referrer (a signature, attestation, SBOM or OCI 1.1 referrer): the digest of the
/// manifest it refers to (spec/archive.md "Referrers", AR-RF2).
pub const REFERRER_OF: &str = "dev.ferry.referrer-of";
/// On a referrer found by cosign's tag scheme: the tag it was found under,
/// `sha256-<hex of its subject>.sig|.att|.sbom`, which import recreates (AR-RF2).
pub const REFERRER_TAG: &str = "dev.ferry.referrer-tag";
/// Index-level: the archive format version ferry wrote.
pub const FORMAT: &str = "dev.ferry.archive-format";
/// Index-level: comma-separated digests of non-distributable layers left out of the archive.
pub const OMITTED_LAYERS: &str = "dev.ferry.omitted-layers";

/// The archive format version this build writes.
pub const FORMAT_VERSION: &str = "1";
