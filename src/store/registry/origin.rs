//! Which host a URL belongs to, for deciding where credentials may go (spec/cli.md "Registry
//! flags", issue 12 item 4): an [`Origin`] is scheme, host and port, as in RFC 6454; two URLs
//! share credentials only when their origins are equal. Also resolves the URLs a server hands
//! out (`Location`, `Link`) against the request they answered (RFC 3986 section 5.2, for the
//! forms registries send), and percent-encodes what goes into a query.

use std::fmt;

use ureq::http::Uri;

/// Scheme, host and port of a URL; the port is explicit even when the URL left it out.
/// The URL an answer came from, after every redirect: both ways of sending (the agent and
/// [`super::direct`]) put it in the response's extensions, so that a 401 from a host a redirect
/// led to is never taken for the registry's own challenge.
#[derive(Debug, Clone)]
pub struct AnsweredFrom(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: &'static str,
    /// Lowercase; an IPv6 address keeps its brackets.
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an absolute `http://` or `https://` URL; `None` for anything else (another
    /// scheme, a relative reference, no host).
    pub fn of(url: &str) -> Option<Origin> {
        let uri: Uri = url.parse().ok()?;
        let (scheme, default_port) = match uri.scheme_str()?.to_ascii_lowercase().as_str() {
            "http" => ("http", 80),
            "https" => ("https", 443),
            _ => return None,
        };
        let host = uri.host().filter(|h| !h.is_empty())?.to_ascii_lowercase();
        Some(Origin { scheme, host, port: uri.port_u16().unwrap_or(default_port) })
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether requests to this origin are protected by TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The next page a paginated answer (a tag list, a referrers index) links to with
/// `Link: <..>; rel="next"`, resolved against `page_url`; `None` on the last page. A link off
/// the registry's origin is an error naming `what` (a listing is followed only where the
/// registry's credentials go).
pub fn next_page(page_url: &str, link: Option<&str>, registry: &Origin, what: &str) -> Result<Option<String>, String> {
    let Some(target) = link.and_then(next_link) else { return Ok(None) };
    let next = resolve(page_url, &target).ok_or_else(|| format!("{what}'s Link is not a URL"))?;
    match Origin::of(&next) {
        Some(origin) if origin == *registry => Ok(Some(next)),
        Some(origin) => Err(format!(
            "{what} links its next page to {origin}, another host than the registry ({registry}); ferry follows \
             pages only on the registry"
        )),
        None => Err(format!("{what}'s Link is not an http(s) URL")),
    }
}

/// The target of `rel="next"` in a `Link` header: `</v2/x/tags/list?n=2&last=b>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// `reference` (a `Location` or `Link` target) resolved against the URL of the request it
/// answered: absolute URLs as they are, `//host/..` with the request's scheme, `/path` on the
/// request's origin, and a relative path beside the request's path. `None` when the request URL
/// is not absolute or the reference is empty.
pub fn resolve(request_url: &str, reference: &str) -> Option<String> {
    let reference = reference.trim();
    let lower = reference.get(..8).unwrap_or(reference).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Some(reference.to_string());
    }
    if reference.is_empty() {
        return None;
    }
    let uri: Uri = request_url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    if let Some(rest) = reference.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    if reference.starts_with('/') {
        return Some(format!("{scheme}://{authority}{reference}"));
    }
    let path = uri.path();
    let directory = &path[..=path.rfind('/').unwrap_or(0)];
    let directory = if directory.is_empty() { "/" } else { directory };
    Some(format!("{scheme}://{authority}{directory}{reference}"))
}

/// `key=value&..`, both percent-encoded.
pub fn encode_query(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect::<Vec<_>>().join("&")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_next_link() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"<https://x/y>; rel="prev""#), None);
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(percent_encode("team/app:v1 ~x"), "team%2Fapp%3Av1%20~x");
        let pairs = [("scope".to_string(), "repository:a/b:pull,push".to_string())];
        assert_eq!(encode_query(&pairs), "scope=repository%3Aa%2Fb%3Apull%2Cpush");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let registry = Origin::of("https://Registry.example.com/v2/").unwrap();
        assert_eq!(Some(registry.clone()), Origin::of("https://registry.example.com:443/v2/x?y=1"));
        assert_ne!(Some(registry.clone()), Origin::of("http://registry.example.com/v2/"));
        assert_ne!(Some(registry.clone()), Origin::of("https://registry.example.com:5000/v2/"));
        assert_ne!(Some(registry.clone()), Origin::of("https://registry.example.com.evil.test/v2/"));
        assert_ne!(Origin::of("http://127.0.0.1:5000/"), Origin::of("http://127.0.0.2:5000/"));
        assert_eq!(registry.to_string(), "https://registry.example.com:443");
        assert!(Origin::of("ftp://registry.example.com/").is_none());
        assert!(Origin::of("/v2/x").is_none());
    }

    #[test]
    fn references_resolve_against_the_request() {
        let request = "https://r.example:5000/v2/a/blobs/uploads/?x=1";
        assert_eq!(
            resolve(request, "/v2/a/blobs/uploads/u1?s=2").unwrap(),
            "https://r.example:5000/v2/a/blobs/uploads/u1?s=2"
        );
        assert_eq!(resolve(request, "https://cdn.example/u1").unwrap(), "https://cdn.example/u1");
        assert_eq!(resolve(request, "//cdn.example/u1").unwrap(), "https://cdn.example/u1");
        assert_eq!(resolve(request, "u1?s=2").unwrap(), "https://r.example:5000/v2/a/blobs/uploads/u1?s=2");
        assert_eq!(resolve(request, "").as_deref(), None);
    }
}
