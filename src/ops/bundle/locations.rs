//! The ImageLocations record imgpkg reads after a relocation (spec/imgpkg.md "Import:
//! one repository, imgpkg's tags, the ImageLocations record"): a Docker schema 2 image whose config has an
//! empty `config` object and whose one gzip layer holds `image-locations.yml` (mode 0600),
//! listing the bundle's direct lock entries by their original reference, sorted.

use std::io::Write;

use flate2::Compression;
use flate2::GzBuilder;
use serde_json::json;

use crate::engine::layer::{Bounded, LayerError, MAX_RECORD_LAYER_BYTES, read_small_files};
use crate::model::layout::canonical_json;
use crate::model::lock::{ImageLocation, ImageLocations};
use crate::model::{Descriptor, Digest, RawManifest, media, sha256_digest};
use crate::store::memory::MemorySource;
use crate::store::{BlobRole, PlannedBlob};

/// The record's file name inside its layer.
pub const FILE_NAME: &str = "image-locations.yml";

/// The tag a bundle's record gets: `sha256-<bundle hex>.image-locations.imgpkg`.
pub fn record_tag(bundle: &Digest) -> String {
    format!("{}.image-locations.imgpkg", bundle.tag_form())
}

/// A built record image: its manifest, and its config and layer added to `blobs`.
pub struct LocationsImage {
    pub manifest: RawManifest,
    pub blobs: Vec<PlannedBlob>,
    pub yaml: String,
}

/// Builds the record for a bundle whose direct lock entries are `entries` (original
/// reference, whether that entry is a bundle). Deterministic: the same entries give the same
/// digest.
pub fn build(entries: &[(String, bool)], blobs: &mut MemorySource) -> LocationsImage {
    let record = ImageLocations::new(
        entries
            .iter()
            .map(|(image, is_bundle)| ImageLocation { image: image.clone(), is_bundle: *is_bundle })
            .collect(),
    );
    let yaml = record.to_yaml();
    let tar = single_file_tar(FILE_NAME, yaml.as_bytes());
    let diff_id = sha256_digest(&tar);
    let layer = gzip(&tar);
    let config = canonical_json(&json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "os": "",
        "rootfs": { "diff_ids": [diff_id.to_string()], "type": "layers" },
    }));
    let config_descriptor = Descriptor::new(media::DOCKER_CONFIG, blobs.insert(config.clone()), config.len() as u64);
    let layer_descriptor = Descriptor::new(media::DOCKER_LAYER_GZIP, blobs.insert(layer.clone()), layer.len() as u64);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::DOCKER_MANIFEST,
        "config": { "mediaType": media::DOCKER_CONFIG, "size": config.len(), "digest": config_descriptor.digest.to_string() },
        "layers": [{ "mediaType": media::DOCKER_LAYER_GZIP, "size": layer.len(), "digest": layer_descriptor.digest.to_string() }],
    });
    let manifest = RawManifest::parse(canonical_json(&manifest), Some(media::DOCKER_MANIFEST))
        .expect("the record manifest ferry writes is valid");
    LocationsImage {
        manifest,
        blobs: vec![
            PlannedBlob { descriptor: config_descriptor, role: BlobRole::Config },
            PlannedBlob { descriptor: layer_descriptor, role: BlobRole::Layer },
        ],
        yaml,
    }
}

/// A tar with one file at its root: mode 0600, uid/gid 0, mtime 0.
fn single_file_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_path(name).expect("a short, plain file name");
    header.set_size(content.len() as u64);
    header.set_mode(0o600);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder.append(&header, content).expect("writing to memory cannot fail");
    builder.into_inner().expect("writing to memory cannot fail")
}

/// Gzip with a fixed header (no name, mtime 0), so the layer digest is reproducible.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new().mtime(0).write(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("writing to memory cannot fail");
    encoder.finish().expect("writing to memory cannot fail")
}

/// Reads the YAML back out of a record layer (gzip), under the layer rules and bounded in
/// memory and in decompressed bytes (spec/archive.md BL-7): a record is small, a bomb is refused.
pub fn read_layer(layer_gzip: &[u8], layer: &str) -> Result<String, LayerError> {
    let stream = Bounded::new(flate2::read::MultiGzDecoder::new(layer_gzip), MAX_RECORD_LAYER_BYTES);
    let [found]: [Option<String>; 1] =
        read_small_files(stream, layer, false, &[FILE_NAME])?.try_into().expect("one slot per wanted file");
    found.ok_or_else(|| LayerError::Refused {
        layer: layer.to_string(),
        entry: FILE_NAME.to_string(),
        reason: format!("the record layer holds no {FILE_NAME}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_deterministic_sorted_and_readable() {
        let entries =
            vec![("r.example.com/b@sha256:1".to_string(), true), ("r.example.com/a@sha256:2".to_string(), false)];
        let one = build(&entries, &mut MemorySource::new());
        let two = build(&entries, &mut MemorySource::new());
        assert_eq!(one.manifest.digest(), two.manifest.digest());
        assert_eq!(one.manifest.media_type(), media::DOCKER_MANIFEST);
        assert!(one.yaml.starts_with("---\napiVersion: imgpkg.carvel.dev/v1alpha1\nimages:\n- image: r.example.com/a"));
        assert!(one.yaml.contains("isBundle: true"));
        let mut blobs = MemorySource::new();
        let image = build(&entries, &mut blobs);
        let layer = &image.blobs[1].descriptor;
        let mut reader = crate::store::Source::blob(&blobs, layer).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut bytes).unwrap();
        assert_eq!(read_layer(&bytes, "record").unwrap(), image.yaml);
    }
}
