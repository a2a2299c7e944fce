//! Archives are untrusted input (spec/archive.md AR-R*): whatever bytes a file or a pipe holds,
//! `verify`, `inspect` and the stream reader must answer with a report or an error, never a
//! panic, and no changed byte of a ferry archive may pass `verify`. A valid archive (the
//! committed bundle fixture, exported by the binary) is mutated from a fixed seed: bytes
//! flipped in tar headers and JSON, size fields rewritten, the file cut short, regions copied
//! over each other; so is a volume table. `FERRY_MUTANTS=N` runs more of them.

mod cli;

#[path = "support/xorshift.rs"]
mod xorshift;

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use cli::{ferry, text};
use ferry::engine::NoReport;
use ferry::model::Digest;
use ferry::ops::inspect::inspect_archive;
use ferry::ops::stream::verify_stream;
use ferry::ops::verify::{VerifyOptions, verify_archive};
use xorshift::Prng;

const BLOCK: usize = 512;

/// How many mutants each test makes: `FERRY_MUTANTS`, or 400.
fn mutant_count() -> u64 {
    std::env::var("FERRY_MUTANTS").ok().and_then(|n| n.parse().ok()).unwrap_or(400)
}

/// Offsets of every tar header in a well-formed archive, with its entry's data size.
fn headers(archive: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut offset = 0;
    while offset + BLOCK <= archive.len() && archive[offset..offset + BLOCK].iter().any(|&b| b != 0) {
        let field = text(&archive[offset + 124..offset + 136]);
        let size = usize::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap();
        found.push((offset, size));
        offset += BLOCK + size.next_multiple_of(BLOCK);
    }
    found
}

/// One mutant of `archive` and what was done to it.
fn mutate(archive: &[u8], headers: &[(usize, usize)], rng: &mut Prng) -> (Vec<u8>, String) {
    let mut bytes = archive.to_vec();
    let (header, size) = headers[rng.below(headers.len())];
    match rng.below(6) {
        0 => {
            let at = header + rng.below(BLOCK);
            bytes[at] ^= 1 << rng.below(8);
            (bytes, format!("bit flipped in the header at {header}, byte {at}"))
        }
        1 => {
            const SIZE_BYTES: &[u8] = b"0123456777 \0x";
            let digits: String = (0..11).map(|_| char::from(SIZE_BYTES[rng.below(SIZE_BYTES.len())])).collect();
            bytes[header + 124..header + 135].copy_from_slice(digits.as_bytes());
            (bytes, format!("size field of the header at {header} set to {digits:?}"))
        }
        2 => {
            let cut = rng.below(archive.len());
            bytes.truncate(cut);
            (bytes, format!("cut to {cut} bytes"))
        }
        3 if size > 0 => {
            // Entry data: JSON for metadata and manifests, where a changed character matters most.
            let at = header + BLOCK + rng.below(size);
            const JSON_BYTES: &[u8] = b"\"{}[],:0123456789abcdef\\ \0\xff";
            bytes[at] = JSON_BYTES[rng.below(JSON_BYTES.len())];
            (bytes, format!("data byte {at} of the entry at {header} replaced"))
        }
        4 => {
            let (from, len) = (rng.below(archive.len()), 1 + rng.below(2 * BLOCK));
            let to = rng.below(archive.len());
            let len = len.min(archive.len() - from).min(archive.len() - to);
            let chunk = archive[from..from + len].to_vec();
            bytes[to..to + len].copy_from_slice(&chunk);
            (bytes, format!("{len} bytes from {from} copied over {to}"))
        }
        _ => {
            let name_at = header + rng.below(100);
            const NAME_BYTES: &[u8] = b"./\0\xff.a";
            bytes[name_at] = NAME_BYTES[rng.below(NAME_BYTES.len())];
            (bytes, format!("name byte {name_at} of the header at {header} changed"))
        }
    }
}

/// How every archive reader took `bytes`: which one panicked, or whether verify passed them
/// and the identity it saw.
fn read_mutant(bytes: &[u8], path: &Path) -> Result<(bool, Option<Digest>), &'static str> {
    std::fs::write(path, bytes).unwrap();
    let options = VerifyOptions { workers: 2, volume_digests: false };
    let Ok(verified) = catch_unwind(AssertUnwindSafe(|| verify_archive(path, &options, &NoReport))) else {
        return Err("verify");
    };
    if catch_unwind(AssertUnwindSafe(|| inspect_archive(path, 2))).is_err() {
        return Err("inspect");
    }
    let Ok(streamed) = catch_unwind(AssertUnwindSafe(|| verify_stream(Cursor::new(bytes), 2, &NoReport))) else {
        return Err("verify -");
    };
    let (passed, identity) = verified.map_or((false, None), |report| (report.ok, report.identity));
    assert_eq!(passed, streamed.ok, "verify and verify - agree");
    Ok((passed, identity))
}

/// The bundle fixture exported by the binary into `dir`: its path and bytes.
fn valid_archive(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let valid = dir.join("valid.tar");
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts/bundle");
    let exported = ferry().args(["export", "-q", "--oci-layout"]).arg(&layout).arg("-o").arg(&valid).output().unwrap();
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let bytes = std::fs::read(&valid).unwrap();
    (valid, bytes)
}

/// AR-R10, AR-R11: changes to `index.json` that leave it valid JSON, each of the same length
/// (so every tar header still holds), are failures of verify, of `verify -` and of the CLI.
#[test]
fn valid_json_changes_to_index_json_are_caught() {
    let scratch = tempfile::tempdir().unwrap();
    let (_, archive) = valid_archive(scratch.path());
    let (index_header, index_size) = headers(&archive)[1];
    let index = index_header + BLOCK..index_header + BLOCK + index_size;
    assert_eq!(&archive[index_header..index_header + 10], b"index.json");
    let cases = [
        ("vnd.oci.image.manifest.v1+json", "vnd.oci.image4manifest.v1+json", "AR-R10"),
        ("\"annotations\"", "\"ann tations\"", "canonical JSON"),
        (
            "dev.ferry.original-ref\":\"registry.example.com/team/svc@sha256",
            "dev.ferry.original-ref\":\"registry.example.com/team/svc@sha556",
            "is not a reference",
        ),
        (
            "\"org.opencontainers.image.ref.name\":\"registry.example.com/team/app@",
            "\"org.opencon0ainers.image.ref.name\":\"registry.example.com/team/app@",
            "has no org.opencontainers.image.ref.name",
        ),
        ("\"dev.ferry.root\":\"true\"", "\"dev.ferry.root\":\"True\"", "ferry writes only"),
    ];
    for (from, to, expected) in cases {
        let json = text(&archive[index.clone()]);
        assert!(json.contains(from), "{from} in {json}");
        let mut bytes = archive.clone();
        bytes[index.clone()].copy_from_slice(json.replacen(from, to, 1).as_bytes());
        let path = scratch.path().join("changed.tar");
        std::fs::write(&path, &bytes).unwrap();
        let options = VerifyOptions { workers: 2, volume_digests: false };
        let report = verify_archive(&path, &options, &NoReport).unwrap();
        assert!(!report.ok && report.failures.join("\n").contains(expected), "{to}: {:?}", report.failures);
        let streamed = verify_stream(Cursor::new(&bytes), 2, &NoReport);
        assert!(!streamed.ok && streamed.failures.join("\n").contains(expected), "{to}: {:?}", streamed.failures);
        let cli = ferry().arg("verify").arg(&path).output().unwrap();
        assert_eq!(cli.status.code(), Some(3), "{to}: {}", text(&cli.stdout));
    }
}

/// AR-R12: bytes in the tar padding of a ferry archive (after a blob, after index.json) are a
/// failure of verify from a file and from a pipe, naming the entry.
#[test]
fn padding_holds_only_zeros() {
    let scratch = tempfile::tempdir().unwrap();
    let (_, archive) = valid_archive(scratch.path());
    let entries = headers(&archive);
    for (header, size) in [entries[1], entries[entries.len() - 1]] {
        assert_ne!(size % BLOCK, 0, "the entry at {header} has padding");
        let mut bytes = archive.clone();
        bytes[header + BLOCK + size] = b'x';
        let path = scratch.path().join("padded.tar");
        std::fs::write(&path, &bytes).unwrap();
        let options = VerifyOptions { workers: 2, volume_digests: false };
        let report = verify_archive(&path, &options, &NoReport).unwrap();
        assert!(!report.ok && report.failures.join("\n").contains("AR-R12"), "{:?}", report.failures);
        let streamed = verify_stream(Cursor::new(&bytes), 2, &NoReport);
        assert!(!streamed.ok && streamed.failures.join("\n").contains("AR-R12"), "{:?}", streamed.failures);
    }
}

/// AR-R12: what follows the two end blocks (a tape's or a raw device's padding) is not part of
/// the archive: a warning after a file, unread from a pipe; the second end block is.
#[test]
fn media_padding_after_the_end_is_not_part_of_the_archive() {
    let scratch = tempfile::tempdir().unwrap();
    let (_, archive) = valid_archive(scratch.path());
    let options = VerifyOptions { workers: 2, volume_digests: false };
    let path = scratch.path().join("padded.tar");
    for tail in [vec![0u8; 10240], b"stale data from the device".to_vec()] {
        let bytes = [archive.clone(), tail.clone()].concat();
        std::fs::write(&path, &bytes).unwrap();
        let report = verify_archive(&path, &options, &NoReport).unwrap();
        assert!(report.ok, "{:?}", report.failures);
        assert!(report.warnings.iter().any(|w| w.contains(&format!("{} bytes follow the end", tail.len()))));
        assert!(verify_stream(Cursor::new(&bytes), 2, &NoReport).ok);
    }
    let mut second_block = archive.clone();
    let at = second_block.len() - 100;
    second_block[at] = 1;
    assert!(!verify_stream(Cursor::new(&second_block), 2, &NoReport).ok, "the second end block is the archive's");
}

#[test]
fn mutated_archives_are_reported_never_panic_on() {
    let scratch = tempfile::tempdir().unwrap();
    let (valid, archive) = valid_archive(scratch.path());
    let headers = headers(&archive);
    let options = VerifyOptions { workers: 2, volume_digests: false };
    let report = verify_archive(&valid, &options, &NoReport).unwrap();
    assert!(report.ok, "the unmutated archive verifies");
    let identity = report.identity;

    let mutants = mutant_count();
    let mutant_path = scratch.path().join("mutant.tar");
    let mut panics = Vec::new();
    let (mut unnoticed, mut pinned) = (Vec::new(), 0);
    for seed in 1..=mutants {
        let mut rng = Prng::seeded(seed);
        let (bytes, what) = mutate(&archive, &headers, &mut rng);
        match read_mutant(&bytes, &mutant_path) {
            Err(reader) => panics.push(format!("seed {seed}: {reader} panicked on an archive with {what}")),
            // A change to index.json that keeps every rule (a letter of a host name inside an
            // annotation, say) changes the identity: `--identity` refuses it.
            Ok((true, seen)) if bytes != archive && seen != identity => pinned += 1,
            Ok((true, _)) if bytes != archive => unnoticed.push(format!("seed {seed}: {what}")),
            Ok(_) => {}
        }
    }
    assert!(panics.is_empty(), "{} of {mutants} mutants made a reader panic:\n{}", panics.len(), panics.join("\n"));
    // Every byte of a ferry archive is checked: blobs by digest, headers and padding and the end
    // by AR-R12, index.json by AR-R10/R11 and, beyond what rules can tell, by its identity.
    assert!(unnoticed.is_empty(), "{} of {mutants} changes passed verify:\n{}", unnoticed.len(), unnoticed.join("\n"));
    assert!(pinned * 100 <= mutants, "{pinned} of {mutants} changes passed all but --identity");
}

/// A volume table (`ARCHIVE.volumes.json`) is untrusted too (AR-S2): mutated tables are
/// reported, never panicked on, and none that changed passes verify.
#[test]
fn mutated_volume_tables_are_reported_never_panic_on() {
    let scratch = tempfile::tempdir().unwrap();
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts/bundle");
    let split = scratch.path().join("split.tar");
    let exported = ferry()
        .args(["export", "-q", "--volume-size", "8KiB", "--oci-layout"])
        .arg(&layout)
        .arg("-o")
        .arg(&split)
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let table_path = scratch.path().join("split.tar.volumes.json");
    let table = std::fs::read(&table_path).unwrap();
    let options = VerifyOptions { workers: 2, volume_digests: true };
    assert!(verify_archive(&table_path, &options, &NoReport).unwrap().ok);

    const TABLE_BYTES: &[u8] = b"\"{}[],:0123456789./\\ \0xsha";
    let mutants = mutant_count();
    let (mut panics, mut passed) = (Vec::new(), Vec::new());
    for seed in 1..=mutants {
        let mut rng = Prng::seeded(seed);
        let mut bytes = table.clone();
        let at = rng.below(bytes.len());
        let what = match rng.below(3) {
            0 => {
                bytes[at] = TABLE_BYTES[rng.below(TABLE_BYTES.len())];
                format!("byte {at} replaced")
            }
            1 => {
                bytes.truncate(at);
                format!("cut to {at} bytes")
            }
            _ => {
                bytes.splice(at..at, b"../".iter().copied());
                format!("\"../\" inserted at {at}")
            }
        };
        if bytes == table {
            continue;
        }
        std::fs::write(&table_path, &bytes).unwrap();
        match catch_unwind(AssertUnwindSafe(|| verify_archive(&table_path, &options, &NoReport))) {
            Err(_) => panics.push(format!("seed {seed}: verify panicked on a table with {what}")),
            // Only a change of JSON whitespace may pass: what the table says may not change.
            Ok(Ok(report)) if report.ok && !same_json(&bytes, &table) => {
                passed.push(format!("seed {seed}: {what}"));
            }
            Ok(_) => {}
        }
    }
    std::fs::write(&table_path, &table).unwrap();
    assert!(panics.is_empty(), "{}", panics.join("\n"));
    assert!(passed.is_empty(), "{} of {mutants} changed tables passed verify:\n{}", passed.len(), passed.join("\n"));
}

fn same_json(a: &[u8], b: &[u8]) -> bool {
    let parse = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).ok();
    parse(a).is_some() && parse(a) == parse(b)
}
