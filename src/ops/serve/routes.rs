//! Which registry endpoint a request names (spec/serve.md SV-1), parsed from its method, path
//! and query alone. Every name is checked against the distribution spec's grammar here, before
//! any table is consulted: a request path only ever selects an entry of an in-memory table and
//! never reaches the file system (SV-0).

use crate::model::reference::is_valid_tag;
use crate::model::{Digest, DigestError};

/// The longest repository name the distribution spec allows.
const MAX_NAME_LEN: usize = 255;
/// The most entries one page of `tags/list` or `_catalog` returns, whatever `n` asks.
pub const MAX_PAGE: usize = 10_000;

/// An endpoint of the pull side of the distribution spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check.
    Base,
    Catalog {
        page: Page,
    },
    Tags {
        name: String,
        page: Page,
    },
    Manifest {
        name: String,
        reference: ManifestRef,
    },
    Blob {
        name: String,
        digest: Digest,
    },
}

/// How a manifest is named in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

/// `n` and `last` of a paginated listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub n: Option<usize>,
    pub last: Option<String>,
}

/// A parsed request: the endpoint, whether it is `HEAD`, and containerd's `ns` (the registry
/// host a mirror request is for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub route: Route,
    pub head: bool,
    pub namespace: Option<String>,
}

/// Why a request names no endpoint; each maps to a distribution-spec error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// A write method: this registry is read-only (405 `UNSUPPORTED`).
    ReadOnly {
        method: String,
    },
    /// No such endpoint (404 `UNSUPPORTED`).
    NotFound,
    NameInvalid {
        name: String,
    },
    DigestInvalid {
        digest: String,
        reason: String,
    },
    TagInvalid {
        tag: String,
    },
    PaginationInvalid {
        value: String,
    },
}

/// Parses one request line's method, path (without the query) and query.
pub fn parse(method: &str, path: &str, query: Option<&str>) -> Result<Parsed, RouteError> {
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        other => return Err(RouteError::ReadOnly { method: other.to_string() }),
    };
    let params = Query::parse(query.unwrap_or(""));
    let namespace = params.get("ns");
    let rest = match path {
        "/v2" | "/v2/" => return Ok(Parsed { route: Route::Base, head, namespace }),
        _ => path.strip_prefix("/v2/").ok_or(RouteError::NotFound)?,
    };
    let route = if rest == "_catalog" {
        Route::Catalog { page: params.page()? }
    } else if let Some(name) = rest.strip_suffix("/tags/list") {
        Route::Tags { name: checked_name(name)?, page: params.page()? }
    } else if let Some((name, reference)) = split_last(rest, "/manifests/") {
        let reference = if reference.contains(':') {
            ManifestRef::Digest(checked_digest(reference)?)
        } else if is_valid_tag(reference) {
            ManifestRef::Tag(reference.to_string())
        } else {
            return Err(RouteError::TagInvalid { tag: reference.to_string() });
        };
        Route::Manifest { name: checked_name(name)?, reference }
    } else if let Some((name, digest)) = split_last(rest, "/blobs/") {
        Route::Blob { name: checked_name(name)?, digest: checked_digest(digest)? }
    } else {
        return Err(RouteError::NotFound);
    };
    Ok(Parsed { route, head, namespace })
}

/// `NAME` and the last component after the last `separator`, which must not hold a `/`
/// (`/v2/a/blobs/uploads/x` is no blob).
fn split_last<'a>(rest: &'a str, separator: &str) -> Option<(&'a str, &'a str)> {
    let at = rest.rfind(separator)?;
    let (name, last) = (&rest[..at], &rest[at + separator.len()..]);
    (!last.is_empty() && !last.contains('/')).then_some((name, last))
}

fn checked_digest(text: &str) -> Result<Digest, RouteError> {
    text.parse()
        .map_err(|err: DigestError| RouteError::DigestInvalid { digest: text.to_string(), reason: err.to_string() })
}

/// A repository name of the distribution spec: `/`-separated components, each lowercase
/// alphanumeric runs joined by `.`, `_`, `__` or one or more `-`; at most 255 bytes.
fn checked_name(name: &str) -> Result<String, RouteError> {
    let valid = !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_name_component);
    if valid { Ok(name.to_string()) } else { Err(RouteError::NameInvalid { name: name.to_string() }) }
}

fn is_name_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let allowed = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return false;
        }
    }
    true
}

/// A query string's parameters, percent-decoded; a parameter that does not decode to UTF-8
/// is dropped.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Self {
        Query(
            query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    Some((percent_decode(key)?, percent_decode(value)?))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn page(&self) -> Result<Page, RouteError> {
        let n = match self.get("n") {
            Some(text) => Some(text.parse::<usize>().map_err(|_| RouteError::PaginationInvalid { value: text })?),
            None => None,
        };
        Ok(Page { n: n.map(|n| n.min(MAX_PAGE)), last: self.get("last").filter(|last| !last.is_empty()) })
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "61cb6f2e8f6b5c9f4e8d2bc4d03d09a2f8b3c1e6b0a7d8e9f0a1b2c3d4e5f607";

    fn route(path: &str) -> Result<Route, RouteError> {
        parse("GET", path, None).map(|parsed| parsed.route)
    }

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(route("/v2/").unwrap(), Route::Base);
        assert_eq!(route("/v2").unwrap(), Route::Base);
        assert_eq!(route("/v2/_catalog").unwrap(), Route::Catalog { page: Page::default() });
        assert_eq!(
            route("/v2/team/app/manifests/1.0").unwrap(),
            Route::Manifest { name: "team/app".into(), reference: ManifestRef::Tag("1.0".into()) }
        );
        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        assert_eq!(
            route(&format!("/v2/a/manifests/b/manifests/sha256:{HEX}")).unwrap(),
            Route::Manifest { name: "a/manifests/b".into(), reference: ManifestRef::Digest(digest) }
        );
        assert_eq!(route(&format!("/v2/a/blobs/sha256:{HEX}")).unwrap(), Route::Blob { name: "a".into(), digest });
        let parsed = parse("HEAD", "/v2/x/tags/list", Some("n=2&last=a%2Fb&ns=docker.io")).unwrap();
        assert!(parsed.head);
        assert_eq!(parsed.namespace.as_deref(), Some("docker.io"));
        assert_eq!(parsed.route, Route::Tags { name: "x".into(), page: Page { n: Some(2), last: Some("a/b".into()) } });
    }

    #[test]
    fn refuses_writes_and_hostile_names() {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            assert!(matches!(parse(method, "/v2/a/blobs/uploads/", None), Err(RouteError::ReadOnly { .. })));
        }
        for name in ["..", "a/../b", "A", "a//b", "-a", "a-", "a..b", "a._b", "%2e%2e", "a/.", "/etc"] {
            assert!(
                matches!(route(&format!("/v2/{name}/tags/list")), Err(RouteError::NameInvalid { .. })),
                "{name} must be refused"
            );
        }
        assert!(is_name_component("a__b") && is_name_component("a---b") && is_name_component("a.b_c"));
        assert!(matches!(route(&format!("/v2/{}/tags/list", "a".repeat(256))), Err(RouteError::NameInvalid { .. })));
        assert!(matches!(route("/v2/a/blobs/sha256:../../etc"), Err(RouteError::NotFound)));
        assert!(matches!(route("/v2/a/blobs/sha256:..%2F..%2Fetc"), Err(RouteError::DigestInvalid { .. })));
        assert!(matches!(route("/v2/a/blobs/sha512:abc"), Err(RouteError::DigestInvalid { .. })));
        assert!(matches!(route("/v2/a/manifests/.bad"), Err(RouteError::TagInvalid { .. })));
        assert!(matches!(route("/v2/a/blobs/uploads/123"), Err(RouteError::NotFound)));
        assert!(matches!(route("/etc/passwd"), Err(RouteError::NotFound)));
        assert!(matches!(parse("GET", "/v2/a/tags/list", Some("n=-1")), Err(RouteError::PaginationInvalid { .. })));
        let page = parse("GET", "/v2/_catalog", Some("n=99999999")).unwrap();
        assert_eq!(page.route, Route::Catalog { page: Page { n: Some(MAX_PAGE), last: None } });
    }
}
