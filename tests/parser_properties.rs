//! Property tests of every parser of untrusted bytes (issue 12, "Done means"): the tar header
//! and PAX parsers and the archive index reader (spec/archive.md AR-R1..AR-R8, AR-R13), the
//! manifest, index and `index.json` parsers (AR-R8, AR-R13, AR-R15) and the lock parsers. From a
//! fixed seed, random and structure-aware inputs (huge, negative and non-numeric sizes, deep
//! JSON and YAML nesting, duplicate keys, odd UTF-8) must give an error or a value, never a
//! panic or a stack overflow; and what does parse keeps the rules (every size within the int64).
//! Each property runs for a bounded time (`FERRY_PROPERTY_SECONDS`, default 2) in a normal
//! `cargo test`; a failure names the seed that replays it.

#[path = "support/xorshift.rs"]
mod xorshift;

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use ferry::engine::NoReport;
use ferry::model::layout::LayoutIndex;
use ferry::model::lock::{AnyLock, BundleLock, ImageLocations, ImagesLock};
use ferry::model::manifest::MAX_BLOB_SIZE;
use ferry::model::{RawManifest, sha256_digest};
use ferry::ops::stream::verify_stream;
use ferry::store::layout_tar::LayoutTarSource;
use ferry::store::layout_tar::header::{parse_header, parse_pax, write_header};
use xorshift::Prng;

/// Runs `property` on seeds 1, 2, ... for the time budget; fails naming every seed that panicked.
fn for_a_while(name: &str, mut property: impl FnMut(&mut Prng) -> Result<(), String>) {
    let seconds = std::env::var("FERRY_PROPERTY_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let budget = Duration::from_secs(seconds);
    let started = Instant::now();
    let (mut runs, mut failures) = (0u64, Vec::new());
    while started.elapsed() < budget && failures.len() < 10 {
        runs += 1;
        let mut rng = Prng::seeded(runs);
        match catch_unwind(AssertUnwindSafe(|| property(&mut rng))) {
            Ok(Ok(())) => {}
            Ok(Err(broken)) => failures.push(format!("seed {runs}: {broken}")),
            Err(_) => failures.push(format!("seed {runs}: panicked")),
        }
    }
    assert!(runs >= 20, "{name}: only {runs} runs in {budget:?}");
    assert!(failures.is_empty(), "{name}: {} of {runs} runs failed:\n{}", failures.len(), failures.join("\n"));
}

/// Sizes worth trying: edges of octal, the int64 and the u64, negatives and junk.
const SIZES: &[&str] = &[
    "0",
    "1",
    "-1",
    "-9223372036854775808",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "1e19",
    "1.0",
    "\"5\"",
    "null",
    "0x10",
    "00",
];

/// Odd text: invalid escapes, lone surrogates, BOMs, NULs, right-to-left marks, bytes of
/// invalid UTF-8 (for byte-level parsers).
const ODD_TEXT: &[&str] =
    &["\\ud800", "\\udfff\\ud800", "\u{feff}", "\\u0000", "\u{202e}", "é", "\u{10ffff}", "\\x", "\\", "\u{0}"];

/// A JSON value built to trouble a parser, as text.
fn hostile_json(rng: &mut Prng, depth: usize) -> String {
    match rng.below(if depth > 4 { 4 } else { 9 }) {
        0 => rng.pick(SIZES).to_string(),
        1 => format!("\"{}\"", rng.pick(ODD_TEXT)),
        2 => format!("\"sha256:{}\"", hex::encode(sha256_digest(&rng.bytes(4)).as_bytes())),
        3 => "true".to_string(),
        4 => {
            let n = 1 + rng.below(200_000);
            format!("{}{}", "[".repeat(n), "]".repeat(n * rng.below(2)))
        }
        5 => {
            // Duplicate keys, the same key in two spellings, keys of odd text.
            let key = rng.pick(&["size", "digest", "mediaType", "manifests", "layers", "config", "annotations"]);
            format!(
                "{{\"{key}\":{},\"{key}\":{},\"{}\":1}}",
                hostile_json(rng, depth + 1),
                hostile_json(rng, depth + 1),
                rng.pick(ODD_TEXT)
            )
        }
        6 => format!("[{}]", (0..rng.below(4)).map(|_| hostile_json(rng, depth + 1)).collect::<Vec<_>>().join(",")),
        _ => descriptor(rng, depth + 1),
    }
}

/// A descriptor, mostly well formed, with a size from [`SIZES`] and now and then a field
/// replaced by something hostile.
fn descriptor(rng: &mut Prng, depth: usize) -> String {
    let digest = sha256_digest(&rng.bytes(4));
    let mut fields = vec![
        format!("\"mediaType\":\"{}\"", rng.pick(&["application/vnd.oci.image.manifest.v1+json", "x", ""])),
        format!("\"digest\":\"{digest}\""),
        format!("\"size\":{}", rng.pick(SIZES)),
    ];
    if rng.below(3) == 0 {
        let at = rng.below(fields.len());
        fields[at] = format!(
            "\"{}\":{}",
            rng.pick(&["size", "digest", "annotations", "platform"]),
            hostile_json(rng, depth + 1)
        );
    }
    if rng.below(4) == 0 {
        fields.push(format!("\"size\":{}", rng.pick(SIZES)));
    }
    format!("{{{}}}", fields.join(","))
}

/// A manifest or index, structure-aware: the right shape with hostile parts.
fn manifest_text(rng: &mut Prng) -> String {
    let descriptors = |rng: &mut Prng| (0..rng.below(4)).map(|_| descriptor(rng, 0)).collect::<Vec<_>>().join(",");
    match rng.below(4) {
        0 => format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{},\"layers\":[{}]}}",
            descriptor(rng, 0),
            descriptors(rng)
        ),
        1 => format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{}]}}",
            descriptors(rng)
        ),
        2 => format!("{{\"schemaVersion\":{},\"manifests\":{}}}", rng.pick(SIZES), hostile_json(rng, 0)),
        _ => hostile_json(rng, 0),
    }
}

/// Every size a parsed descriptor holds is within the int64 (AR-R13).
fn sizes_hold(sizes: impl IntoIterator<Item = u64>, text: &str) -> Result<(), String> {
    match sizes.into_iter().find(|&size| size > MAX_BLOB_SIZE) {
        Some(size) => Err(format!("a size of {size} was accepted from {}", &text[..text.len().min(300)])),
        None => Ok(()),
    }
}

#[test]
fn manifest_and_index_parsers_refuse_hostile_json() {
    for_a_while("manifests", |rng| {
        let mut text = manifest_text(rng).into_bytes();
        if rng.below(8) == 0 {
            let at = rng.below(text.len());
            text[at] = *rng.pick(&[0xff, 0xc3, 0x80, 0xed, b'\\', b'"']);
        }
        let shown = String::from_utf8_lossy(&text).into_owned();
        if let Ok(manifest) = RawManifest::parse(text.clone(), None) {
            sizes_hold(manifest.children().iter().map(|child| child.size), &shown)?;
        }
        if let Ok(index) = LayoutIndex::parse(&text, "index.json") {
            if index.manifests.is_empty() {
                return Err("an empty index.json was accepted (AR-R15)".into());
            }
            sizes_hold(index.manifests.iter().map(|d| d.size), &shown)?;
        }
        Ok(())
    });
}

#[test]
fn lock_parsers_refuse_hostile_yaml() {
    const HEADS: &[&str] = &[
        "apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\n",
        "apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: BundleLock\n",
        "apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImageLocations\n",
        "",
    ];
    const VALUES: &[&str] = &[
        "registry.example.com/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "~",
        "&a [*a]",
        "*nothing",
        "!!binary aGk=",
        "!!python/object x",
        "\"\\ud800\"",
        "\u{feff}x",
        "\u{202e}",
        "18446744073709551616",
        "-1",
    ];
    for_a_while("locks", |rng| {
        let mut text = rng.pick(HEADS).to_string();
        for _ in 0..1 + rng.below(4) {
            let value = rng.pick(VALUES);
            match rng.below(6) {
                0 => text.push_str(&format!("images:\n- image: {value}\n  annotations: {{a: {value}, a: b}}\n")),
                1 => text.push_str(&format!("bundle:\n  image: {value}\n  tag: {value}\n")),
                2 => {
                    let n = 1 + rng.below(100_000);
                    text.push_str(&format!("images: {}{}\n", "[".repeat(n), "]".repeat(n * rng.below(2))));
                }
                3 => text.push_str(&format!("images: {{{}}}\n", "{a: ".repeat(1 + rng.below(5_000)))),
                4 => text.push_str(&format!("kind: {value}\nkind: ImagesLock\n")),
                _ => text.push_str(&format!("{}: {value}\n", rng.pick(&["images", "bundle", "apiVersion", "\u{0}"]))),
            }
        }
        let _ = ImagesLock::parse(&text, "lock");
        let _ = BundleLock::parse(&text, "lock");
        let _ = ImageLocations::parse(&text, "lock");
        let _ = AnyLock::parse(&text, "lock");
        Ok(())
    });
}

/// A header block with a hostile size field (octal junk, base-256 up to and past 2^64,
/// negative base-256), its checksum made right so the size is what is judged.
fn hostile_header(rng: &mut Prng, name: &str) -> [u8; 512] {
    let mut block = write_header(name, rng.below(2000) as u64, rng.below(5) == 0);
    match rng.below(5) {
        0 => {
            block[124] = 0x80 | (rng.next() as u8 & 0x7f);
            block[125..136].copy_from_slice(&rng.bytes(11));
        }
        1 => {
            block[124..136].fill(0);
            block[124] = 0x80;
            block[128..136].copy_from_slice(&rng.pick(&[u64::MAX, MAX_BLOB_SIZE, MAX_BLOB_SIZE + 1]).to_be_bytes());
        }
        2 => {
            let digits: String = (0..11).map(|_| char::from(*rng.pick(b"0123456789 \0x-"))).collect();
            block[124..135].copy_from_slice(digits.as_bytes());
        }
        3 => block[156] = *rng.pick(b"0125xgLKS7\0A"),
        _ => {
            let at = rng.below(512);
            block[at] = rng.next() as u8;
        }
    }
    if rng.below(8) != 0 {
        block[148..156].fill(b' ');
        let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
        block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    }
    block
}

#[test]
fn header_and_pax_parsers_refuse_hostile_blocks() {
    for_a_while("headers", |rng| {
        let block = if rng.below(4) == 0 {
            let mut block = [0u8; 512];
            block.copy_from_slice(&rng.bytes(512));
            block
        } else {
            hostile_header(rng, "blobs/sha256/x")
        };
        if let Ok(header) = parse_header(&block) {
            sizes_hold([header.size], "a header")?;
        }
        let key = rng.pick(&["size", "path", "", "size=", "\u{0}"]);
        let value = rng.pick(SIZES);
        let record = format!(" {key}={value}\n");
        let random_length = rng.below(100);
        let claimed = [record.len() + 2, record.len() + 3, 0, 1, usize::MAX, random_length];
        let pax = format!("{}{record}", rng.pick(&claimed));
        let mut data = pax.into_bytes();
        if rng.below(3) == 0 {
            let extra = rng.below(40);
            data.extend(rng.bytes(extra));
        }
        if let Ok(overrides) = parse_pax(&data) {
            sizes_hold(overrides.size, "a PAX header")?;
        }
        Ok(())
    });
}

/// Whole archives: a small valid layout (one image) written as tar, then headers made hostile,
/// PAX and GNU long-name headers inserted with hostile sizes, the index made hostile JSON, or
/// the file cut; read from a file (the index reader) and from a pipe (the stream reader).
#[test]
fn archive_readers_refuse_hostile_tars() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("hostile.tar");
    for_a_while("archives", |rng| {
        let config = b"{}".to_vec();
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{}\",\"size\":2}},\"layers\":[]}}",
            sha256_digest(&config)
        )
        .into_bytes();
        let index = if rng.below(3) == 0 {
            manifest_text(rng).into_bytes()
        } else {
            format!(
                "{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{}\",\"size\":{}}}]}}",
                sha256_digest(&manifest),
                if rng.below(3) == 0 { rng.pick(SIZES).to_string() } else { manifest.len().to_string() }
            )
            .into_bytes()
        };
        let mut entries: Vec<(String, Vec<u8>)> = vec![
            ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json".into(), index),
            (sha256_digest(&manifest).blob_path(), manifest),
            (sha256_digest(&config).blob_path(), config),
        ];
        let mut out = Vec::new();
        let hostile_at = rng.below(entries.len() + 1);
        for (i, (name, data)) in entries.drain(..).enumerate() {
            if i == hostile_at {
                match rng.below(3) {
                    0 => {
                        let block = hostile_header(rng, &name);
                        out.extend_from_slice(&block);
                    }
                    1 => {
                        let record = format!(" size={}\n", rng.pick(SIZES));
                        let pax = format!("{}{record}", record.len() + 2).into_bytes();
                        out.extend_from_slice(&write_header("pax", pax.len() as u64, false));
                        let at = out.len() - 512 + 156;
                        out[at] = b'x';
                        fix_checksum(&mut out);
                        out.extend_from_slice(&pax);
                        out.resize(out.len().next_multiple_of(512), 0);
                    }
                    _ => {
                        let length = rng.below(600);
                        let long = rng.bytes(length);
                        out.extend_from_slice(&write_header("././@LongLink", long.len() as u64, false));
                        let at = out.len() - 512 + 156;
                        out[at] = b'L';
                        fix_checksum(&mut out);
                        out.extend_from_slice(&long);
                        out.resize(out.len().next_multiple_of(512), 0);
                    }
                }
            }
            out.extend_from_slice(&write_header(&name, data.len() as u64, false));
            out.extend_from_slice(&data);
            out.resize(out.len().next_multiple_of(512), 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        if rng.below(6) == 0 {
            out.truncate(rng.below(out.len()));
        }
        std::fs::write(&path, &out).unwrap();
        let from_file = LayoutTarSource::open(&path);
        let streamed = verify_stream(Cursor::new(&out), 2, &NoReport);
        if let Ok(archive) = &from_file {
            sizes_hold(archive.index().manifests.iter().map(|d| d.size), "index.json")?;
            if archive.index().manifests.is_empty() {
                return Err("an empty index.json was accepted (AR-R15)".into());
            }
        }
        if streamed.ok && from_file.is_err() {
            return Err("the stream reader passed what the file reader refused".into());
        }
        Ok(())
    });
}

/// Makes the checksum of the last header block in `out` right again.
fn fix_checksum(out: &mut [u8]) {
    let start = out.len() - 512;
    let block = &mut out[start..];
    block[148..156].fill(b' ');
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}
