//! The key rule for untrusted OCI JSON (spec/archive.md AR-R16): which object keys ferry accepts
//! in a manifest, an index (`index.json` included), their descriptors and platforms, and the part
//! of an image config it reads, so that ferry never reads a field other than the one every other
//! OCI reader reads.
//!
//! serde matches keys to fields exactly and ignores the rest; Go's `encoding/json` (registries,
//! skopeo, containerd, imgpkg) matches them without regard to case and keeps the last of several.
//! `{"digest": A, "Digest": B}` is A to ferry and B to them, so `verify` would vouch for what
//! `import` does not deliver. [`check`] walks a document once, before it is parsed, and refuses
//! any object whose keys could be read two ways: two keys equal under case folding (an exact
//! duplicate too), or a key that folds to a field name without being it. The keys of
//! `annotations` and `Labels` are arbitrary and read case-sensitively by every reader; there only
//! an exact duplicate is refused. Each object costs one hash-set insert per key, so the walk is
//! linear in the document (an `index.json` may be 64 MiB). The same pass counts the keys of
//! those maps against [`MAX_ANNOTATIONS`] (AR-R7): parsed, each costs a reader ~100 bytes
//! whatever its size, so a document of tiny annotations would cost 40-50x its bytes.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A document whose keys [`check`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// An image manifest, an image index or Docker manifest list, or a layout's `index.json`.
    Manifest,
    /// An image config: its top level and its `config` object (where imgpkg's bundle label is).
    ImageConfig,
    /// An imgpkg tarball's `manifest.json` (imgpkg's Go structs read it, spec/archive.md AR-I2).
    ImgpkgTarManifest,
    /// A cosign simple-signing payload (what a signature says it signs).
    SimpleSigning,
    /// A DSSE envelope (cosign attestations).
    DsseEnvelope,
    /// An in-toto statement, the payload of such an envelope.
    InTotoStatement,
}

/// The most annotations (and labels) one document may carry, all its `annotations` and `Labels`
/// maps together (spec/archive.md AR-R7): ten for each of the 100,000 entries a 64 MiB
/// `index.json` holds, so a hostile document costs a reader no more than the largest honest one.
pub const MAX_ANNOTATIONS: usize = 1 << 20;

/// Why a document's keys are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonKeyError {
    /// The bytes are not JSON at all (the parser's message).
    #[error("{0}")]
    Malformed(String),
    #[error("{}the key {key:?} is given twice (JSON readers disagree on which copy counts; AR-R16)", within(.object))]
    Repeated { object: String, key: String },
    #[error(
        "{}the key {key:?} differs only in case from the key {first:?} before it (other OCI readers, such as Go's \
         encoding/json, read both as one field and keep the last; AR-R16)",
        within(.object)
    )]
    CaseDuplicate { object: String, first: String, key: String },
    #[error(
        "{}the key {key:?} differs only in case from {field:?} (other OCI readers, such as Go's encoding/json, would \
         read it as that field; AR-R16)",
        within(.object)
    )]
    CaseVariant { object: String, key: String, field: &'static str },
    #[error("{}the document carries more than {MAX_ANNOTATIONS} annotations and labels (AR-R7)", within(.object))]
    TooManyAnnotations { object: String },
}

impl JsonKeyError {
    /// Whether the bytes are not JSON, as opposed to JSON with keys read two ways.
    pub fn is_malformed(&self) -> bool {
        matches!(self, JsonKeyError::Malformed(_))
    }
}

/// `in layers[0], ` before a message about that object; nothing for the document itself.
fn within(object: &str) -> String {
    if object.is_empty() { String::new() } else { format!("in {object}, ") }
}

/// Checks every object of `document` that AR-R16 covers; the first problem is returned, naming
/// the object (`layers[1].platform`) and the key.
pub fn check(bytes: &[u8], document: Document) -> Result<(), JsonKeyError> {
    let shape = match document {
        Document::Manifest => Shape::Object(MANIFEST),
        Document::ImageConfig => Shape::Object(IMAGE_CONFIG),
        Document::ImgpkgTarManifest => Shape::List(&IMGPKG_ENTRY),
        Document::SimpleSigning => Shape::Object(SIMPLE_SIGNING),
        Document::DsseEnvelope => Shape::Object(DSSE_ENVELOPE),
        Document::InTotoStatement => Shape::Object(IN_TOTO_STATEMENT),
    };
    let context = Context::default();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let walked = Walk { shape, context: &context }.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    walked.map_err(|error| context.problem.take().unwrap_or_else(|| JsonKeyError::Malformed(error.to_string())))
}

/// The same key as Go's `encoding/json` sees it: each character folded (`to_uppercase` then
/// `to_lowercase`, so `ſ`, `S` and `s` are one, and the Kelvin sign is `k`). Go folds `İ` to `i`
/// (its simple lowercase) where Rust's full mapping gives `i` and a combining dot, so it is
/// mapped first. Folding more than Go does (Rust's `ß` is `ss`) only refuses more.
fn fold(key: &str) -> String {
    if key.is_ascii() {
        return key.to_ascii_lowercase();
    }
    key.replace('\u{130}', "i").to_uppercase().to_lowercase()
}

/// What a value is, as far as the key rule goes.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A value the rule does not look into (a string, a number, a field ferry does not read).
    Opaque,
    /// An object with these fields.
    Object(&'static [(&'static str, Shape)]),
    /// A list of such objects.
    List(&'static [(&'static str, Shape)]),
    /// A map of arbitrary keys (`annotations`, `Labels`): only an exact duplicate is refused.
    Map,
}

/// A platform (image-spec `image-index.md`); `features` is Docker's.
const PLATFORM: &[(&str, Shape)] = &[
    ("architecture", Shape::Opaque),
    ("os", Shape::Opaque),
    ("os.version", Shape::Opaque),
    ("os.features", Shape::Opaque),
    ("variant", Shape::Opaque),
    ("features", Shape::Opaque),
];

/// A descriptor (image-spec `descriptor.md`), with every field the spec gives it, read by ferry
/// or not: a lone `"URLs"` would be `urls` to a Go reader.
const DESCRIPTOR: &[(&str, Shape)] = &[
    ("mediaType", Shape::Opaque),
    ("digest", Shape::Opaque),
    ("size", Shape::Opaque),
    ("urls", Shape::Opaque),
    ("annotations", Shape::Map),
    ("data", Shape::Opaque),
    ("artifactType", Shape::Opaque),
    ("platform", Shape::Object(PLATFORM)),
];

/// An image manifest or index (image-spec `manifest.md`, `image-index.md`; Docker schema 2
/// uses the same names), as ferry reads both with one parser.
const MANIFEST: &[(&str, Shape)] = &[
    ("schemaVersion", Shape::Opaque),
    ("mediaType", Shape::Opaque),
    ("artifactType", Shape::Opaque),
    ("config", Shape::Object(DESCRIPTOR)),
    ("layers", Shape::List(DESCRIPTOR)),
    ("manifests", Shape::List(DESCRIPTOR)),
    ("subject", Shape::Object(DESCRIPTOR)),
    ("annotations", Shape::Map),
];

/// The `config` object of an image config: ferry reads only its `Labels` (imgpkg's bundle label).
const CONTAINER_CONFIG: &[(&str, Shape)] = &[("Labels", Shape::Map)];

/// An image config (image-spec `config.md`), the part ferry reads.
const IMAGE_CONFIG: &[(&str, Shape)] = &[("config", Shape::Object(CONTAINER_CONFIG))];

/// One step from the document to an object: a field, or an item of a list.
#[derive(Debug, Clone, Copy)]
enum Step {
    Field(&'static str),
    Item(usize),
}

/// The walk's state: where it is, for naming an object only when it is refused, and the problem
/// that stopped it (serde's errors carry only text).
#[derive(Default)]
struct Context {
    path: RefCell<Vec<Step>>,
    problem: RefCell<Option<JsonKeyError>>,
    /// Keys of `annotations` and `Labels` maps read so far.
    annotations: std::cell::Cell<usize>,
}

impl Context {
    /// The object the walk is in, as `manifests[2].platform`; empty for the document itself.
    fn object(&self) -> String {
        let mut name = String::new();
        for step in self.path.borrow().iter() {
            match step {
                Step::Field(field) if name.is_empty() => name.push_str(field),
                Step::Field(field) => {
                    name.push('.');
                    name.push_str(field);
                }
                Step::Item(item) => name.push_str(&format!("[{item}]")),
            }
        }
        name
    }

    /// Records `problem` and returns the error that ends the walk.
    fn refuse<E: de::Error>(&self, problem: JsonKeyError) -> E {
        let error = E::custom(&problem);
        *self.problem.borrow_mut() = Some(problem);
        error
    }

    /// Walks the value `walk` reads with `step` added to the path.
    fn at<T, E>(&self, step: Step, walk: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.path.borrow_mut().push(step);
        let walked = walk();
        self.path.borrow_mut().pop();
        walked
    }
}

/// A value of a known shape, walked: each object's keys are checked as they are read, and only
/// the fields of known objects are looked into.
#[derive(Clone, Copy)]
struct Walk<'c> {
    shape: Shape,
    context: &'c Context,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.shape {
            Shape::Opaque => IgnoredAny::deserialize(deserializer).map(drop),
            _ => deserializer.deserialize_any(self),
        }
    }
}

impl Walk<'_> {
    fn object<'de, A: MapAccess<'de>>(
        self,
        fields: &'static [(&'static str, Shape)],
        mut map: A,
    ) -> Result<(), A::Error> {
        let context = self.context;
        // Each key folded, with the key as written.
        let mut seen: HashMap<String, String> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let folded = fold(&key);
            if let Some(first) = seen.get(&folded) {
                let object = context.object();
                let problem = if *first == key {
                    JsonKeyError::Repeated { object, key }
                } else {
                    JsonKeyError::CaseDuplicate { object, first: first.clone(), key }
                };
                return Err(context.refuse(problem));
            }
            match fields.iter().find(|(name, _)| *name == key) {
                Some(&(name, shape)) => {
                    context.at(Step::Field(name), || map.next_value_seed(Walk { shape, context }))?
                }
                None => {
                    // Field names are ASCII, and `folded` is lower case.
                    if let Some(&(field, _)) = fields.iter().find(|(name, _)| name.eq_ignore_ascii_case(&folded)) {
                        return Err(context.refuse(JsonKeyError::CaseVariant { object: context.object(), key, field }));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
            seen.insert(folded, key);
        }
        Ok(())
    }

    fn map<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(self.context.refuse(JsonKeyError::Repeated { object: self.context.object(), key }));
            }
            let counted = self.context.annotations.get() + 1;
            if counted > MAX_ANNOTATIONS {
                return Err(self.context.refuse(JsonKeyError::TooManyAnnotations { object: self.context.object() }));
            }
            self.context.annotations.set(counted);
            map.next_value::<IgnoredAny>()?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// A value of another type than its shape (`"config": null`, or a number where an object was
/// due) holds no keys to check; the typed parse that follows judges it.
impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Shape::List(fields) = self.shape else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let context = self.context;
        for item in 0.. {
            let walk = Walk { shape: Shape::Object(fields), context };
            if context.at(Step::Item(item), || seq.next_element_seed(walk))?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.shape {
            Shape::Object(fields) => self.object(fields, map),
            Shape::Map => self.map(map),
            Shape::Opaque | Shape::List(_) => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(())
            }
        }
    }
}

// imgpkg's tarball `manifest.json` (its `imagedesc` Go structs, field names as Go spells them).
static IMGPKG_ENTRY: [(&str, Shape); 2] =
    [("Image", Shape::Object(&IMGPKG_IMAGE)), ("ImageIndex", Shape::Object(&IMGPKG_INDEX))];
static IMGPKG_IMAGE: [(&str, Shape); 6] = [
    ("Refs", Shape::Opaque),
    ("Layers", Shape::List(IMGPKG_LAYER)),
    ("Config", Shape::Object(IMGPKG_RAW)),
    ("Manifest", Shape::Object(IMGPKG_RAW)),
    ("Tag", Shape::Opaque),
    ("Labels", Shape::Map),
];
static IMGPKG_INDEX: [(&str, Shape); 8] = [
    ("Refs", Shape::Opaque),
    ("Images", Shape::List(&IMGPKG_IMAGE)),
    ("Indexes", Shape::List(&IMGPKG_INDEX)),
    ("MediaType", Shape::Opaque),
    ("Digest", Shape::Opaque),
    ("Raw", Shape::Opaque),
    ("Tag", Shape::Opaque),
    ("Labels", Shape::Map),
];
const IMGPKG_LAYER: &[(&str, Shape)] =
    &[("MediaType", Shape::Opaque), ("Digest", Shape::Opaque), ("DiffID", Shape::Opaque), ("Size", Shape::Opaque)];
const IMGPKG_RAW: &[(&str, Shape)] = &[("MediaType", Shape::Opaque), ("Digest", Shape::Opaque), ("Raw", Shape::Opaque)];

/// cosign's simple-signing payload (`critical.image.docker-manifest-digest` names what is signed).
const SIMPLE_SIGNING: &[(&str, Shape)] = &[("critical", Shape::Object(CRITICAL)), ("optional", Shape::Map)];
const CRITICAL: &[(&str, Shape)] = &[
    ("identity", Shape::Object(&[("docker-reference", Shape::Opaque)])),
    ("image", Shape::Object(&[("docker-manifest-digest", Shape::Opaque)])),
    ("type", Shape::Opaque),
];

/// A DSSE envelope and the in-toto statement it carries (`subject[].digest` names what is attested).
const DSSE_ENVELOPE: &[(&str, Shape)] = &[
    ("payloadType", Shape::Opaque),
    ("payload", Shape::Opaque),
    ("signatures", Shape::List(&[("keyid", Shape::Opaque), ("sig", Shape::Opaque)])),
];
const IN_TOTO_STATEMENT: &[(&str, Shape)] = &[
    ("_type", Shape::Opaque),
    ("subject", Shape::List(&[("name", Shape::Opaque), ("digest", Shape::Map)])),
    ("predicateType", Shape::Opaque),
    ("predicate", Shape::Opaque),
];

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// An image manifest whose first layer has `extra` added after its size.
    fn manifest_with(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"c","digest":"{DIGEST}","size":2}},"layers":[{{"mediaType":"l","digest":"{DIGEST}","size":0{extra}}}],"annotations":{{"a":"1"}}}}"#
        )
    }

    fn refused(json: &str, document: Document) -> JsonKeyError {
        check(json.as_bytes(), document).expect_err(json)
    }

    #[test]
    fn real_manifests_indexes_and_configs_pass() {
        assert_eq!(check(manifest_with("").as_bytes(), Document::Manifest), Ok(()));
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"m","digest":"{DIGEST}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8","os.features":["x"]}},"annotations":{{"org.opencontainers.image.ref.name":"a:1"}}}}],"subject":{{"mediaType":"m","digest":"{DIGEST}","size":1}},"annotations":{{}}}}"#
        );
        assert_eq!(check(index.as_bytes(), Document::Manifest), Ok(()));
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Labels":{"dev.carvel.imgpkg.bundle":""}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert_eq!(check(config, Document::ImageConfig), Ok(()));
    }

    /// AR-R16: a key that folds to a field name without being it, at any depth, named with its
    /// object.
    #[test]
    fn a_lone_case_variant_of_a_field_is_refused() {
        let err = refused(r#"{"schemaVersion":2,"Layers":[]}"#, Document::Manifest);
        assert_eq!(err, JsonKeyError::CaseVariant { object: String::new(), key: "Layers".into(), field: "layers" });
        assert!(err.to_string().starts_with(r#"the key "Layers" differs only in case from "layers""#), "{err}");
        let err = refused(&manifest_with(r#","artifacttype":"x""#), Document::Manifest);
        assert_eq!(
            err,
            JsonKeyError::CaseVariant { object: "layers[0]".into(), key: "artifacttype".into(), field: "artifactType" }
        );
        assert!(err.to_string().starts_with("in layers[0], the key"), "{err}");
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"m","digest":"{DIGEST}","size":1}},{{"mediaType":"m","digest":"{DIGEST}","size":1,"platform":{{"OS":"windows","os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let err = refused(&index, Document::Manifest);
        assert_eq!(
            err,
            JsonKeyError::CaseVariant { object: "manifests[1].platform".into(), key: "OS".into(), field: "os" }
        );
        // A field of the spec that ferry does not read is no different (Go reads "URLs" as urls).
        assert!(matches!(
            refused(&manifest_with(r#","URLs":["x"]"#), Document::Manifest),
            JsonKeyError::CaseVariant { field: "urls", .. }
        ));
    }

    /// AR-R16: `{"digest": A, "Digest": B}` is B to Go's encoding/json (the last folded match).
    #[test]
    fn keys_equal_under_case_folding_are_refused() {
        let err = refused(&manifest_with(&format!(r#","Digest":"{DIGEST}""#)), Document::Manifest);
        assert_eq!(
            err,
            JsonKeyError::CaseDuplicate { object: "layers[0]".into(), first: "digest".into(), key: "Digest".into() }
        );
        assert!(err.to_string().contains("AR-R16"), "{err}");
        // Keys ferry does not know are held to it too: a Go reader may know them.
        let err = refused(r#"{"schemaVersion":2,"manifests":[],"foo":1,"FOO":2}"#, Document::Manifest);
        assert!(matches!(err, JsonKeyError::CaseDuplicate { .. }), "{err}");
    }

    /// AR-R16: Go folds `ſ` to `s`, the Kelvin sign to `k`, and `İ` and `ı` to `i`.
    #[test]
    fn unicode_case_variants_are_refused() {
        // Beside the field (`size` is there), or alone (no `urls`, `artifactType`).
        for (extra, expected) in [
            (r"\u017fize", r#"differs only in case from the key "size""#),
            (r"\u017fIZE", r#"differs only in case from the key "size""#),
            (r"d\u0130gest", r#"differs only in case from the key "digest""#),
            (r"urL\u017f", r#"differs only in case from "urls""#),
            (r"art\u0131factType", r#"differs only in case from "artifactType""#),
            (r"art\u0130factType", r#"differs only in case from "artifactType""#),
        ] {
            let err = refused(&manifest_with(&format!(r#","{extra}":5"#)), Document::Manifest);
            assert!(err.to_string().contains(expected), "{extra}: {err}");
        }
        let raw = manifest_with(",\"\u{17f}ize\":5");
        let err = refused(&raw, Document::Manifest);
        assert_eq!(
            err,
            JsonKeyError::CaseDuplicate { object: "layers[0]".into(), first: "size".into(), key: "ſize".into() }
        );
        let err = refused(r#"{"config":{"Labels":{}},"k":1,"\u212a":2}"#, Document::ImageConfig);
        assert_eq!(
            err,
            JsonKeyError::CaseDuplicate { object: String::new(), first: "k".into(), key: "\u{212a}".into() }
        );
        assert_eq!(fold("\u{212a}\u{17f}\u{130}\u{131}"), "ksii");
    }

    /// AR-R16: keys given twice are refused everywhere, in maps too (readers disagree on which
    /// copy counts); in `annotations` and `Labels` keys differing in case are two keys.
    #[test]
    fn exact_duplicates_are_refused_and_annotation_keys_are_not_folded() {
        let err = refused(&manifest_with(r#","size":0"#), Document::Manifest);
        assert_eq!(err, JsonKeyError::Repeated { object: "layers[0]".into(), key: "size".into() });
        let err = refused(&manifest_with(r#","annotations":{"x":"1","x":"2"}"#), Document::Manifest);
        assert_eq!(err, JsonKeyError::Repeated { object: "layers[0].annotations".into(), key: "x".into() });
        let annotated = manifest_with(r#","annotations":{"a":"1","A":"2","Digest":"3","\u017f":"4","s":"5","S":"6"}"#);
        assert_eq!(check(annotated.as_bytes(), Document::Manifest), Ok(()));
        let labels = br#"{"config":{"Labels":{"dev.carvel.imgpkg.bundle":"","DEV.carvel.imgpkg.bundle":""}}}"#;
        assert_eq!(check(labels, Document::ImageConfig), Ok(()));
    }

    /// AR-R16: the config's `Labels` decide whether imgpkg sees a bundle.
    #[test]
    fn image_config_label_keys_are_checked() {
        let both = br#"{"config":{"Labels":{},"labels":{"dev.carvel.imgpkg.bundle":""}}}"#;
        let err = check(both, Document::ImageConfig).unwrap_err();
        assert_eq!(
            err,
            JsonKeyError::CaseDuplicate { object: "config".into(), first: "Labels".into(), key: "labels".into() }
        );
        let lone = br#"{"Config":{"Labels":{"dev.carvel.imgpkg.bundle":""}}}"#;
        assert!(matches!(check(lone, Document::ImageConfig), Err(JsonKeyError::CaseVariant { field: "config", .. })));
    }

    /// The values of keys no field folds to are not looked into (no reader reads them), values
    /// of another type than expected are left to the typed parse, and bytes that are not JSON
    /// are malformed.
    #[test]
    fn unknown_values_other_types_and_non_json() {
        let nested =
            r#"{"schemaVersion":2,"x":{"digest":1,"Digest":2},"config":null,"layers":5,"manifests":[1,"a",null]}"#;
        assert_eq!(check(nested.as_bytes(), Document::Manifest), Ok(()));
        for bad in [&b"not json"[..], b"{\"a\":1} trailing", b"{\"a\":"] {
            assert!(check(bad, Document::Manifest).unwrap_err().is_malformed());
        }
    }

    /// One pass, linear: 200,000 keys in one object and in one map are checked at once.
    /// AR-R16 beyond OCI JSON: imgpkg's tarball `manifest.json` (read by imgpkg's Go structs,
    /// nested indexes included) and what a cosign signature or attestation says it signs.
    #[test]
    fn imgpkg_tarball_manifests_and_signing_payloads_are_checked() {
        let image = r#"{"Refs":["r"],"Layers":[{"MediaType":"m","Digest":"d","DiffID":"x","Size":1}],"Config":{"Digest":"d","Raw":"e30="},"Manifest":{"MediaType":"m","Digest":"d","Raw":"e30="},"Tag":"t","Labels":{"a":"1","A":"2"}}"#;
        let tarball = |index_extra: &str| {
            format!(
                r#"[{{"Image":{image}}},{{"ImageIndex":{{"Refs":[],"Images":[{image}],"Indexes":[{{"MediaType":"m","Digest":"d","Raw":"r"{index_extra}}}],"MediaType":"m","Digest":"d","Raw":"r"}}}}]"#
            )
        };
        assert_eq!(check(tarball("").as_bytes(), Document::ImgpkgTarManifest), Ok(()));
        let err = refused(&tarball(r#","digest":"other""#), Document::ImgpkgTarManifest);
        assert_eq!(
            err,
            JsonKeyError::CaseDuplicate {
                object: "[1].ImageIndex.Indexes[0]".into(),
                first: "Digest".into(),
                key: "digest".into()
            }
        );
        let lone = refused(r#"[{"image":{}}]"#, Document::ImgpkgTarManifest);
        assert_eq!(lone, JsonKeyError::CaseVariant { object: "[0]".into(), key: "image".into(), field: "Image" });

        let signing = r#"{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:a","Docker-Manifest-Digest":"sha256:b"},"type":"cosign container image signature"},"optional":null}"#;
        let err = refused(signing, Document::SimpleSigning);
        assert!(matches!(err, JsonKeyError::CaseDuplicate { ref object, .. } if object == "critical.image"), "{err:?}");
        let statement = r#"{"_type":"t","subject":[{"name":"n","digest":{"sha256":"a","sha256":"b"}}],"predicateType":"p","predicate":{}}"#;
        let err = refused(statement, Document::InTotoStatement);
        assert_eq!(err, JsonKeyError::Repeated { object: "subject[0].digest".into(), key: "sha256".into() });
        let envelope = r#"{"payloadType":"t","payload":"p","Payload":"q","signatures":[]}"#;
        assert!(matches!(refused(envelope, Document::DsseEnvelope), JsonKeyError::CaseDuplicate { .. }));
    }

    #[test]
    fn annotations_past_the_limit_are_refused_across_maps() {
        let descriptor = |keys: std::ops::Range<usize>| {
            let keys: Vec<String> = keys.map(|i| format!(r#""{i}":"""#)).collect();
            format!(r#"{{"mediaType":"m","digest":"{DIGEST}","size":1,"annotations":{{{}}}}}"#, keys.join(","))
        };
        let half = MAX_ANNOTATIONS / 2;
        let index = |last: usize| {
            format!(r#"{{"schemaVersion":2,"manifests":[{},{}]}}"#, descriptor(0..half), descriptor(half..last))
        };
        assert_eq!(check(index(MAX_ANNOTATIONS).as_bytes(), Document::Manifest), Ok(()));
        let err = refused(&index(MAX_ANNOTATIONS + 1), Document::Manifest);
        assert_eq!(err, JsonKeyError::TooManyAnnotations { object: "manifests[1].annotations".into() });
        assert!(err.to_string().contains("more than 1048576 annotations"), "{err}");
    }

    #[test]
    fn many_keys_are_checked_in_linear_time() {
        let keys: Vec<String> = (0..200_000).map(|i| format!(r#""k{i}":"v""#)).collect();
        let json =
            format!(r#"{{"schemaVersion":2,{},"annotations":{{{}}},"manifests":[]}}"#, keys.join(","), keys.join(","));
        let started = std::time::Instant::now();
        assert_eq!(check(json.as_bytes(), Document::Manifest), Ok(()));
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }
}
