//! Listing a repository's tags (distribution-spec "listing tags"), following `Link`
//! pagination until the registry has no next page.

use ureq::http::Method;

use super::client::{Operation, RegistryClient, RequestBody, transport_kind};
use super::error::{RegistryError, RegistryErrorKind};
use crate::model::Repository;

/// A bound on pages, against a registry that links back to itself forever.
const MAX_PAGES: usize = 10_000;

/// Tags asked for per page.
pub const PAGE_SIZE: usize = 1000;

/// Every tag of `repository`, in the registry's order.
pub fn list_tags(client: &RegistryClient, repository: &Repository) -> Result<Vec<String>, RegistryError> {
    list_tags_paged(client, repository, PAGE_SIZE)
}

/// [`list_tags`] with a page size of the caller's choosing.
pub fn list_tags_paged(
    client: &RegistryClient,
    repository: &Repository,
    page_size: usize,
) -> Result<Vec<String>, RegistryError> {
    let op = Operation {
        registry: repository.registry.clone(),
        repository: repository.path.clone(),
        what: "listing tags".into(),
        scopes: vec![format!("repository:{}:pull", repository.path)],
    };
    let base = client.base_url(&repository.registry);
    let mut url = format!("{base}/v2/{}/tags/list?n={page_size}", repository.path);
    let mut tags = Vec::new();
    for _ in 0..MAX_PAGES {
        let mut response = client.send(&op, Method::GET, &url, &[], RequestBody::Empty, false)?;
        let next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_link)
            .map(|link| if link.starts_with('/') { format!("{base}{link}") } else { link });
        #[derive(serde::Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let bytes =
            response.body_mut().with_config().limit(16 << 20).read_to_vec().map_err(|e| op.error(transport_kind(e)))?;
        let page: Page = serde_json::from_slice(&bytes)
            .map_err(|e| op.error(RegistryErrorKind::Protocol(format!("the tag list is not JSON: {e}"))))?;
        tags.extend(page.tags.unwrap_or_default());
        match next {
            Some(link) => url = link,
            None => return Ok(tags),
        }
    }
    Err(op.error(RegistryErrorKind::Protocol(format!("more than {MAX_PAGES} pages of tags"))))
}

/// The target of `rel="next"` in a `Link` header: `</v2/x/tags/list?n=2&last=b>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
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
}
