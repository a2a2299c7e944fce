//! imgpkg's tarball (`imgpkg copy --to-tar`), read in place (spec/archive.md "Other archives
//! ferry reads", rules AR-I*): the headers are indexed once, `manifest.json` is read whole
//! (bounded) and gives every manifest and config as raw bytes, and each layer is served from
//! its `sha256-<hex>.tar.gz` entry by positional reads. Nothing leaves this source but through
//! the verifying reader, so every manifest, config and layer is checked against its digest.
//!
//! The artifacts are exposed with their original references ([`ImgpkgArtifact`]) so that the
//! use cases can treat the tarball as they treat ferry's archive of the same bundle.

pub mod format;
pub mod scan;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::model::json_keys::{self, Document, JsonKeyError};
use crate::model::manifest::MAX_MANIFEST_BYTES;
use crate::model::{Descriptor, Digest, RawManifest, Reference, media};
use crate::store::region::FileRegion;
use crate::store::tar::header::{HeaderKind, Trailer};
use crate::store::tar::walk::WalkProblem;
use crate::store::volumes::Volumes;
use crate::store::{BlobReader, Source, StoreError};
use crate::verify::VerifyingReader;
use format::{Entry, ImageDescriptor, IndexDescriptor, MANIFEST_FILE, ROOT_BUNDLE_LABEL};
use scan::{ScannedEntry, scan};

/// The largest `manifest.json` read (AR-I2): the same bound as ferry's `index.json`, since it
/// also holds every manifest and config inline.
pub const MAX_MANIFEST_JSON_BYTES: u64 = 64 * 1024 * 1024;
/// The most entries a tarball may have (one per layer, plus `manifest.json`).
const MAX_ENTRIES: usize = 1_000_000;
/// How deep indexes may nest in `manifest.json`.
const MAX_NESTING: usize = 8;

/// What is wrong with an imgpkg tarball, naming the entry and the rule.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{archive} (an imgpkg tarball): {problem}")]
pub struct ImgpkgTarError {
    pub archive: String,
    pub problem: String,
}

/// A top-level artifact of the tarball, with what imgpkg recorded of where it came from.
#[derive(Debug, Clone)]
pub struct ImgpkgArtifact {
    pub descriptor: Descriptor,
    /// The references imgpkg recorded (`Refs`, digest form), sorted.
    pub references: Vec<Reference>,
    /// The tag the root was copied by, if any.
    pub tag: Option<String>,
    /// Every tag `manifest.json` gives it, in order (one manifest listed under several cosign
    /// tags keeps each).
    pub tags: Vec<String>,
    /// The bundle `imgpkg copy -b` was asked for (label `dev.carvel.imgpkg.copy.root-bundle`).
    pub root: bool,
}

/// A layer file of the tarball.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    pub name: String,
    pub data_offset: u64,
    pub size: u64,
}

/// An open, indexed imgpkg tarball.
pub struct ImgpkgTarSource {
    name: String,
    file: Arc<Volumes>,
    layers: BTreeMap<Digest, LayerEntry>,
    /// Raw manifests and indexes by the digest `manifest.json` gives them (unverified until read).
    manifests: BTreeMap<Digest, Vec<u8>>,
    /// Raw configs by the digest their image's manifest gives them (unverified until read).
    configs: BTreeMap<Digest, Vec<u8>>,
    artifacts: Vec<ImgpkgArtifact>,
    /// Layers `manifest.json` lists, by digest, with their media type.
    listed_layers: BTreeMap<Digest, String>,
    trailer: Trailer,
}

impl ImgpkgTarSource {
    /// Opens and indexes the tarball at `path`; fails on the first structural problem.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| StoreError::io(format!("opening {name}"), e))?;
        let len = file.metadata().map_err(|e| StoreError::io(format!("reading {name}"), e))?.len();
        Self::open_volumes(Volumes::single(path, file, len), name)
    }

    fn open_volumes(file: Volumes, name: String) -> Result<Self, StoreError> {
        let fail = |problem: String| StoreError::ImgpkgTar(ImgpkgTarError { archive: name.clone(), problem });
        let scanned = scan(&file, MAX_ENTRIES).map_err(|problem| match problem {
            WalkProblem::Io(err) => StoreError::Invalid { store: name.clone(), reason: err.to_string() },
            other => fail(format!("{other} (AR-I1)")),
        })?;
        let mut layers = BTreeMap::new();
        let mut metadata: Option<ScannedEntry> = None;
        for entry in scanned.entries {
            let (clean, digest) = check_name(&entry).map_err(&fail)?;
            match digest {
                None if metadata.is_some() => return Err(fail(format!("entry {clean:?} appears twice (AR-I1)"))),
                None => metadata = Some(entry),
                Some(digest) => {
                    let layer = LayerEntry { name: clean.clone(), data_offset: entry.data_offset, size: entry.size };
                    if layers.insert(digest, layer).is_some() {
                        return Err(fail(format!("entry {clean:?} appears twice (AR-I1)")));
                    }
                }
            }
        }
        let metadata = metadata.ok_or_else(|| fail(format!("it has no {MANIFEST_FILE} (AR-I2)")))?;
        if metadata.size > MAX_MANIFEST_JSON_BYTES {
            return Err(fail(format!(
                "{MANIFEST_FILE} is {} bytes, over the {MAX_MANIFEST_JSON_BYTES}-byte limit (AR-I2)",
                metadata.size
            )));
        }
        let mut bytes = vec![0u8; metadata.size as usize];
        file.read_exact_at(&mut bytes, metadata.data_offset)
            .map_err(|e| StoreError::io(format!("reading {MANIFEST_FILE} in {name}"), e))?;
        // imgpkg reads it with Go's encoding/json: no key may mean another field to it (AR-R16).
        json_keys::check(&bytes, Document::ImgpkgTarManifest).map_err(|problem| match problem {
            JsonKeyError::Malformed(e) => fail(format!("{MANIFEST_FILE} is malformed: {e} (AR-I2)")),
            problem => fail(format!("{MANIFEST_FILE}: {problem}")),
        })?;
        let entries: Vec<Entry> =
            serde_json::from_slice(&bytes).map_err(|e| fail(format!("{MANIFEST_FILE} is malformed: {e} (AR-I2)")))?;
        drop(bytes);

        let mut source = ImgpkgTarSource {
            name: name.clone(),
            file: Arc::new(file),
            layers,
            manifests: BTreeMap::new(),
            configs: BTreeMap::new(),
            artifacts: Vec::new(),
            listed_layers: BTreeMap::new(),
            trailer: scanned.trailer,
        };
        let mut artifacts: HashMap<Digest, ImgpkgArtifact> = HashMap::new();
        for (position, entry) in entries.into_iter().enumerate() {
            let artifact = match (entry.image, entry.index) {
                (Some(image), None) => source.add_image(&image).map_err(&fail)?,
                (None, Some(index)) => source.add_index(&index, 0).map_err(&fail)?,
                _ => {
                    return Err(fail(format!(
                        "{MANIFEST_FILE} entry {position} is neither one image nor one index (AR-I2)"
                    )));
                }
            };
            match artifacts.get_mut(&artifact.descriptor.digest) {
                // imgpkg lists an artifact once, with every reference; merging is harmless.
                Some(known) => {
                    known.references.extend(artifact.references);
                    known.references.sort_by_key(ToString::to_string);
                    known.references.dedup();
                    known.root |= artifact.root;
                    for tag in &artifact.tags {
                        if !known.tags.contains(tag) {
                            known.tags.push(tag.clone());
                        }
                    }
                    known.tag = known.tag.take().or(artifact.tag);
                }
                None => {
                    artifacts.insert(artifact.descriptor.digest, artifact);
                }
            }
        }
        let mut artifacts: Vec<ImgpkgArtifact> = artifacts.into_values().collect();
        artifacts.sort_by_key(|artifact| artifact.descriptor.digest);
        source.artifacts = artifacts;
        Ok(source)
    }

    /// Records one raw manifest under `digest` (refusing the same digest with other bytes).
    fn add_manifest(&mut self, digest: &str, media_type: &str, raw: &str) -> Result<Descriptor, String> {
        let digest = parse_digest(digest)?;
        if raw.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(format!(
                "manifest {digest} is {} bytes, over the {MAX_MANIFEST_BYTES}-byte limit (AR-I3)",
                raw.len()
            ));
        }
        if !media::is_manifest_kind(media_type) {
            return Err(format!("manifest {digest} has media type {media_type:?}, not a manifest's (AR-I3)"));
        }
        if let Some(known) = self.manifests.get(&digest)
            && known != raw.as_bytes()
        {
            return Err(format!("manifest {digest} is given twice with different bytes (AR-I3)"));
        }
        self.manifests.insert(digest, raw.as_bytes().to_vec());
        Ok(Descriptor::new(media_type, digest, raw.len() as u64))
    }

    fn add_image(&mut self, image: &ImageDescriptor) -> Result<ImgpkgArtifact, String> {
        let descriptor = self.add_manifest(&image.manifest.digest, &image.manifest.media_type, &image.manifest.raw)?;
        // The config's digest is the one the manifest names (its bytes are checked when read).
        let config_digest = parse_digest(&image.config.digest)?;
        if image.config.raw.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(format!("config {config_digest} is over the {MAX_MANIFEST_BYTES}-byte limit (AR-I3)"));
        }
        if let Some(known) = self.configs.get(&config_digest)
            && known != image.config.raw.as_bytes()
        {
            return Err(format!("config {config_digest} is given twice with different bytes (AR-I3)"));
        }
        self.configs.insert(config_digest, image.config.raw.as_bytes().to_vec());
        for layer in image.layers.iter().flatten() {
            let digest = parse_digest(&layer.digest)?;
            self.listed_layers.insert(digest, layer.media_type.clone());
        }
        self.artifact(descriptor, &image.refs, &image.tag, image.labels.as_ref())
    }

    fn add_index(&mut self, index: &IndexDescriptor, depth: usize) -> Result<ImgpkgArtifact, String> {
        if depth > MAX_NESTING {
            return Err(format!("indexes nest more than {MAX_NESTING} deep (AR-I2)"));
        }
        let descriptor = self.add_manifest(&index.digest, &index.media_type, &index.raw)?;
        for image in index.images.iter().flatten() {
            self.add_image(image)?;
        }
        for child in index.indexes.iter().flatten() {
            self.add_index(child, depth + 1)?;
        }
        self.artifact(descriptor, &index.refs, &index.tag, index.labels.as_ref())
    }

    fn artifact(
        &self,
        descriptor: Descriptor,
        refs: &[String],
        tag: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Result<ImgpkgArtifact, String> {
        let mut references = Vec::with_capacity(refs.len());
        for text in refs {
            let reference: Reference =
                text.parse().map_err(|e| format!("reference {text:?} of {}: {e} (AR-I4)", descriptor.digest))?;
            if reference.digest != Some(descriptor.digest) {
                return Err(format!("reference {text:?} does not name {} (AR-I4)", descriptor.digest));
            }
            references.push(reference);
        }
        references.sort_by_key(ToString::to_string);
        references.dedup();
        let tag = (!tag.is_empty()).then(|| tag.to_string());
        if let Some(tag) = &tag
            && !crate::model::reference::is_valid_tag(tag)
        {
            return Err(format!("tag {tag:?} of {} is not a valid tag (AR-I4)", descriptor.digest));
        }
        let root = labels.is_some_and(|labels| labels.contains_key(ROOT_BUNDLE_LABEL));
        let tags = tag.iter().cloned().collect();
        Ok(ImgpkgArtifact { descriptor, references, tag, tags, root })
    }

    /// The top-level artifacts `manifest.json` lists, by digest.
    pub fn artifacts(&self) -> &[ImgpkgArtifact] {
        &self.artifacts
    }

    /// Every blob the tarball holds (manifests, configs, layers) with its size, by digest.
    pub fn stored(&self) -> BTreeMap<Digest, u64> {
        let inline = self.manifests.iter().chain(&self.configs).map(|(d, bytes)| (*d, bytes.len() as u64));
        inline.chain(self.layers.iter().map(|(d, entry)| (*d, entry.size))).collect()
    }

    /// A stored blob's raw bytes, unverified (for hashing it against its own digest).
    pub fn open_raw(&self, digest: &Digest) -> Option<Box<dyn std::io::Read + Send + '_>> {
        if let Some(bytes) = self.manifests.get(digest).or_else(|| self.configs.get(digest)) {
            return Some(Box::new(bytes.as_slice()));
        }
        self.layers.get(digest).map(|entry| {
            Box::new(FileRegion::new(Arc::clone(&self.file), entry.data_offset, entry.size))
                as Box<dyn std::io::Read + Send>
        })
    }

    /// The layer entry of a digest, if the tarball has it (for naming a damaged one).
    pub fn layer(&self, digest: &Digest) -> Option<&LayerEntry> {
        self.layers.get(digest)
    }

    /// Non-distributable layers `manifest.json` lists whose file imgpkg left out (AR-4).
    pub fn omitted_layers(&self) -> Vec<Digest> {
        self.listed_layers
            .iter()
            .filter(|(digest, media_type)| media::is_non_distributable(media_type) && !self.layers.contains_key(digest))
            .map(|(digest, _)| *digest)
            .collect()
    }

    /// What follows the end-of-archive block.
    pub fn trailer(&self) -> Trailer {
        self.trailer
    }
}

impl Source for ImgpkgTarSource {
    fn name(&self) -> &str {
        &self.name
    }

    /// By digest only, as in any layout: the media type is the manifest's own.
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        let digest = reference.digest.ok_or_else(|| StoreError::Invalid {
            store: self.name.clone(),
            reason: format!("{reference} names no digest; an imgpkg tarball is searched by digest"),
        })?;
        let bytes = self
            .manifests
            .get(&digest)
            .ok_or_else(|| StoreError::NotFound { store: self.name.clone(), what: reference.to_string() })?;
        let probe = Descriptor::new("", digest, bytes.len() as u64);
        let verified = self.small_blob(&probe)?;
        let manifest = RawManifest::parse(verified, None)
            .map_err(|source| StoreError::Manifest { store: self.name.clone(), source })?;
        Ok(manifest.descriptor())
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<BlobReader<'_>, StoreError> {
        let stored = self.stored_size(&descriptor.digest).ok_or_else(|| StoreError::NotFound {
            store: self.name.clone(),
            what: format!("blob {}", descriptor.digest),
        })?;
        if stored != descriptor.size {
            return Err(StoreError::Invalid {
                store: self.name.clone(),
                reason: format!(
                    "blob {}: a descriptor says {} bytes but the tarball holds {stored} (AR-I3)",
                    descriptor.digest, descriptor.size
                ),
            });
        }
        let raw = self.open_raw(&descriptor.digest).expect("a stored blob opens");
        Ok(VerifyingReader::new(raw, descriptor.digest, descriptor.size, self.name.clone()))
    }
}

impl ImgpkgTarSource {
    fn stored_size(&self, digest: &Digest) -> Option<u64> {
        let inline = self.manifests.get(digest).or_else(|| self.configs.get(digest)).map(|b| b.len() as u64);
        inline.or_else(|| self.layers.get(digest).map(|entry| entry.size))
    }
}

impl std::fmt::Debug for ImgpkgTarSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImgpkgTarSource").field("name", &self.name).field("layers", &self.layers.len()).finish()
    }
}

fn parse_digest(text: &str) -> Result<Digest, String> {
    text.parse().map_err(|e| format!("digest {text:?}: {e} (AR-I3)"))
}

/// AR-I1: an entry is `manifest.json` or `sha256-<64 lowercase hex>.tar.gz`, a regular file,
/// with no absolute path and no `..`; returns the cleaned name and the layer digest it names.
fn check_name(entry: &ScannedEntry) -> Result<(String, Option<Digest>), String> {
    let raw = entry.name.as_str();
    if raw.starts_with('/') || raw.split('/').any(|part| part == "..") {
        return Err(format!("entry {raw:?} leaves the archive (absolute or '..'; AR-I1)"));
    }
    if entry.kind != HeaderKind::Regular {
        return Err(format!("entry {raw:?} is a {} (AR-I1: only regular files)", entry.kind.describe()));
    }
    let mut name = raw;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    if name == MANIFEST_FILE {
        return Ok((name.to_string(), None));
    }
    let digest = name
        .strip_prefix("sha256-")
        .and_then(|rest| rest.strip_suffix(".tar.gz"))
        .and_then(|hex| Digest::from_hex(hex).ok())
        .ok_or_else(|| {
            format!("entry {raw:?} is not part of an imgpkg tarball (AR-I1: manifest.json, sha256-<hex>.tar.gz)")
        })?;
    Ok((name.to_string(), Some(digest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sha256_digest;

    fn tar(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data, kind) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(*kind);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("manifest.json").unwrap();
            }
            // Names are written raw: the tar crate refuses `..`, which is the point here.
            let field = &mut header.as_old_mut().name;
            field.fill(0);
            field[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn open(bytes: &[u8]) -> Result<ImgpkgTarSource, StoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imgpkg.tar");
        std::fs::write(&path, bytes).unwrap();
        ImgpkgTarSource::open(&path)
    }

    fn refused(bytes: &[u8], expected: &str) {
        match open(bytes) {
            Err(err @ StoreError::ImgpkgTar(_)) => {
                assert!(err.is_integrity());
                assert!(err.to_string().contains(expected), "{err}");
            }
            other => panic!("expected a refusal containing {expected:?}, got {other:?}"),
        }
    }

    const LAYER: &[u8] = b"layer bytes";
    const CONFIG: &str = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

    /// `manifest.json` of one image with one layer, and the image's digest.
    fn manifest_json(reference_digest: Option<&str>) -> (String, Digest) {
        let config = sha256_digest(CONFIG.as_bytes());
        let layer = sha256_digest(LAYER);
        let raw = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{layer}","size":{}}}]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            CONFIG.len(),
            media::OCI_LAYER_GZIP,
            LAYER.len()
        );
        let digest = sha256_digest(raw.as_bytes());
        let named = reference_digest.map_or_else(|| digest.to_string(), str::to_string);
        let entry = serde_json::json!([{"ImageIndex": null, "Image": {
            "Refs": [format!("registry.example.com/team/app@{named}")],
            "Layers": [{"MediaType": media::OCI_LAYER_GZIP, "Digest": layer.to_string(), "DiffID": "", "Size": LAYER.len()}],
            "Config": {"Digest": config.to_string(), "Raw": CONFIG},
            "Manifest": {"MediaType": media::OCI_MANIFEST, "Digest": digest.to_string(), "Raw": raw},
            "Tag": "", "OrigRef": "", "Labels": null,
        }}]);
        (entry.to_string(), digest)
    }

    fn layer_name() -> String {
        format!("sha256-{}.tar.gz", sha256_digest(LAYER).hex())
    }

    #[test]
    fn reads_an_image_and_verifies_every_blob_it_serves() {
        let (json, digest) = manifest_json(None);
        let regular = tar::EntryType::Regular;
        let source =
            open(&tar(&[("manifest.json", json.as_bytes(), regular), (&layer_name(), LAYER, regular)])).unwrap();
        assert_eq!(source.artifacts().len(), 1);
        assert_eq!(source.artifacts()[0].descriptor.digest, digest);
        let reference: Reference = format!("registry.example.com/team/app@{digest}").parse().unwrap();
        let descriptor = source.resolve(&reference).unwrap();
        let manifest = source.manifest(&descriptor).unwrap();
        assert_eq!(manifest.digest(), digest);
        let layer = Descriptor::new(media::OCI_LAYER_GZIP, sha256_digest(LAYER), LAYER.len() as u64);
        assert_eq!(source.small_blob(&layer).unwrap(), LAYER);
        assert_eq!(source.stored().len(), 3, "manifest, config, layer");

        // A layer file whose bytes are not its name's digest fails when read.
        let source =
            open(&tar(&[("manifest.json", json.as_bytes(), regular), (&layer_name(), b"layer bytez", regular)]))
                .unwrap();
        assert!(matches!(source.small_blob(&layer), Err(StoreError::Verify(_))));
        let wrong_size = Descriptor::new(media::OCI_LAYER_GZIP, sha256_digest(LAYER), 3);
        assert!(source.blob(&wrong_size).is_err());
    }

    #[test]
    fn refuses_each_kind_of_bad_entry_and_metadata() {
        let (json, _) = manifest_json(None);
        let manifest = ("manifest.json", json.as_bytes(), tar::EntryType::Regular);
        let layer_name = layer_name();
        let layer = (layer_name.as_str(), LAYER, tar::EntryType::Regular);
        let regular = tar::EntryType::Regular;
        refused(&tar(&[manifest, layer, layer]), "appears twice");
        refused(&tar(&[manifest, manifest]), "appears twice");
        refused(&tar(&[manifest, ("notes.txt", b"x", regular)]), "not part of an imgpkg tarball");
        refused(&tar(&[manifest, ("../sha256-x.tar.gz", b"x", regular)]), "leaves the archive");
        refused(&tar(&[manifest, ("/etc/passwd", b"x", regular)]), "leaves the archive");
        refused(&tar(&[manifest, (&layer_name, b"", tar::EntryType::Symlink)]), "symbolic link");
        refused(&tar(&[layer]), "no manifest.json");
        refused(&tar(&[("manifest.json", b"{not json", regular)]), "malformed");
        refused(&tar(&[("manifest.json", br#"[{"Image":null,"ImageIndex":null}]"#, regular)]), "neither");
        let other = sha256_digest(b"another").to_string();
        let (misnamed, _) = manifest_json(Some(&other));
        refused(&tar(&[("manifest.json", misnamed.as_bytes(), regular), layer]), "does not name");
        let mut cut = tar(&[manifest, layer]);
        cut.truncate(cut.len() - 1024 - 512);
        assert!(open(&cut).is_err(), "a truncated tarball is refused");
    }

    #[test]
    fn refuses_one_digest_with_two_manifests() {
        let (json, digest) = manifest_json(None);
        let mut entries: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let mut twin = entries[0].clone();
        twin["Image"]["Manifest"]["Raw"] =
            serde_json::Value::String(format!("{} ", twin["Image"]["Manifest"]["Raw"].as_str().unwrap()));
        entries.push(twin);
        let json = serde_json::to_string(&entries).unwrap();
        let regular = tar::EntryType::Regular;
        refused(&tar(&[("manifest.json", json.as_bytes(), regular)]), &format!("manifest {digest} is given twice"));
    }

    /// Hostile input: mutants of a valid tarball (bytes flipped, cut short) are refused or
    /// read, never a panic, and no changed blob is served as verified.
    #[test]
    fn mutated_tarballs_never_panic_nor_serve_changed_bytes() {
        let (json, _) = manifest_json(None);
        let regular = tar::EntryType::Regular;
        let valid = tar(&[("manifest.json", json.as_bytes(), regular), (&layer_name(), LAYER, regular)]);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let mut bytes = valid.clone();
            if next() % 4 == 0 {
                bytes.truncate((next() % valid.len() as u64) as usize);
            } else {
                let at = (next() % valid.len() as u64) as usize;
                bytes[at] ^= 1 << (next() % 8);
            }
            let Ok(source) = open(&bytes) else { continue };
            for (digest, size) in source.stored() {
                let descriptor = Descriptor::new("application/octet-stream", digest, size);
                if let Ok(mut reader) = source.blob(&descriptor) {
                    let mut read = Vec::new();
                    if std::io::Read::read_to_end(&mut reader, &mut read).is_ok() {
                        assert_eq!(sha256_digest(&read), digest, "a served blob matches its digest");
                    }
                }
            }
        }
    }
}
