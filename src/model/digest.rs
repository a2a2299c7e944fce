//! The sha256 content digest: the only identity a blob has.
//!
//! A [`Digest`] is validated when it is parsed (`sha256:` followed by exactly 64 lowercase hex
//! digits) and is the only way to build a `blobs/sha256/<hex>` path, so a name read from an
//! archive or a registry can never smuggle a path component through it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The one algorithm ferry accepts; OCI allows others but no registry in use serves them.
pub const ALGORITHM: &str = "sha256";

/// A validated sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest ferry accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} has no algorithm prefix (expected sha256:<64 hex digits>)")]
    MissingAlgorithm(String),
    #[error("digest {digest:?} uses algorithm {algorithm:?}; ferry supports only sha256")]
    UnsupportedAlgorithm { digest: String, algorithm: String },
    #[error("digest {0:?} is malformed: expected sha256:<64 lowercase hex digits>")]
    Malformed(String),
}

impl Digest {
    /// Wraps a finished sha256 hash.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// Parses the hex part alone (64 lowercase hex digits), as found in a blob path.
    pub fn from_hex(hex_part: &str) -> Result<Self, DigestError> {
        let malformed = || DigestError::Malformed(format!("{ALGORITHM}:{hex_part}"));
        if hex_part.len() != 64 || !hex_part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(malformed());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| malformed())?;
        Ok(Digest(bytes))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the algorithm.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The blob's path inside an OCI image layout: `blobs/sha256/<hex>` (image-layout.md).
    pub fn blob_path(&self) -> String {
        format!("blobs/{ALGORITHM}/{}", self.hex())
    }

    /// The imgpkg-style tag for this digest: `sha256-<hex>`.
    pub fn tag_form(&self) -> String {
        format!("{ALGORITHM}-{}", self.hex())
    }

    /// A short form for messages a person reads: `sha256:0123456789ab`.
    pub fn short(&self) -> String {
        format!("{ALGORITHM}:{}", &self.hex()[..12])
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algorithm, hex_part)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm(s.to_string()));
        };
        if algorithm != ALGORITHM {
            let valid_name = !algorithm.is_empty()
                && algorithm.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
            if !valid_name {
                return Err(DigestError::Malformed(s.to_string()));
            }
            return Err(DigestError::UnsupportedAlgorithm { digest: s.to_string(), algorithm: algorithm.to_string() });
        }
        Digest::from_hex(hex_part).map_err(|_| DigestError::Malformed(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ALGORITHM}:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_round_trip() {
        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        assert_eq!(digest.to_string(), format!("sha256:{HEX}"));
        assert_eq!(digest.blob_path(), format!("blobs/sha256/{HEX}"));
        assert_eq!(digest.tag_form(), format!("sha256-{HEX}"));
    }

    #[test]
    fn rejects_what_is_not_a_sha256_digest() {
        for bad in [
            "",
            HEX,
            "sha256:",
            "sha256:abc",
            &format!("sha256:{}", HEX.to_uppercase()),
            &format!("sha256:{HEX}0"),
            &format!("sha256:../{}", &HEX[3..]),
            &format!("sha256:{}/", &HEX[1..]),
            &format!("SHA256:{HEX}"),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn names_an_unsupported_algorithm() {
        let err = format!("sha512:{HEX}{HEX}").parse::<Digest>().unwrap_err();
        assert!(matches!(err, DigestError::UnsupportedAlgorithm { .. }));
        assert!(err.to_string().contains("only sha256"), "{err}");
    }
}
