//! Delta archives (spec/archive.md "Deltas", DL-2 to DL-5): an export that leaves out the layers
//! its bases hold, recording them in a [`DeltaRecord`] blob; reading that record back; and the
//! bases themselves (an earlier archive, possibly a delta, or an inventory).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::archive::open_archive;
use super::inventory::of_archive;
use crate::model::delta::{BaseIdentity, DELTA_MEDIA_TYPE, DELTA_REF_NAME, DeltaRecord, MAX_DELTA_BYTES, ReliedOn};
use crate::model::inventory::{HEADER, Inventory};
use crate::model::layout::LayoutIndex;
use crate::model::{Descriptor, Digest, annotations, sha256_digest};
use crate::store::memory::MemorySource;
use crate::store::{BlobRole, Plan, PlannedBlob, Source, StoreError};

/// A base a delta is made against or checked with: who it is and what it holds.
#[derive(Debug, Clone)]
pub struct Base {
    pub identity: BaseIdentity,
    pub holds: Inventory,
}

/// Reads `path` as an inventory (it starts with the inventory header) or else as an archive
/// (a delta's relied-on blobs counted as held when `relied_on`: a target that imported it holds
/// them).
pub fn load_base(path: &Path, workers: usize, relied_on: bool) -> Result<Base, StoreError> {
    // The name goes into the record, which refuses control characters (a newline in a name
    // would forge a line wherever it is shown).
    let name: String = path.display().to_string().chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    let reading = |e: std::io::Error| StoreError::io(format!("reading base {name}"), e);
    // A FIFO or a device at the name must not hang the export or be read for ever.
    let mut file = crate::store::layout_tar::volume_set::open_without_waiting(path).map_err(reading)?;
    if !file.metadata().map_err(reading)?.is_file() {
        return Err(StoreError::Invalid { store: name, reason: "a base is an archive or an inventory file".into() });
    }
    let mut start = [0u8; 32];
    let head = std::io::Read::read(&mut file, &mut start).map_err(reading)?;
    if start[..head].starts_with(HEADER.as_bytes()) {
        let mut bytes = start[..head].to_vec();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, MAX_INVENTORY_BYTES + 1), &mut bytes)
            .map_err(reading)?;
        if bytes.len() as u64 > MAX_INVENTORY_BYTES {
            let reason = format!("an inventory of more than {MAX_INVENTORY_BYTES} bytes is not read (DL-1)");
            return Err(StoreError::Invalid { store: name, reason });
        }
        let identity = sha256_digest(&bytes);
        let text = String::from_utf8(bytes)
            .map_err(|_| StoreError::Invalid { store: name.clone(), reason: "an inventory is UTF-8 text".into() })?;
        let holds = Inventory::parse(&text)
            .map_err(|e| StoreError::Invalid { store: name.clone(), reason: format!("not a ferry inventory: {e}") })?;
        let identity = BaseIdentity { kind: "inventory".into(), name, identity };
        return Ok(Base { identity, holds });
    }
    let archive = open_archive(path, workers)?;
    let holds = of_archive(&archive, &name, workers, relied_on)?;
    let identity = BaseIdentity { kind: "archive".into(), name, identity: sha256_digest(archive.index_bytes()) };
    Ok(Base { identity, holds })
}

/// The largest inventory read as a base: some 2.8 million blobs (96 bytes a line).
pub const MAX_INVENTORY_BYTES: u64 = 256 << 20;

/// DL-2: leaves out of `plan` every layer a base holds with the same size (manifests, indexes
/// and configs are always kept, and so are the layers in `keep`: a bundle's layer holds its
/// lock, without which nothing can walk the archive), adds the record blob to `memory` and its
/// entry to `index.json`. `None` when no base was given; an error, before anything is fetched,
/// when the record would be over what readers accept.
pub fn make_delta(
    plan: &mut Plan,
    bases: &[Base],
    keep: &BTreeSet<Digest>,
    memory: &mut MemorySource,
) -> Result<Option<DeltaRecord>, StoreError> {
    if bases.is_empty() {
        return Ok(None);
    }
    let mut relies_on = Vec::new();
    plan.blobs.retain(|blob| {
        if blob.role != BlobRole::Layer || keep.contains(&blob.descriptor.digest) {
            return true;
        }
        let digest = blob.descriptor.digest;
        // A base that lists the digest with another size is wrong about it (DL-4 would refuse
        // the pair): the layer is carried.
        let holds =
            |base: &Base| base.holds.entries.get(&digest).is_some_and(|(size, _)| *size == blob.descriptor.size);
        match bases.iter().position(holds) {
            Some(base) => {
                relies_on.push(ReliedOn { digest, size: blob.descriptor.size, base });
                false
            }
            None => true,
        }
    });
    relies_on.sort_by_key(|relied| relied.digest);
    let record = DeltaRecord {
        media_type: DELTA_MEDIA_TYPE.to_string(),
        bases: bases.iter().map(|base| base.identity.clone()).collect(),
        relies_on,
    };
    let bytes = record.to_bytes();
    let size = bytes.len() as u64;
    if size > MAX_DELTA_BYTES {
        return Err(StoreError::Invalid {
            store: "--base".into(),
            reason: format!(
                "the delta would rely on {} blobs, a record of {size} bytes, over the {MAX_DELTA_BYTES} bytes every \
                 reader accepts (DL-3); nothing was fetched: export it whole, or against fewer or newer bases",
                record.relies_on.len()
            ),
        });
    }
    let digest = memory.insert(bytes);
    plan.blobs
        .push(PlannedBlob { descriptor: Descriptor::new(DELTA_MEDIA_TYPE, digest, size), role: BlobRole::Config });
    let mut entry = Descriptor::new(DELTA_MEDIA_TYPE, digest, size);
    entry.annotations.insert(annotations::REF_NAME.to_string(), DELTA_REF_NAME.to_string());
    plan.index.manifests.push(entry);
    // AR-W5's order: by name, then digest.
    let name = |d: &Descriptor| d.annotations.get(annotations::REF_NAME).cloned();
    plan.index.manifests.sort_by(|a, b| name(a).cmp(&name(b)).then(a.digest.cmp(&b.digest)));
    Ok(Some(record))
}

/// Whether an `index.json` entry names a delta record rather than an artifact.
pub fn is_delta_entry(descriptor: &Descriptor) -> bool {
    descriptor.media_type == DELTA_MEDIA_TYPE
}

/// DL-3: the delta record of an archive, read through `source` (verified against its digest),
/// or `None` for an archive that is not a delta. A record that does not parse, or more than
/// one, is an integrity failure.
pub fn delta_record(source: &dyn Source, index: &LayoutIndex) -> Result<Option<DeltaRecord>, StoreError> {
    let entries: Vec<&Descriptor> = index.manifests.iter().filter(|d| is_delta_entry(d)).collect();
    let rejected = |reason: String| StoreError::Rejected { store: source.name().to_string(), reason };
    let entry = match entries.as_slice() {
        [] => return Ok(None),
        [entry] => *entry,
        _ => return Err(rejected(format!("index.json names {} delta records; a delta has one (DL-3)", entries.len()))),
    };
    if entry.size > MAX_DELTA_BYTES {
        return Err(rejected(format!(
            "the delta record {} is {} bytes, over {MAX_DELTA_BYTES}",
            entry.digest, entry.size
        )));
    }
    let bytes = source.small_blob(entry)?;
    DeltaRecord::parse(&bytes).map(Some).map_err(rejected)
}

/// The relied-on blobs, by digest, with the base each comes from named for messages.
pub fn relied_on_by_digest(record: &DeltaRecord) -> BTreeMap<Digest, String> {
    record.relies_on.iter().map(|relied| (relied.digest, record.base_of(relied))).collect()
}

/// [`delta_record`]'s relied-on blobs for the checks of `ops::verify`: a record that cannot be
/// read is a failure there, and then nothing is relied on.
pub(super) fn relied_on_checked(
    source: &dyn Source,
    index: &LayoutIndex,
    failures: &mut BTreeMap<String, String>,
) -> BTreeMap<Digest, u64> {
    match delta_record(source, index) {
        Ok(Some(record)) => record.relies_on.iter().map(|relied| (relied.digest, relied.size)).collect(),
        Ok(None) => BTreeMap::new(),
        Err(err) => {
            failures.insert("delta record".to_string(), err.to_string());
            BTreeMap::new()
        }
    }
}

/// DL-4: `ferry verify DELTA --base FILE...`: proves the pair complete offline. Every base that
/// is an archive is verified as `ferry verify` verifies it (its failures become the report's),
/// and every blob the delta relies on must be held, with its size, by a base (an archive's
/// stored blobs, or an inventory's lines).
pub fn verify_with_bases(
    report: &mut super::verify::VerifyReport,
    bases: &[&Path],
    options: &super::verify::VerifyOptions,
    reporter: &dyn crate::engine::Reporter,
) -> Result<(), StoreError> {
    let mut held: Vec<Base> = Vec::new();
    for path in bases {
        let base = load_base(path, options.workers, false)?;
        if base.identity.kind == "archive" {
            let checked = super::verify::verify_archive(path, options, reporter)?;
            report
                .failures
                .extend(checked.failures.iter().map(|failure| format!("base {}: {failure}", path.display())));
        }
        held.push(base);
    }
    let Some(record) = &report.delta else {
        report.warnings.push(format!("{} is not a delta: it relies on no base", report.archive));
        report.ok = report.failures.is_empty();
        return Ok(());
    };
    for relied in &record.relies_on {
        let found = held.iter().find_map(|base| base.holds.entries.get(&relied.digest));
        match found {
            Some((size, _)) if *size == relied.size => {}
            Some((size, _)) => report.failures.push(format!(
                "blob {} the delta relies on is {size} bytes in the bases given, not {} (DL-4)",
                relied.digest, relied.size
            )),
            None => report.failures.push(format!(
                "blob {} the delta relies on (from {}) is in none of the bases given (DL-4)",
                relied.digest,
                record.base_of(relied)
            )),
        }
    }
    report.ok = report.failures.is_empty();
    Ok(())
}

/// DL-5: what `pull --tar` and `describe --tar` of a delta cannot show, said before they start:
/// the layers it relies on are in its bases, not in it. `None` for an archive that is not a delta.
pub fn delta_notice(archive: &super::archive::Archive, what_fails: &str) -> Option<String> {
    let record = delta_record(archive, archive.index()).ok().flatten()?;
    let bytes = record.relies_on.iter().map(|r| r.size).fold(0, u64::saturating_add);
    let bases: Vec<String> =
        record.bases.iter().map(|base| format!("{} {} ({})", base.kind, base.name, base.identity)).collect();
    Some(format!(
        "{} is a delta: {} layer(s) ({bytes} bytes) it relies on are not in it but in {}; {what_fails}",
        archive.name(),
        record.relies_on.len(),
        bases.join(", ")
    ))
}

/// The layers a delta always carries: every bundle's (they hold the bundles' locks, which
/// every reader walks) and every referrer's (signature and attestation payloads, which
/// `verify --key` and `import --key` read from the archive).
pub fn kept_layers(graph: &crate::engine::Graph) -> BTreeSet<Digest> {
    let referrers = graph.artifacts.iter().filter(|artifact| super::referrers::is_referrer(artifact));
    graph
        .bundles
        .keys()
        .chain(referrers.map(|artifact| &artifact.descriptor.digest))
        .filter_map(|digest| graph.manifests.get(digest))
        .flat_map(|manifest| manifest.children())
        .map(|child| child.digest)
        .collect()
}
