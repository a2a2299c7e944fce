//! A minimal OCI image layout writer for seeding test registries: one image per call, one
//! gzip layer holding the given files, written byte-for-byte deterministically, so a test knows
//! every digest in advance. Calls on the same directory add images to its `index.json`.

use std::fs;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

use ferry::model::sha256_digest;

/// The image manifest media type written by [`write_image_layout`].
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What [`write_image_layout`] wrote: digests are `sha256:<hex>`.
#[derive(Clone, Debug)]
pub struct LayoutImage {
    /// The manifest digest, as a registry reports it in `Docker-Content-Digest`.
    pub manifest_digest: String,
    /// The exact manifest bytes.
    pub manifest: Vec<u8>,
    /// The config blob digest.
    pub config_digest: String,
    /// The (gzip) layer blob digest.
    pub layer_digest: String,
    /// The layer blob size in bytes.
    pub layer_size: usize,
}

/// Writes an image whose single layer holds `files` (`(path in the tar, content)`) into the OCI
/// layout at `dir` (created when missing), naming it `ref_name` in `index.json`
/// (`org.opencontainers.image.ref.name`), the name `oci:DIR:NAME` selects.
pub fn write_image_layout(dir: &Path, ref_name: &str, files: &[(&str, &[u8])]) -> LayoutImage {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("create {}: {e}", blobs.display()));
    let put = |bytes: &[u8]| {
        let digest = sha256_digest(bytes);
        let path = blobs.join(digest.hex());
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        digest.to_string()
    };

    let tar = tar_of(files);
    let diff_id = sha256_digest(&tar).to_string();
    let layer = gzip(&tar);
    let layer_digest = put(&layer);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string()
    .into_bytes();
    let config_digest = put(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let manifest_digest = put(&manifest);

    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
    let index_path = dir.join("index.json");
    let mut index: Value = match fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("existing index.json is JSON"),
        Err(_) => json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}),
    };
    let manifests = index["manifests"].as_array_mut().expect("index.json has manifests");
    manifests.retain(|m| m["annotations"][REF_NAME] != ref_name);
    manifests.push(json!({
        "mediaType": OCI_MANIFEST,
        "digest": manifest_digest,
        "size": manifest.len(),
        "annotations": {REF_NAME: ref_name},
    }));
    fs::write(&index_path, serde_json::to_vec_pretty(&index).expect("index JSON")).expect("write index.json");

    LayoutImage { manifest_digest, manifest, config_digest, layer_digest, layer_size: layer.len() }
}

/// A tar of regular files with fixed metadata (mode 0644, mtime 0, uid/gid 0).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *content).expect("append to tar");
    }
    builder.into_inner().expect("finish tar")
}

/// One gzip member of `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    // GzEncoder writes mtime 0 and no file name, so the output depends on the input alone.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip finish")
}
