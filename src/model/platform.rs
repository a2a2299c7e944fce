//! Choosing a platform (`export -i REF --platform OS/ARCH[/VARIANT]`): the filter a user types,
//! and whether an index entry's platform is the one asked for.

use std::fmt;
use std::str::FromStr;

use super::manifest::{Platform, write_platform};

/// `os/architecture[/variant]`, e.g. `linux/arm64` or `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformFilter {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformFilter {
    /// Whether `platform` is this one; without a variant, any variant matches.
    pub fn matches(&self, platform: &Platform) -> bool {
        platform.os == self.os
            && platform.architecture == self.architecture
            && self.variant.as_ref().is_none_or(|variant| platform.variant.as_ref() == Some(variant))
    }
}

impl FromStr for PlatformFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid = |part: &&str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, architecture, rest @ ..] if rest.len() <= 1 && parts.iter().all(valid) => Ok(PlatformFilter {
                os: os.to_string(),
                architecture: architecture.to_string(),
                variant: rest.first().map(|variant| variant.to_string()),
            }),
            _ => Err(format!("{text:?} is not a platform like linux/amd64 or linux/arm/v7")),
        }
    }
}

impl fmt::Display for PlatformFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_platform(f, &self.os, &self.architecture, self.variant.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.into(),
            os: os.into(),
            os_version: None,
            os_features: Vec::new(),
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn parses_and_matches() {
        let arm64: PlatformFilter = "linux/arm64".parse().unwrap();
        assert!(arm64.matches(&platform("linux", "arm64", Some("v8"))));
        assert!(!arm64.matches(&platform("linux", "amd64", None)));
        let v7: PlatformFilter = "linux/arm/v7".parse().unwrap();
        assert!(
            v7.matches(&platform("linux", "arm", Some("v7"))) && !v7.matches(&platform("linux", "arm", Some("v6")))
        );
        assert_eq!(v7.to_string(), "linux/arm/v7");
        for bad in ["linux", "linux/", "/amd64", "linux/arm/v7/x", "linux/amd 64"] {
            assert!(bad.parse::<PlatformFilter>().is_err(), "{bad}");
        }
    }
}
