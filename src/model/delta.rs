//! The delta record (spec/archive.md "Deltas", DL-2): which blobs a delta archive leaves out
//! because its bases hold them, and what those bases are. It is a blob of its own, covered by
//! its digest, named by one `index.json` entry of media type [`DELTA_MEDIA_TYPE`]; nothing that
//! matters sits in `index.json` annotations.

use serde::{Deserialize, Serialize};

use super::Digest;
use super::layout::canonical_json;

/// The media type of the record blob and of the `index.json` entry naming it.
pub const DELTA_MEDIA_TYPE: &str = "application/vnd.ferry.delta.v1+json";

/// The `org.opencontainers.image.ref.name` of that entry.
pub const DELTA_REF_NAME: &str = "dev.ferry.delta";

/// The largest record a reader accepts (as a manifest: 4 MiB).
pub const MAX_DELTA_BYTES: u64 = 4 * 1024 * 1024;

/// What a delta relies on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeltaRecord {
    pub media_type: String,
    pub bases: Vec<BaseIdentity>,
    /// Sorted by digest.
    pub relies_on: Vec<ReliedOn>,
}

/// One base a delta was made against: an archive (identity: sha256 of its `index.json`) or an
/// inventory (identity: sha256 of the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaseIdentity {
    /// `archive` or `inventory`.
    pub kind: String,
    /// The file name it was given as (for messages).
    pub name: String,
    pub identity: Digest,
}

/// One blob left out: its digest, size and the base (index into `bases`) that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReliedOn {
    pub digest: Digest,
    pub size: u64,
    pub base: usize,
}

impl DeltaRecord {
    /// The record's bytes: canonical JSON (sorted keys, no whitespace), so the same delta
    /// always has the same digest.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical_json(self)
    }

    /// Parses a record, refusing one whose base indexes point nowhere.
    pub fn parse(bytes: &[u8]) -> Result<DeltaRecord, String> {
        let record: DeltaRecord =
            serde_json::from_slice(bytes).map_err(|e| format!("the delta record is not valid: {e}"))?;
        if record.media_type != DELTA_MEDIA_TYPE {
            return Err(format!("the delta record's mediaType is {:?}, not {DELTA_MEDIA_TYPE:?}", record.media_type));
        }
        if let Some(base) = record.bases.iter().find(|base| !matches!(base.kind.as_str(), "archive" | "inventory")) {
            return Err(format!("the delta record names a base of kind {:?}, not archive or inventory", base.kind));
        }
        if record.bases.iter().any(|base| base.name.chars().any(char::is_control)) {
            return Err("the delta record names a base whose name holds control characters".to_string());
        }
        if let Some(pair) = record.relies_on.windows(2).find(|pair| pair[0].digest >= pair[1].digest) {
            return Err(format!(
                "the delta record lists {} twice or out of order (DL-2: each relied-on blob once, sorted)",
                pair[1].digest
            ));
        }
        if let Some(bad) = record.relies_on.iter().find(|r| r.base >= record.bases.len()) {
            return Err(format!(
                "the delta record names base {} for {}, but lists {}",
                bad.base,
                bad.digest,
                record.bases.len()
            ));
        }
        Ok(record)
    }

    /// How a relied-on blob's base is named in messages.
    pub fn base_of(&self, relied: &ReliedOn) -> String {
        let base = &self.bases[relied.base];
        format!("{} {} ({})", base.kind, base.name, base.identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sha256_digest;

    fn record() -> DeltaRecord {
        DeltaRecord {
            media_type: DELTA_MEDIA_TYPE.into(),
            bases: vec![BaseIdentity {
                kind: "archive".into(),
                name: "week1.tar".into(),
                identity: sha256_digest(b"i"),
            }],
            relies_on: vec![ReliedOn { digest: sha256_digest(b"layer"), size: 5, base: 0 }],
        }
    }

    #[test]
    fn a_record_round_trips_in_canonical_json() {
        let bytes = record().to_bytes();
        assert!(bytes.starts_with(br#"{"bases":[{"identity":"#), "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(DeltaRecord::parse(&bytes).unwrap(), record());
    }

    /// DL-3: unknown keys, another media type and a base index out of range are refused.
    #[test]
    fn forged_records_are_refused() {
        let mut value: serde_json::Value = serde_json::from_slice(&record().to_bytes()).unwrap();
        value["extra"] = serde_json::json!(1);
        assert!(DeltaRecord::parse(&serde_json::to_vec(&value).unwrap()).is_err());
        let mut wrong = record();
        wrong.media_type = "application/json".into();
        assert!(DeltaRecord::parse(&wrong.to_bytes()).is_err());
        let mut dangling = record();
        dangling.relies_on[0].base = 1;
        assert!(DeltaRecord::parse(&dangling.to_bytes()).unwrap_err().contains("names base 1"));
        // Review s7 L5, L6: a kind other than archive or inventory, a name that would forge a
        // line where it is shown, a relied-on blob listed twice.
        let mut kind = record();
        kind.bases[0].kind = "archive\nOK everything".into();
        assert!(DeltaRecord::parse(&kind.to_bytes()).unwrap_err().contains("kind"));
        let mut name = record();
        name.bases[0].name = "w.tar\nFORGED".into();
        assert!(DeltaRecord::parse(&name.to_bytes()).unwrap_err().contains("control characters"));
        let mut twice = record();
        twice.relies_on.push(twice.relies_on[0].clone());
        assert!(DeltaRecord::parse(&twice.to_bytes()).unwrap_err().contains("twice or out of order"));
    }
}
