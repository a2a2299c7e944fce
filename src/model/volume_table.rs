//! The table of contents of an archive split into volumes (spec/archive.md "Volumes"):
//! `ARCHIVE.volumes.json`, naming the archive's identity, its size, and every volume's name,
//! size and sha256. Read as untrusted input: capped, and every name must be a plain file name.

use serde::{Deserialize, Serialize};

use super::Digest;

/// The table's media type, which is also its format version.
pub const MEDIA_TYPE: &str = "application/vnd.ferry.archive.volumes.v1+json";
/// The suffix of the table's file name after the archive's.
pub const SUFFIX: &str = ".volumes.json";
/// The largest table read (about 10,000 volumes).
pub const MAX_TABLE_BYTES: u64 = 1 << 20;

/// The most volumes an export splits an archive into: every one stays open while it is read,
/// and 1,000 stays under the usual limit of 1,024 open files (the table then stays far under
/// 1 MiB). A reader takes more (an older export's), within the table's 1 MiB.
pub const MAX_VOLUMES: usize = 1000;

/// One volume of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeEntry {
    pub name: String,
    pub size: u64,
    pub digest: Digest,
}

/// The table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeTable {
    pub media_type: String,
    /// The archive's file name (what `-o` named); volumes are `NAME.001`, `NAME.002`, ...
    pub archive: String,
    /// sha256 of the archive's `index.json` (spec/archive.md AR-6).
    pub identity: Digest,
    /// The archive's size: the sum of the volumes'.
    pub size: u64,
    pub volume_size: u64,
    pub volumes: Vec<VolumeEntry>,
}

/// The name of volume `number` (from 1) of `archive`: `ARCHIVE.001`.
pub fn volume_name(archive: &str, number: usize) -> String {
    format!("{archive}.{number:03}")
}

/// If `file_name` is `ARCHIVE.NNN`, the archive's name.
pub fn archive_of_volume(file_name: &str) -> Option<&str> {
    let (archive, number) = file_name.rsplit_once('.')?;
    (number.len() >= 3 && number.bytes().all(|b| b.is_ascii_digit()) && !archive.is_empty()).then_some(archive)
}

impl VolumeTable {
    /// Parses and checks a table; `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, String> {
        let table: VolumeTable =
            serde_json::from_slice(bytes).map_err(|e| format!("{what} is not a volume table: {e}"))?;
        if table.media_type != MEDIA_TYPE {
            return Err(format!("{what}: mediaType is {:?}, expected {MEDIA_TYPE}", table.media_type));
        }
        let plain =
            |name: &str| !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0');
        if !plain(&table.archive) {
            return Err(format!("{what}: the archive name {:?} is not a plain file name", table.archive));
        }
        if table.volumes.is_empty() || table.volume_size == 0 {
            return Err(format!("{what} lists no volumes"));
        }
        let count = table.volumes.len();
        for (index, volume) in table.volumes.iter().enumerate() {
            let expected = volume_name(&table.archive, index + 1);
            if volume.name != expected {
                return Err(format!(
                    "{what}: volume {} of {count} is named {:?}, expected {expected:?}",
                    index + 1,
                    volume.name
                ));
            }
            let last = index + 1 == count;
            if volume.size == 0 || volume.size > table.volume_size || (!last && volume.size != table.volume_size) {
                return Err(format!(
                    "{what}: volume {} of {count} is listed with {} bytes, which does not fit volumes of {} bytes",
                    index + 1,
                    volume.size,
                    table.volume_size
                ));
            }
        }
        // Checked: a forged table's sizes could add past 2^64 (and wrap to the size it claims).
        let sum = table.volumes.iter().try_fold(0u64, |sum, volume| sum.checked_add(volume.size));
        let Some(sum) = sum else {
            return Err(format!("{what}: the volumes' sizes add up past 2^64 bytes"));
        };
        if sum != table.size {
            return Err(format!(
                "{what}: the volumes add up to {sum} bytes, but the table says the archive is {}",
                table.size
            ));
        }
        Ok(table)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("the table always serialises");
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> VolumeTable {
        let digest = crate::model::sha256_digest(b"x");
        VolumeTable {
            media_type: MEDIA_TYPE.into(),
            archive: "b.tar".into(),
            identity: digest,
            size: 25,
            volume_size: 10,
            volumes: (1..=3)
                .map(|n| VolumeEntry { name: volume_name("b.tar", n), size: if n == 3 { 5 } else { 10 }, digest })
                .collect(),
        }
    }

    #[test]
    fn round_trips_and_refuses_what_does_not_add_up() {
        let good = table();
        assert_eq!(VolumeTable::parse(&good.to_json(), "t").unwrap(), good);
        let mut renamed = table();
        renamed.volumes[1].name = "../etc/passwd".into();
        assert!(VolumeTable::parse(&renamed.to_json(), "t").unwrap_err().contains("expected"));
        let mut short = table();
        short.size = 24;
        assert!(VolumeTable::parse(&short.to_json(), "t").unwrap_err().contains("add up"));
        assert_eq!(archive_of_volume("b.tar.012"), Some("b.tar"));
        assert_eq!(archive_of_volume("b.tar"), None);
        // Review s7 L8: sizes that add past 2^64 (a debug build panicked, a release one wrapped).
        let mut huge = table();
        huge.volume_size = 1 << 63;
        huge.volumes.truncate(2);
        huge.volumes[0].size = 1 << 63;
        huge.volumes[1].size = 1 << 63;
        huge.size = 0;
        assert!(VolumeTable::parse(&huge.to_json(), "t").unwrap_err().contains("past 2^64"));
    }
}
