//! Consistent forgeries: archives changed and then re-hashed so every digest, every size of a
//! parent descriptor and every header is what an honest writer would have written (issue 12).
//! Random byte flips never reach the rules that only a well-formed, well-hashed archive meets:
//! forged sizes (AR-R13), deep nesting (AR-R14), an empty index (AR-R15).
#![allow(dead_code)]

use ferry::model::Digest;
use ferry::model::sha256_digest;
use ferry::store::layout_tar::header::write_header;
use serde_json::Value;

const BLOCK: usize = 512;

/// The OCI index media type.
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI image manifest media type.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// An archive as its entries, in order: a name and its data (`None` for a directory).
#[derive(Clone)]
pub struct Entries(pub Vec<(String, Option<Vec<u8>>)>);

impl Entries {
    /// The entries of a well-formed ustar archive (ferry's own headers: no extensions).
    pub fn read(archive: &[u8]) -> Self {
        let mut entries = Vec::new();
        let mut offset = 0;
        while offset + BLOCK <= archive.len() && archive[offset..offset + BLOCK].iter().any(|&b| b != 0) {
            let header = &archive[offset..offset + BLOCK];
            let end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
            let name = String::from_utf8(header[..end].to_vec()).unwrap();
            let field = String::from_utf8_lossy(&header[124..135]).trim_matches(['\0', ' ']).to_string();
            let size = usize::from_str_radix(&field, 8).unwrap();
            let data = archive[offset + BLOCK..offset + BLOCK + size].to_vec();
            entries.push((name, if header[156] == b'5' { None } else { Some(data) }));
            offset += BLOCK + size.next_multiple_of(BLOCK);
        }
        Entries(entries)
    }

    /// The archive ferry would write for these entries (AR-W3, AR-W4): every header, padding and
    /// end block as ferry writes them, so AR-R12 holds.
    pub fn write(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in &self.0 {
            let bytes = data.as_deref().unwrap_or_default();
            out.extend_from_slice(&write_header(name, bytes.len() as u64, data.is_none()));
            out.extend_from_slice(bytes);
            out.resize(out.len().next_multiple_of(BLOCK), 0);
        }
        out.extend_from_slice(&[0u8; 2 * BLOCK]);
        out
    }

    pub fn get(&self, name: &str) -> &[u8] {
        self.0.iter().find(|(n, _)| n == name).and_then(|(_, data)| data.as_deref()).unwrap()
    }

    pub fn set(&mut self, name: &str, bytes: Vec<u8>) {
        self.0.iter_mut().find(|(n, _)| n == name).unwrap().1 = Some(bytes);
    }

    /// Replaces the blob `old` with `bytes` consistently: the entry is renamed to the new digest
    /// and every JSON blob and `index.json` naming `old` is rewritten with the new digest and size,
    /// re-hashed in turn (and its own parents after it). Returns the new digest.
    pub fn replace_blob(&mut self, old: Digest, bytes: Vec<u8>) -> Digest {
        let new = sha256_digest(&bytes);
        let size = bytes.len() as u64;
        let at = self.0.iter().position(|(name, _)| *name == old.blob_path()).expect("the blob is in the archive");
        self.0[at] = (new.blob_path(), Some(bytes));
        let parents: Vec<String> = self
            .0
            .iter()
            .filter(|(_, data)| data.as_deref().is_some_and(|d| contains(d, old.to_string().as_bytes())))
            .map(|(name, _)| name.clone())
            .collect();
        for parent in parents {
            let mut json: Value = serde_json::from_slice(self.get(&parent)).unwrap();
            set_size(&mut json, &old.to_string(), size);
            // serde_json's maps are sorted: index.json stays canonical (AR-W5).
            let text = serde_json::to_string(&json).unwrap().replace(&old.hex(), &new.hex());
            if parent == "index.json" {
                self.set("index.json", text.into_bytes());
            } else {
                let digest: Digest = format!("sha256:{}", parent.rsplit('/').next().unwrap()).parse().unwrap();
                self.replace_blob(digest, text.into_bytes());
            }
        }
        new
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Sets `size` in every object whose `digest` is `digest`.
fn set_size(json: &mut Value, digest: &str, size: u64) {
    match json {
        Value::Object(map) => {
            if map.get("digest").and_then(Value::as_str) == Some(digest) {
                map.insert("size".into(), size.into());
            }
            map.values_mut().for_each(|value| set_size(value, digest, size));
        }
        Value::Array(items) => items.iter_mut().for_each(|value| set_size(value, digest, size)),
        _ => {}
    }
}

/// The `(digest, size)` of the first descriptor of `index.json`.
pub fn first_artifact(entries: &Entries) -> Digest {
    let index: Value = serde_json::from_slice(entries.get("index.json")).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().parse().unwrap()
}

/// A chain of `length` OCI indexes, each pointing at the next, over one image with a config and
/// no layers: `(blobs as (digest, bytes), the top's descriptor as JSON)`, the top first.
pub fn index_chain(length: usize) -> (Vec<(Digest, Vec<u8>)>, Value) {
    let config = b"{}".to_vec();
    let config_digest = sha256_digest(&config);
    let image = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": 2},
        "layers": [],
    }))
    .unwrap();
    let mut descriptor = serde_json::json!({
        "mediaType": MANIFEST_TYPE, "digest": sha256_digest(&image).to_string(), "size": image.len(),
    });
    let mut blobs = vec![(config_digest, config), (sha256_digest(&image), image)];
    for _ in 0..length {
        let index = serde_json::to_vec(
            &serde_json::json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [descriptor]}),
        )
        .unwrap();
        let digest = sha256_digest(&index);
        descriptor = serde_json::json!({"mediaType": INDEX_TYPE, "digest": digest.to_string(), "size": index.len()});
        blobs.push((digest, index));
    }
    blobs.reverse();
    (blobs, descriptor)
}

/// A layout (an archive's entries, not a ferry archive: no `dev.ferry.*` annotations) whose
/// `index.json` lists `top`, holding `blobs`.
pub fn layout_of(blobs: Vec<(Digest, Vec<u8>)>, top: Value) -> Entries {
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]})).unwrap();
    let mut entries = vec![
        ("oci-layout".to_string(), Some(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())),
        ("index.json".to_string(), Some(index)),
        ("blobs/".to_string(), None),
        ("blobs/sha256/".to_string(), None),
    ];
    entries.extend(blobs.into_iter().map(|(digest, bytes)| (digest.blob_path(), Some(bytes))));
    Entries(entries)
}
