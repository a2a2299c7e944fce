//! Listing a repository's tags (distribution-spec "listing tags"), following `Link`
//! pagination within bounds (spec/cli.md "`ferry tag list`"; issue 12 items 4 and 6): only
//! tag names are kept, never raw pages; a page body, the number of pages and the number of tags
//! are capped; a `Link` that repeats a page already read, or that leads to another host, stops
//! the listing with an error naming the registry.

use std::collections::HashSet;

use sha2::{Digest as _, Sha256};
use ureq::http::Method;

use super::agent::transport_kind;
use super::client::{Operation, RegistryClient, RequestBody};
use super::error::{RegistryError, RegistryErrorKind};
use crate::model::Repository;
use crate::model::reference::is_valid_tag;

/// Tags asked for per page.
pub const PAGE_SIZE: usize = 1000;

/// The bounds of one listing; [`TagListing::default`] is what `ferry tag list` uses.
#[derive(Debug, Clone)]
pub struct TagListing {
    /// Tags asked for per page (`n`).
    pub page_size: usize,
    /// The largest page body read: 8 MiB holds some 60,000 tags of the longest legal name, for
    /// registries that ignore `n` and answer with every tag at once.
    pub max_page_bytes: u64,
    /// The most pages followed.
    pub max_pages: usize,
    /// The most tags kept: with names of at most 128 bytes, about 40 MB at worst.
    pub max_tags: usize,
}

impl Default for TagListing {
    fn default() -> Self {
        TagListing { page_size: PAGE_SIZE, max_page_bytes: 8 << 20, max_pages: 10_000, max_tags: 250_000 }
    }
}

/// Every tag of `repository`, in the registry's order.
pub fn list_tags(client: &RegistryClient, repository: &Repository) -> Result<Vec<String>, RegistryError> {
    list_tags_with(client, repository, &TagListing::default())
}

/// [`list_tags`] with a page size of the caller's choosing.
pub fn list_tags_paged(
    client: &RegistryClient,
    repository: &Repository,
    page_size: usize,
) -> Result<Vec<String>, RegistryError> {
    list_tags_with(client, repository, &TagListing { page_size, ..TagListing::default() })
}

/// [`list_tags`] within the bounds of `listing`.
pub fn list_tags_with(
    client: &RegistryClient,
    repository: &Repository,
    listing: &TagListing,
) -> Result<Vec<String>, RegistryError> {
    let op = Operation {
        registry: repository.registry.clone(),
        repository: repository.path.clone(),
        what: "listing tags".into(),
        scopes: vec![format!("repository:{}:pull", repository.path)],
    };
    let refuse = |text: String| op.error(RegistryErrorKind::Protocol(text));
    let base = client.base_url(&repository.registry);
    let mut url = format!("{base}/v2/{}/tags/list?n={}", repository.path, listing.page_size);
    // Hashes of the pages asked for and of the `last` markers met, to see a loop at once
    // without keeping what a hostile registry chose to put in its links.
    let mut visited: HashSet<[u8; 32]> = HashSet::new();
    let mut lasts: HashSet<[u8; 32]> = HashSet::new();
    let mut tags = Vec::new();
    for _ in 0..listing.max_pages {
        visited.insert(Sha256::digest(url.as_bytes()).into());
        let mut response = client.send(&op, Method::GET, &url, &[], RequestBody::Empty, false)?;
        let link = response.headers().get("link").and_then(|v| v.to_str().ok()).map(str::to_string);
        #[derive(serde::Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let bytes = super::answer::read_whole(&mut response, listing.max_page_bytes).map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => refuse(format!(
                "a page of the tag list is larger than {}, the most ferry reads for one page",
                size_text(listing.max_page_bytes)
            )),
            other => op.error(transport_kind(other)),
        })?;
        let page: Page =
            serde_json::from_slice(&bytes).map_err(|e| refuse(format!("the tag list is not JSON: {e}")))?;
        drop(bytes);
        let page = page.tags.unwrap_or_default();
        if let Some(bad) = page.iter().find(|tag| !is_valid_tag(tag)) {
            let shown: String = bad.chars().take(80).flat_map(char::escape_debug).collect();
            return Err(refuse(format!("the tag list holds \"{shown}\", which is not a valid tag name")));
        }
        if tags.len() + page.len() > listing.max_tags {
            return Err(refuse(format!(
                "the repository has more than {} tags, the most ferry lists; list a narrower repository",
                listing.max_tags
            )));
        }
        let empty = page.is_empty();
        tags.extend(page);
        let next = client.next_page(&repository.registry, &url, link.as_deref(), "the tag list").map_err(refuse)?;
        let Some(next) = next else {
            return Ok(tags);
        };
        let last = query_param(&next, "last").map(|last| Sha256::digest(last.as_bytes()).into());
        if visited.contains(&<[u8; 32]>::from(Sha256::digest(next.as_bytes())))
            || last.is_some_and(|last| !lasts.insert(last))
        {
            return Err(refuse("the tag list's Link repeats a page already read (a pagination loop)".into()));
        }
        if empty {
            return Err(refuse("a page of the tag list holds no tag but links to another page".into()));
        }
        url = next;
    }
    Err(refuse(format!("the tag list has more than {} pages, the most ferry follows", listing.max_pages)))
}

/// `8 MiB` for whole mebibytes, else bytes.
fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 { format!("{} MiB", bytes >> 20) } else { format!("{bytes} bytes") }
}

/// The raw value of `name` in the query of `url`.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_marker() {
        assert_eq!(query_param("https://r/v2/a/tags/list?n=2&last=b", "last"), Some("b"));
        assert_eq!(query_param("https://r/v2/a/tags/list?last=&n=2", "last"), Some(""));
        assert_eq!(query_param("https://r/v2/a/tags/list?n=2&lastly=b", "last"), None);
        assert_eq!(query_param("https://r/v2/a/tags/list", "last"), None);
    }
}
