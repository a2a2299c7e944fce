//! imgpkg's YAML documents: ImagesLock, BundleLock, Bundle and ImageLocations
//! (`apiVersion: imgpkg.carvel.dev/v1alpha1`).
//!
//! Parsing is strict as imgpkg's is: unknown keys, a wrong apiVersion or kind, and lock entries
//! that are not digest references are errors. Output is deterministic and matches imgpkg's
//! (a leading `---`, keys sorted at every level), so files round-trip between the two tools.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::reference::{Reference, ReferenceError};

pub const API_VERSION: &str = "imgpkg.carvel.dev/v1alpha1";
pub const KIND_IMAGES_LOCK: &str = "ImagesLock";
pub const KIND_BUNDLE_LOCK: &str = "BundleLock";
pub const KIND_BUNDLE: &str = "Bundle";
pub const KIND_IMAGE_LOCATIONS: &str = "ImageLocations";
/// Lock files come from bundle layers and users' disks: bound what a parser will read.
pub const MAX_LOCK_BYTES: usize = 4 * 1024 * 1024;

/// Why a YAML document is not the lock file it should be.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} is not valid YAML for imgpkg {kind}: {reason}")]
    Syntax { what: String, kind: &'static str, reason: String },
    #[error("{what} has apiVersion {found:?}; expected {API_VERSION:?}")]
    ApiVersion { what: String, found: String },
    #[error("{what} has kind {found:?}; expected {expected:?}")]
    Kind { what: String, found: String, expected: &'static str },
    #[error("{what} has kind {found:?}; expected \"BundleLock\" or \"ImagesLock\"")]
    AnyKind { what: String, found: String },
    #[error("{what}: images[{index}]: {source}")]
    Entry { what: String, index: usize, source: ReferenceError },
    #[error("{what}: bundle.image: {source}")]
    BundleImage { what: String, source: ReferenceError },
    #[error("{what} is {size} bytes, over the {MAX_LOCK_BYTES}-byte limit for lock files")]
    TooLarge { what: String, size: usize },
}

/// One image of an ImagesLock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    // Fields are declared in sorted order: serde emits them in declaration order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub image: String,
}

/// `.imgpkg/images.yml`: the images a bundle pins by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesLock {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    #[serde(default)]
    pub images: Vec<ImageRef>,
    pub kind: String,
}

/// The `bundle` field of a BundleLock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRef {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A BundleLock: where a bundle lives, by digest, and the tag it was pushed or copied with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleLock {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub bundle: BundleRef,
    pub kind: String,
}

/// One entry of an ImageLocations record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageLocation {
    pub image: String,
    #[serde(rename = "isBundle")]
    pub is_bundle: bool,
}

/// The record imgpkg reads after a relocation: every direct lock entry of one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageLocations {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub images: Vec<ImageLocation>,
    pub kind: String,
}

/// `.imgpkg/bundle.yml`: descriptive metadata. imgpkg never validates it, so neither does
/// ferry beyond its apiVersion and kind; unknown keys are kept out of the typed view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleMetadata {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<BTreeMap<String, String>>,
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub websites: Vec<BTreeMap<String, String>>,
}

/// The two fields every document has, read first so a wrong kind is named as such rather than
/// as an unknown key.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

fn parse_typed<T: for<'de> Deserialize<'de>>(text: &str, what: &str, kind: &'static str) -> Result<T, LockError> {
    if text.len() > MAX_LOCK_BYTES {
        return Err(LockError::TooLarge { what: what.to_string(), size: text.len() });
    }
    let syntax = |e: serde_saphyr::Error| LockError::Syntax { what: what.to_string(), kind, reason: e.to_string() };
    // Header is lenient (unknown keys are fine there); the typed parse below is strict.
    #[derive(Deserialize)]
    struct Lenient {
        #[serde(flatten)]
        header: Header,
        #[serde(flatten)]
        _rest: BTreeMap<String, serde::de::IgnoredAny>,
    }
    let lenient: Lenient = serde_saphyr::from_str(text).map_err(syntax)?;
    let header = lenient.header;
    if header.api_version != API_VERSION {
        return Err(LockError::ApiVersion { what: what.to_string(), found: header.api_version });
    }
    if header.kind != kind {
        return Err(LockError::Kind { what: what.to_string(), found: header.kind, expected: kind });
    }
    serde_saphyr::from_str(text).map_err(syntax)
}

fn to_yaml<T: Serialize>(value: &T) -> String {
    to_yaml_with(value, true)
}

/// As imgpkg (go-yaml) writes them: a value of several lines (kbld's origins annotation) as a
/// literal block (`|`, `|-`) when `blocks`, and every one-line value on one line (a long
/// reference is never folded with `>-`).
fn to_yaml_with<T: Serialize>(value: &T, blocks: bool) -> String {
    let options = serde_saphyr::ser_options! { prefer_block_scalars: blocks, folded_wrap_chars: usize::MAX };
    let body = serde_saphyr::to_string_with_options(value, options).expect("lock types always serialise");
    format!("---\n{body}")
}

impl ImagesLock {
    pub fn new(images: Vec<ImageRef>) -> Self {
        ImagesLock { api_version: API_VERSION.into(), images, kind: KIND_IMAGES_LOCK.into() }
    }

    /// Parses and validates an ImagesLock; `what` names the file in errors.
    pub fn parse(text: &str, what: &str) -> Result<Self, LockError> {
        let lock: ImagesLock = parse_typed(text, what, KIND_IMAGES_LOCK)?;
        lock.references(what)?;
        Ok(lock)
    }

    /// Parses an ImagesLock and reports every bad entry, not only the first: `ferry push`
    /// checks a lock once, completely, where imgpkg would accept it and fail later.
    pub fn parse_reporting_all(text: &str, what: &str) -> Result<Self, Vec<LockError>> {
        let lock: ImagesLock = parse_typed(text, what, KIND_IMAGES_LOCK).map_err(|e| vec![e])?;
        let problems: Vec<LockError> = lock
            .images
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                Reference::parse_digest_form(&entry.image).err().map(|source| LockError::Entry {
                    what: what.to_string(),
                    index,
                    source,
                })
            })
            .collect();
        if problems.is_empty() { Ok(lock) } else { Err(problems) }
    }

    /// Every entry's reference, normalised; each must be in digest form.
    pub fn references(&self, what: &str) -> Result<Vec<Reference>, LockError> {
        self.images
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                Reference::parse_digest_form(&entry.image).map_err(|source| LockError::Entry {
                    what: what.to_string(),
                    index,
                    source,
                })
            })
            .collect()
    }

    pub fn to_yaml(&self) -> String {
        // A line that starts with a tab cannot open a block's content for go-yaml (imgpkg
        // refuses to read it): such values stay quoted, as imgpkg writes them.
        let tab_led = self
            .images
            .iter()
            .flat_map(|image| image.annotations.values())
            .any(|value| value.contains('\n') && value.lines().any(|line| line.starts_with('\t')));
        to_yaml_with(self, !tab_led)
    }
}

impl BundleLock {
    pub fn new(image: String, tag: Option<String>) -> Self {
        BundleLock { api_version: API_VERSION.into(), bundle: BundleRef { image, tag }, kind: KIND_BUNDLE_LOCK.into() }
    }

    pub fn parse(text: &str, what: &str) -> Result<Self, LockError> {
        let lock: BundleLock = parse_typed(text, what, KIND_BUNDLE_LOCK)?;
        lock.reference(what)?;
        Ok(lock)
    }

    pub fn reference(&self, what: &str) -> Result<Reference, LockError> {
        Reference::parse_digest_form(&self.bundle.image)
            .map_err(|source| LockError::BundleImage { what: what.to_string(), source })
    }

    pub fn to_yaml(&self) -> String {
        to_yaml(self)
    }
}

impl ImageLocations {
    /// A record of the given entries, sorted by image as imgpkg writes it.
    pub fn new(mut images: Vec<ImageLocation>) -> Self {
        images.sort_by(|a, b| a.image.cmp(&b.image));
        ImageLocations { api_version: API_VERSION.into(), images, kind: KIND_IMAGE_LOCATIONS.into() }
    }

    pub fn parse(text: &str, what: &str) -> Result<Self, LockError> {
        parse_typed(text, what, KIND_IMAGE_LOCATIONS)
    }

    pub fn to_yaml(&self) -> String {
        to_yaml(self)
    }
}

impl BundleMetadata {
    pub fn parse(text: &str, what: &str) -> Result<Self, LockError> {
        if text.len() > MAX_LOCK_BYTES {
            return Err(LockError::TooLarge { what: what.to_string(), size: text.len() });
        }
        serde_saphyr::from_str(text).map_err(|e| LockError::Syntax {
            what: what.to_string(),
            kind: KIND_BUNDLE,
            reason: e.to_string(),
        })
    }
}

/// A `--lock` input: imgpkg tries a BundleLock first, then an ImagesLock.
#[derive(Debug, Clone)]
pub enum AnyLock {
    Bundle(BundleLock),
    Images(ImagesLock),
}

impl AnyLock {
    pub fn parse(text: &str, what: &str) -> Result<Self, LockError> {
        match BundleLock::parse(text, what) {
            Ok(lock) => Ok(AnyLock::Bundle(lock)),
            Err(LockError::Kind { found, .. }) if found == KIND_IMAGES_LOCK => {
                ImagesLock::parse(text, what).map(AnyLock::Images)
            }
            Err(LockError::Kind { what, found, .. }) => Err(LockError::AnyKind { what, found }),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "61cb6f2e8f6b5c9f4e8d2bc4d03d09a2f8b3c1e6b0a7d8e9f0a1b2c3d4e5f607";

    fn lock_text(image: &str) -> String {
        format!(
            "apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages:\n- image: {image}\n  annotations:\n    kbld.carvel.dev/id: \"app:1\"\n"
        )
    }

    /// A `--lock` file of neither kind is named with both kinds it could have been (it said
    /// "expected BundleLock" to a misspelt ImagesLock), and the file is named once.
    #[test]
    fn a_lock_of_neither_kind_names_both() {
        let text = "apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImageLock\nimages: []\n";
        let message = AnyLock::parse(text, "images.yml").unwrap_err().to_string();
        assert_eq!(message, r#"images.yml has kind "ImageLock"; expected "BundleLock" or "ImagesLock""#);
        let tagged = lock_text("registry.example.com/app:1.0");
        let message = AnyLock::parse(&tagged, "images.yml").unwrap_err().to_string();
        assert_eq!(message.matches("images.yml").count(), 1, "{message}");
    }

    /// Review s8 F8: an annotation of several lines (kbld writes its origins so) is written as a
    /// literal block, as imgpkg writes it (it was one double-quoted line of `\n` escapes), and
    /// reads back the same; a long one-line value stays on one line.
    #[test]
    fn values_of_several_lines_are_literal_blocks() {
        let origins = "- resolved:\n    tag: '1.21'\n    url: nginx:1.21\n";
        let long = "a value ".repeat(20);
        let mut image = ImageRef { annotations: BTreeMap::new(), image: format!("nginx@sha256:{HEX}") };
        image.annotations.insert("kbld.carvel.dev/origins".into(), origins.into());
        image.annotations.insert("two".into(), "line1\nline2".into());
        image.annotations.insert("long".into(), long.trim().into());
        let lock = ImagesLock::new(vec![image]);
        let yaml = lock.to_yaml();
        assert!(yaml.contains("    kbld.carvel.dev/origins: |\n      - resolved:\n          tag: '1.21'\n"), "{yaml}");
        assert!(yaml.contains("    two: |-\n      line1\n      line2\n"), "{yaml}");
        assert!(yaml.contains(&format!("    long: {}\n", long.trim())), "{yaml}");
        assert_eq!(ImagesLock::parse(&yaml, "again").unwrap(), lock);
        // A line that starts with a tab would open a block go-yaml refuses: quoted instead.
        let mut tabbed = lock.clone();
        tabbed.images[0].annotations.insert("tabbed".into(), "\tone\ntwo".into());
        let yaml = tabbed.to_yaml();
        assert!(yaml.contains(r#"    tabbed: "\tone\ntwo""#), "{yaml}");
        assert_eq!(ImagesLock::parse(&yaml, "again").unwrap(), tabbed);
    }

    #[test]
    fn parses_and_writes_sorted_with_a_document_marker() {
        let lock = ImagesLock::parse(&lock_text(&format!("nginx@sha256:{HEX}")), "images.yml").unwrap();
        assert_eq!(lock.images[0].annotations["kbld.carvel.dev/id"], "app:1");
        let yaml = lock.to_yaml();
        assert!(yaml.starts_with("---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n"), "{yaml}");
        assert!(yaml.trim_end().ends_with("kind: ImagesLock"), "{yaml}");
        let annotations = yaml.find("annotations").unwrap();
        assert!(annotations < yaml.find("image: nginx").unwrap(), "keys sorted: {yaml}");
        assert_eq!(ImagesLock::parse(&yaml, "again").unwrap(), lock);
    }

    #[test]
    fn rejects_unknown_keys_tags_and_wrong_kinds() {
        let unknown = format!("{}  extra: 1\n", lock_text(&format!("nginx@sha256:{HEX}")));
        assert!(matches!(ImagesLock::parse(&unknown, "f"), Err(LockError::Syntax { .. })));
        let tag = ImagesLock::parse(&lock_text("nginx:1.0"), "f").unwrap_err();
        assert!(tag.to_string().contains("expected ref to be in digest form, got 'nginx:1.0'"), "{tag}");
        let kind = BundleLock::parse(&lock_text(&format!("nginx@sha256:{HEX}")), "f").unwrap_err();
        assert!(kind.to_string().contains("kind \"ImagesLock\"; expected \"BundleLock\""), "{kind}");
        let api = ImagesLock::parse("apiVersion: v2\nkind: ImagesLock\n", "f").unwrap_err();
        assert!(matches!(api, LockError::ApiVersion { .. }));
    }

    #[test]
    fn any_lock_tries_bundle_lock_first() {
        let bundle = BundleLock::new(format!("r.example.com/b@sha256:{HEX}"), Some("v1".into()));
        let yaml = bundle.to_yaml();
        assert!(yaml.starts_with("---\napiVersion: imgpkg.carvel.dev/v1alpha1\nbundle:\n"), "{yaml}");
        assert!(matches!(AnyLock::parse(&yaml, "f").unwrap(), AnyLock::Bundle(_)));
        let images = lock_text(&format!("nginx@sha256:{HEX}"));
        assert!(matches!(AnyLock::parse(&images, "f").unwrap(), AnyLock::Images(_)));
    }

    #[test]
    fn long_references_stay_on_one_line() {
        let image = format!("127.0.0.1:5055/relocated/a-rather-long-repository-name/bundle@sha256:{HEX}");
        let yaml = BundleLock::new(image.clone(), None).to_yaml();
        assert!(yaml.contains(&format!("  image: {image}\n")), "{yaml}");
    }

    #[test]
    fn image_locations_are_sorted() {
        let record = ImageLocations::new(vec![
            ImageLocation { image: "b.example.com/x@sha256:1".into(), is_bundle: true },
            ImageLocation { image: "a.example.com/x@sha256:1".into(), is_bundle: false },
        ]);
        let yaml = record.to_yaml();
        assert!(yaml.find("a.example.com").unwrap() < yaml.find("b.example.com").unwrap());
        assert!(yaml.contains("isBundle: false"), "{yaml}");
        assert_eq!(ImageLocations::parse(&yaml, "f").unwrap(), record);
    }

    const HOSTILE_HEAD: &str = "apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\n";

    /// Lock files come from bundle layers: untrusted. Deep nesting and alias bombs are errors,
    /// not a stack overflow or an exhausted memory.
    #[test]
    fn hostile_yaml_is_refused_not_crashed_on() {
        let deep = format!("{HOSTILE_HEAD}images: {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
        assert!(ImagesLock::parse(&deep, "deep").is_err());
        let deep_maps = format!(
            "{HOSTILE_HEAD}images:\n{}",
            (0..20_000).map(|i| format!("{}- a:\n", " ".repeat(i))).collect::<String>()
        );
        assert!(ImagesLock::parse(&deep_maps, "deep maps").is_err());
        let mut bomb = format!("{HOSTILE_HEAD}a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..12 {
            let refs = vec![format!("*a{}", level - 1); 10].join(", ");
            bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        bomb.push_str("images: *a11\n");
        assert!(ImagesLock::parse(&bomb, "bomb").is_err());
        assert!(BundleLock::parse(&bomb.replace("ImagesLock", "BundleLock"), "bomb").is_err());
    }
}
