//! One request, one answer (spec/serve.md SV-1..SV-3): the route is parsed, looked up in the
//! catalog, and answered from [`Content`] with the distribution spec's headers and error
//! bodies. Every request is logged once through [`ServeLog`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde_json::json;

use super::body::{BlobStream, Logged, RangeAsk, ServeBody, Verification, empty, full, parse_range};
use super::catalog::{Catalog, RepoView, TagLookup};
use super::content::{BlobAt, BlobState, Content};
use super::routes::{self, ManifestRef, Page, Parsed, Route, RouteError};
use super::{RequestRecord, ServeLog};
use crate::model::Digest;

/// What every connection shares.
pub struct Shared {
    pub content: Arc<Content>,
    pub catalog: Catalog,
    pub log: Arc<dyn ServeLog>,
}

/// Answers one request; it is logged when its body ends or is cut, with the bytes sent.
pub async fn handle(shared: Arc<Shared>, request: Request<Incoming>, peer: SocketAddr) -> Response<ServeBody> {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let mut response = match routes::parse(&method, &path, request.uri().query()) {
        Ok(parsed) => answer(&shared, &parsed, request.headers()).await,
        Err(err) => route_error(err),
    };
    response.headers_mut().insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
    let announced = match method.as_str() {
        "HEAD" => Some(0),
        _ => response.headers().get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse().ok()),
    };
    let record = RequestRecord {
        method,
        path,
        status: response.status().as_u16(),
        bytes: 0,
        announced,
        complete: false,
        millis: 0,
        peer,
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Logged::wrap(body, record, started, Arc::clone(&shared.log)))
}

async fn answer(shared: &Arc<Shared>, parsed: &Parsed, headers: &HeaderMap) -> Response<ServeBody> {
    let namespace = parsed.namespace.as_deref();
    let response = match &parsed.route {
        Route::Base => json_response(StatusCode::OK, &json!({})),
        Route::Catalog { page } => {
            let (names, more) = shared.catalog.page(page);
            let mut response = json_response(StatusCode::OK, &json!({ "repositories": names }));
            add_next_link(&mut response, "/v2/_catalog", page, more, names.last());
            response
        }
        Route::Tags { name, page } => match shared.catalog.repo(name) {
            None => name_unknown(name),
            Some(view) => {
                let (tags, more) = view.tag_page(page);
                let mut response = json_response(StatusCode::OK, &json!({ "name": name, "tags": tags }));
                add_next_link(&mut response, &format!("/v2/{name}/tags/list"), page, more, tags.last());
                response
            }
        },
        Route::Manifest { name, reference } => match shared.catalog.repo(name) {
            None => name_unknown(name),
            Some(view) => manifest(shared, view, name, reference, namespace),
        },
        Route::Blob { name, digest } => match shared.catalog.repo(name) {
            None => name_unknown(name),
            Some(view) => blob(shared, view, *digest, headers, parsed.head).await,
        },
    };
    if parsed.head { without_body(response) } else { response }
}

fn manifest(
    shared: &Shared,
    view: &RepoView,
    name: &str,
    reference: &ManifestRef,
    namespace: Option<&str>,
) -> Response<ServeBody> {
    let digest = match reference {
        ManifestRef::Digest(digest) => *digest,
        ManifestRef::Tag(tag) => match view.tag(tag, namespace) {
            TagLookup::Found(digest) => digest,
            TagLookup::Unknown => return manifest_unknown(name, &tag.to_string()),
            TagLookup::Ambiguous(registries) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    &format!(
                        "tag {tag} of {name} names different manifests on {}: ask by digest, or with ?ns=REGISTRY",
                        registries.join(", ")
                    ),
                    json!({ "name": name, "tag": tag, "registries": registries }),
                );
            }
        },
    };
    let found = if view.serves(&digest) { shared.content.manifest(&digest) } else { None };
    let Some(manifest) = found else { return manifest_unknown(name, &digest.to_string()) };
    let mut response = Response::new(full(manifest.bytes().to_vec()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header_value(manifest.media_type()));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(manifest.bytes().len() as u64));
    add_digest(headers, &digest);
    response
}

async fn blob(
    shared: &Arc<Shared>,
    view: &RepoView,
    digest: Digest,
    headers: &HeaderMap,
    head: bool,
) -> Response<ServeBody> {
    let found = if view.serves(&digest) { shared.content.blob(&digest) } else { None };
    let range_header = headers.get(header::RANGE).and_then(|value| value.to_str().ok());
    match found {
        None => blob_unknown(&digest),
        Some(BlobAt::Memory(bytes)) => {
            let size = bytes.len() as u64;
            match parse_range(range_header, size) {
                RangeAsk::Whole => blob_response(StatusCode::OK, &digest, size, None, full(bytes)),
                RangeAsk::Part { start, len } => {
                    let part = bytes.slice(start as usize..(start + len) as usize);
                    blob_response(StatusCode::PARTIAL_CONTENT, &digest, len, Some((start, size)), full(part))
                }
                RangeAsk::Unsatisfiable => unsatisfiable(size),
            }
        }
        Some(BlobAt::Archive { state: BlobState::Failed, .. }) => failed_blob(shared, &digest),
        Some(BlobAt::Archive { size, .. }) => {
            let ask = parse_range(range_header, size);
            if head {
                return match ask {
                    RangeAsk::Unsatisfiable => unsatisfiable(size),
                    RangeAsk::Part { start, len } => {
                        blob_response(StatusCode::PARTIAL_CONTENT, &digest, len, Some((start, size)), empty())
                    }
                    RangeAsk::Whole => blob_response(StatusCode::OK, &digest, size, None, empty()),
                };
            }
            // An empty body is never read, so its digest is checked here (a 0-byte blob under
            // another digest was served as 200).
            if size == 0 && matches!(ask, RangeAsk::Whole) {
                if let Err(message) = shared.content.checked_table(&digest) {
                    shared.log.blob_failed(&digest, &message);
                    return failed_blob(shared, &digest);
                }
            }
            match ask {
                RangeAsk::Unsatisfiable => unsatisfiable(size),
                RangeAsk::Whole => match shared.content.full_reader(digest, size) {
                    Ok(reader) => {
                        let check =
                            Verification { content: Arc::clone(&shared.content), digest, log: Arc::clone(&shared.log) };
                        let body = BlobStream::new(reader, size, Some(check)).boxed();
                        blob_response(StatusCode::OK, &digest, size, None, body)
                    }
                    Err(err) => internal(&err.to_string()),
                },
                RangeAsk::Part { start, len } => {
                    // A range is cut only from a verified blob, and checked piece by piece
                    // against what its whole-blob check saw (SV-3): hashed whole first, once.
                    let content = Arc::clone(&shared.content);
                    let table = match tokio::task::spawn_blocking(move || content.checked_table(&digest)).await {
                        Ok(Ok(table)) => table,
                        Ok(Err(message)) => {
                            shared.log.blob_failed(&digest, &message);
                            return failed_blob(shared, &digest);
                        }
                        Err(join) => return internal(&join.to_string()),
                    };
                    match shared.content.range_reader(&digest, table, start, len) {
                        Ok(reader) => {
                            let check = Verification {
                                content: Arc::clone(&shared.content),
                                digest,
                                log: Arc::clone(&shared.log),
                            };
                            let body = BlobStream::new(reader, len, Some(check)).boxed();
                            blob_response(StatusCode::PARTIAL_CONTENT, &digest, len, Some((start, size)), body)
                        }
                        Err(err) => internal(&err.to_string()),
                    }
                }
            }
        }
    }
}

fn blob_response(
    status: StatusCode,
    digest: &Digest,
    len: u64,
    range: Option<(u64, u64)>,
    body: ServeBody,
) -> Response<ServeBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some((start, size)) = range {
        let last = start + len - 1;
        headers.insert(header::CONTENT_RANGE, header_value(&format!("bytes {start}-{last}/{size}")));
    }
    add_digest(headers, digest);
    response
}

fn add_digest(headers: &mut HeaderMap, digest: &Digest) {
    headers.insert("Docker-Content-Digest", header_value(&digest.to_string()));
    headers.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
}

/// A `HEAD` answer: the status and headers of the `GET`, no body (the length stays announced).
fn without_body(response: Response<ServeBody>) -> Response<ServeBody> {
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, empty())
}

/// The distribution spec's `Link` header for the next page.
fn add_next_link(response: &mut Response<ServeBody>, path: &str, page: &Page, more: bool, last: Option<&String>) {
    if let (true, Some(n), Some(last)) = (more, page.n, last) {
        let link = format!("<{path}?n={n}&last={}>; rel=\"next\"", percent_encode(last));
        response.headers_mut().insert(header::LINK, header_value(&link));
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Header values here come from digests, media types checked when parsed, and numbers; a value
/// a header cannot carry is replaced rather than trusted.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ServeBody> {
    let bytes = serde_json::to_vec(value).expect("a JSON value serialises");
    let mut response = Response::new(full(bytes.clone()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len() as u64));
    response
}

/// The distribution spec's error body: `{"errors":[{"code","message","detail"}]}`.
fn error(status: StatusCode, code: &str, message: &str, detail: serde_json::Value) -> Response<ServeBody> {
    json_response(status, &json!({ "errors": [{ "code": code, "message": message, "detail": detail }] }))
}

fn name_unknown(name: &str) -> Response<ServeBody> {
    error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry", json!({ "name": name }))
}

fn manifest_unknown(name: &str, reference: &str) -> Response<ServeBody> {
    error(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        "manifest unknown",
        json!({ "name": name, "reference": reference }),
    )
}

fn blob_unknown(digest: &Digest) -> Response<ServeBody> {
    error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry", json!({ "digest": digest.to_string() }))
}

fn failed_blob(shared: &Shared, digest: &Digest) -> Response<ServeBody> {
    let message = format!(
        "blob {digest} in {} failed verification and is never served (the archive is damaged: copy it again)",
        shared.content.archive_name()
    );
    error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &message, json!({ "digest": digest.to_string() }))
}

fn unsatisfiable(size: u64) -> Response<ServeBody> {
    let mut response = error(
        StatusCode::RANGE_NOT_SATISFIABLE,
        // The blob is known; its range is not (distribution's code for a range it cannot take).
        "RANGE_INVALID",
        "requested range not satisfiable",
        json!({ "size": size }),
    );
    response.headers_mut().insert(header::CONTENT_RANGE, header_value(&format!("bytes */{size}")));
    response
}

fn internal(message: &str) -> Response<ServeBody> {
    error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", message, json!({}))
}

fn route_error(err: RouteError) -> Response<ServeBody> {
    match err {
        RouteError::ReadOnly { method } => {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "this registry is read-only: it serves an archive (ferry serve)",
                json!({ "method": method }),
            );
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
        RouteError::NotFound => error(StatusCode::NOT_FOUND, "UNSUPPORTED", "no such endpoint", json!({})),
        RouteError::NameInvalid { name } => {
            error(StatusCode::BAD_REQUEST, "NAME_INVALID", "invalid repository name", json!({ "name": name }))
        }
        RouteError::DigestInvalid { digest, reason } => {
            error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", &reason, json!({ "digest": digest }))
        }
        RouteError::TagInvalid { tag } => {
            error(StatusCode::BAD_REQUEST, "TAG_INVALID", "invalid tag", json!({ "tag": tag }))
        }
        RouteError::PaginationInvalid { value } => error(
            StatusCode::BAD_REQUEST,
            "PAGINATION_NUMBER_INVALID",
            "invalid number of results requested",
            json!({ "n": value }),
        ),
    }
}
