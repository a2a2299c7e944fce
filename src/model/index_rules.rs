//! What the `index.json` of a ferry archive must hold beyond parsing (spec/archive.md AR-R11):
//! the canonical JSON ferry writes (AR-W5), entries in ferry's order, each one named, and
//! ferry's own annotations well-formed and agreeing with the entry they sit on.
//!
//! Blobs are covered by their digests; `index.json` is covered by nothing but itself. These
//! rules catch the accidental change that leaves it valid JSON (a flipped byte in a key, a
//! digest inside an annotation, a media type), which would otherwise import with the wrong
//! names, tags or lock. A deliberate, consistent change is caught only by comparing the
//! archive's identity with the one published at export. Archives other tools wrote (no
//! `dev.ferry.archive-format` and no `dev.ferry.*` annotation) are held to the OCI rules alone.

use std::collections::BTreeMap;

use super::Digest;
use super::annotations::{
    FORMAT, FORMAT_VERSION, IS_BUNDLE, IS_ROOT, LOCK_ANNOTATIONS, LOCK_POSITION, OMITTED_LAYERS, ORIGINAL_REF,
    REF_NAME, REFERRER_OF, REFERRER_TAG, ROOT_TAG,
};
use super::layout::{INDEX_FILE, LayoutIndex};
use super::media;
use super::reference::Reference;

/// One broken rule: what it is about (a digest, or `index.json`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexProblem {
    pub subject: String,
    pub message: String,
}

/// The prefix of every annotation key ferry writes.
const FERRY_KEYS: &str = "dev.ferry.";

/// Whether ferry wrote the archive of `index`: its index says its format, or any entry carries
/// a ferry annotation (so a damaged format key does not turn ferry's rules off).
pub fn is_ferry_archive(index: &LayoutIndex) -> bool {
    index.annotations.contains_key(FORMAT)
        || index.manifests.iter().any(|descriptor| descriptor.annotations.keys().any(|key| key.starts_with(FERRY_KEYS)))
}

/// Every rule `index` (parsed from `bytes`) breaks; none for an archive ferry did not write.
pub fn ferry_index_problems(index: &LayoutIndex, bytes: &[u8]) -> Vec<IndexProblem> {
    if !is_ferry_archive(index) {
        return Vec::new();
    }
    let format = index.annotations.get(FORMAT);
    let mut problems = Vec::new();
    let mut whole = |message: String| problems.push(IndexProblem { subject: INDEX_FILE.to_string(), message });
    if format.is_none() {
        whole(format!("{INDEX_FILE} entries carry ferry's annotations, but the index lacks {FORMAT}"));
    }
    if let Some(format) = format.filter(|format| *format != FORMAT_VERSION) {
        whole(format!("archive format {format:?} is not one this ferry reads ({FORMAT_VERSION:?}); use a newer ferry"));
    }
    if bytes != index.to_canonical_json().as_slice() {
        whole(format!(
            "{INDEX_FILE} is not the canonical JSON ferry writes (AR-W5): it was changed after export (an unknown \
             or misspelt key, reordered keys or added whitespace)"
        ));
    }
    if index.media_type.as_deref() != Some(media::OCI_INDEX) {
        whole(format!("{INDEX_FILE} has mediaType {:?}; ferry writes {:?}", index.media_type, media::OCI_INDEX));
    }
    let order = |d: &super::Descriptor| (d.annotations.get(REF_NAME).cloned(), d.digest);
    if index.manifests.windows(2).any(|pair| order(&pair[0]) > order(&pair[1])) {
        whole(format!("{INDEX_FILE} entries are not in the order ferry writes (by name, then digest; AR-W5)"));
    }
    if let Some(list) = index.annotations.get(OMITTED_LAYERS) {
        for item in list.split(',').filter(|item| item.parse::<Digest>().is_err()) {
            whole(format!("{OMITTED_LAYERS} lists {item:?}, which is not a digest"));
        }
    }
    for descriptor in &index.manifests {
        for message in entry_problems(descriptor.digest, &descriptor.annotations) {
            problems.push(IndexProblem { subject: descriptor.digest.to_string(), message });
        }
        // DL-2: the record's entry has its own name, never an image's (other tools select
        // entries by name: `oci-archive:A.tar:v2` would find the record beside the image).
        let name = descriptor.annotations.get(REF_NAME).map(String::as_str);
        if descriptor.media_type == super::delta::DELTA_MEDIA_TYPE && name != Some(super::delta::DELTA_REF_NAME) {
            problems.push(IndexProblem {
                subject: descriptor.digest.to_string(),
                message: format!(
                    "{INDEX_FILE} entry {}: a delta record's {REF_NAME} is {:?}, not {:?} (DL-2)",
                    descriptor.digest,
                    name.unwrap_or_default(),
                    super::delta::DELTA_REF_NAME
                ),
            });
        }
    }
    problems
}

/// What is wrong with ferry's annotations on the entry for `digest`.
fn entry_problems(digest: Digest, notes: &BTreeMap<String, String>) -> Vec<String> {
    let entry = format!("{INDEX_FILE} entry {digest}");
    let mut problems = Vec::new();
    const KNOWN: [&str; 8] =
        [ORIGINAL_REF, IS_BUNDLE, IS_ROOT, ROOT_TAG, LOCK_ANNOTATIONS, LOCK_POSITION, REFERRER_OF, REFERRER_TAG];
    for key in notes.keys().filter(|key| key.starts_with(FERRY_KEYS) && !KNOWN.contains(&key.as_str())) {
        problems.push(format!("{entry}: {key} is not an annotation ferry writes"));
    }
    match notes.get(REF_NAME) {
        None => problems.push(format!("{entry} has no {REF_NAME}, which ferry writes on every entry")),
        // A name pinned by digest is a reference: it must parse and name this entry.
        Some(name) if name.contains('@') && name.parse::<Reference>().ok().and_then(|r| r.digest) != Some(digest) => {
            problems.push(format!("{entry}: {REF_NAME} {name:?} does not name this entry's digest"));
        }
        Some(_) => {}
    }
    let original = notes.get(ORIGINAL_REF).map(|text| (text, text.parse::<Reference>()));
    match &original {
        Some((text, Err(err))) => problems.push(format!("{entry}: {ORIGINAL_REF} {text:?} is not a reference: {err}")),
        Some((text, Ok(reference))) if reference.digest.is_some_and(|named| named != digest) => {
            problems.push(format!("{entry}: {ORIGINAL_REF} {text:?} names another digest"));
        }
        _ => {}
    }
    for key in [IS_BUNDLE, IS_ROOT] {
        if let Some(value) = notes.get(key).filter(|value| *value != "true") {
            problems.push(format!("{entry}: {key} is {value:?}; ferry writes only \"true\""));
        }
    }
    if let Some(tag) = notes.get(ROOT_TAG) {
        let original_tag = original.as_ref().and_then(|(_, parsed)| parsed.as_ref().ok()).and_then(|r| r.tag.as_ref());
        if !notes.contains_key(IS_ROOT) || original_tag != Some(tag) {
            problems.push(format!("{entry}: {ROOT_TAG} {tag:?} is not the tag of the root's {ORIGINAL_REF}"));
        }
    }
    if let Some(position) = notes.get(LOCK_POSITION).filter(|position| position.parse::<usize>().is_err()) {
        problems.push(format!("{entry}: {LOCK_POSITION} {position:?} is not a position in a lock"));
    }
    problems.extend(referrer_problems(&entry, notes));
    if let Some(json) = notes.get(LOCK_ANNOTATIONS) {
        if let Err(err) = serde_json::from_str::<BTreeMap<String, String>>(json) {
            problems.push(format!("{entry}: {LOCK_ANNOTATIONS} is not a JSON object of strings: {err}"));
        }
    }
    problems
}

/// AR-RF2: `referrer-of` is a digest; `referrer-tag` is cosign's tag of that digest and goes
/// only with it.
fn referrer_problems(entry: &str, notes: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let subject = notes.get(REFERRER_OF).map(|text| (text, text.parse::<Digest>()));
    if let Some((text, Err(_))) = &subject {
        problems.push(format!("{entry}: {REFERRER_OF} {text:?} is not a digest"));
    }
    if let Some(tag) = notes.get(REFERRER_TAG) {
        let named = super::referrers::parse_cosign_tag(tag).map(|(digest, _)| digest);
        let subject = subject.and_then(|(_, parsed)| parsed.ok());
        if named.is_none() || named != subject {
            problems.push(format!("{entry}: {REFERRER_TAG} {tag:?} is not cosign's tag of the entry's {REFERRER_OF}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Descriptor, media, sha256_digest};

    fn archive_index(entries: Vec<(Digest, &[(&str, &str)])>) -> LayoutIndex {
        let manifests = entries
            .into_iter()
            .map(|(digest, notes)| {
                let mut descriptor = Descriptor::new(media::OCI_MANIFEST, digest, 10);
                descriptor.annotations = notes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                descriptor
            })
            .collect();
        LayoutIndex::new(manifests, BTreeMap::from([(FORMAT.to_string(), FORMAT_VERSION.to_string())]))
    }

    fn problems_of(index: &LayoutIndex) -> Vec<String> {
        ferry_index_problems(index, &index.to_canonical_json()).into_iter().map(|p| p.message).collect()
    }

    #[test]
    fn a_well_formed_index_has_no_problems() {
        let digest = sha256_digest(b"a");
        let original = format!("example.com/team/app:1.0@{digest}");
        let index = archive_index(vec![(
            digest,
            &[
                (REF_NAME, "example.com/team/app:1.0"),
                (ORIGINAL_REF, original.as_str()),
                (IS_ROOT, "true"),
                (ROOT_TAG, "1.0"),
                (LOCK_POSITION, "0"),
                (LOCK_ANNOTATIONS, r#"{"a":"b"}"#),
            ],
        )]);
        assert_eq!(problems_of(&index), Vec::<String>::new());
        let foreign = archive_index(vec![(digest, &[(REF_NAME, "app:1.0")])]);
        let foreign = LayoutIndex::new(foreign.manifests, BTreeMap::new());
        assert!(ferry_index_problems(&foreign, b"{ }").is_empty(), "other tools' archives: OCI rules only");
        let unmarked = LayoutIndex::new(index.manifests.clone(), BTreeMap::new());
        assert!(problems_of(&unmarked)[0].contains(FORMAT), "{:?}", problems_of(&unmarked));
    }

    #[test]
    fn broken_annotations_are_named() {
        let (a, b) = (sha256_digest(b"a"), sha256_digest(b"b"));
        let other = format!("example.com/x@{b}");
        let index = archive_index(vec![(
            a,
            &[(ORIGINAL_REF, other.as_str()), (IS_BUNDLE, "yes"), (LOCK_POSITION, "-1"), (LOCK_ANNOTATIONS, "[]")],
        )]);
        let problems = problems_of(&index).join("\n");
        for expected in [REF_NAME, "names another digest", "\"yes\"", "\"-1\"", "JSON object"] {
            assert!(problems.contains(expected), "{expected}: {problems}");
        }
        let misnamed = format!("example.com/x@{b}");
        let named_elsewhere = archive_index(vec![(a, &[(REF_NAME, misnamed.as_str())])]);
        assert!(problems_of(&named_elsewhere)[0].contains("does not name"), "{:?}", problems_of(&named_elsewhere));
        let c = sha256_digest(b"c");
        let wrong_tag = format!("{}.sig", c.tag_form());
        let a_text = a.to_string();
        let referrer =
            archive_index(vec![(a, &[(REF_NAME, "x"), (REFERRER_OF, a_text.as_str()), (REFERRER_TAG, &wrong_tag)])]);
        assert!(problems_of(&referrer)[0].contains(REFERRER_TAG), "{:?}", problems_of(&referrer));
        let not_digest = archive_index(vec![(a, &[(REF_NAME, "x"), (REFERRER_OF, "sha256:zz")])]);
        assert!(problems_of(&not_digest)[0].contains("not a digest"), "{:?}", problems_of(&not_digest));
        let bad_ref = archive_index(vec![(a, &[(REF_NAME, "x"), (ORIGINAL_REF, "example.com/x@sha256]00")])]);
        assert!(problems_of(&bad_ref)[0].contains("is not a reference"), "{:?}", problems_of(&bad_ref));
    }

    #[test]
    fn changed_bytes_and_order_are_caught() {
        let (a, b) = (sha256_digest(b"a"), sha256_digest(b"b"));
        let index = archive_index(vec![(a, &[(REF_NAME, "z")]), (b, &[(REF_NAME, "a")])]);
        assert!(problems_of(&index).iter().any(|p| p.contains("order")));
        let sorted = archive_index(vec![(b, &[(REF_NAME, "a")]), (a, &[(REF_NAME, "z")])]);
        let spaced = String::from_utf8(sorted.to_canonical_json()).unwrap().replace(",", ", ");
        let problems = ferry_index_problems(&sorted, spaced.as_bytes());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("canonical"), "{problems:?}");
    }
}
