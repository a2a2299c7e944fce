//! The well-behaved part of the fault server: repositories held in memory and the handful of
//! distribution-spec endpoints ferry uses (pull: manifests and blobs by digest or tag, with
//! `Range`; push: uploads by POST, PATCH chunks and PUT `?digest=`, mounts, manifests; tag
//! listing with `Link` pagination). Limits make it as strict as some real registries are.
//!
//! Digests are computed here with `sha2` directly, independent of ferry's own model.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::auth::TokenAuth;
use super::http::{Request, Response};

/// `sha256:<hex>` of some bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// How strict the registry is.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Answer `Range: bytes=N-` with 206; when false, ignore it and send the whole blob (200).
    pub honour_range: bool,
    /// Refuse PATCH chunks larger than this with 416.
    pub max_chunk: Option<usize>,
    /// Refuse single-request uploads (a PUT carrying the whole blob) larger than this with 413.
    pub max_monolithic: Option<usize>,
    /// Tags per page of `tags/list`, whatever `n` asks.
    pub tags_page: usize,
    /// Descriptors per page of the referrers API, the rest behind `Link: <..?page=N>`.
    pub referrers_page: usize,
    /// Refuse (411) a POST, PUT or PATCH without `Content-Length`, even with an empty body, as
    /// the distribution-spec asks of clients ("the post request MUST include the following
    /// header: Content-Length: 0") and as registries behind strict proxies enforce.
    pub require_content_length: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            honour_range: true,
            max_chunk: None,
            max_monolithic: None,
            tags_page: 1000,
            referrers_page: 1000,
            require_content_length: false,
        }
    }
}

/// One repository.
#[derive(Debug, Default)]
pub struct Repo {
    pub blobs: HashMap<String, Arc<Vec<u8>>>,
    /// Digest to (media type, bytes).
    pub manifests: HashMap<String, (String, Vec<u8>)>,
    /// Tag to digest.
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Upload {
    repository: String,
    data: Vec<u8>,
}

/// Every repository of the server, and the uploads in progress.
#[derive(Debug, Default)]
pub struct Store {
    pub repos: HashMap<String, Repo>,
    uploads: HashMap<String, Upload>,
    next_upload: u64,
    pub limits: Limits,
}

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Token,
    Root,
    Manifest {
        repository: String,
        reference: String,
    },
    Blob {
        repository: String,
        digest: String,
    },
    StartUpload {
        repository: String,
    },
    Upload {
        repository: String,
        id: String,
    },
    Tags {
        repository: String,
    },
    /// OCI 1.1 `GET /v2/<name>/referrers/<digest>`.
    Referrers {
        repository: String,
        digest: String,
    },
    Unknown,
}

impl Route {
    pub fn parse(path: &str) -> Route {
        if path == "/token" {
            return Route::Token;
        }
        let Some(rest) = path.strip_prefix("/v2/") else { return Route::Unknown };
        if rest.is_empty() {
            return Route::Root;
        }
        let split =
            |marker: &str| rest.rfind(marker).map(|i| (rest[..i].to_string(), rest[i + marker.len()..].to_string()));
        if let Some((repository, reference)) = split("/manifests/") {
            return Route::Manifest { repository, reference };
        }
        if let Some((repository, id)) = split("/blobs/uploads/") {
            return if id.is_empty() { Route::StartUpload { repository } } else { Route::Upload { repository, id } };
        }
        if let Some((repository, digest)) = split("/blobs/") {
            return Route::Blob { repository, digest };
        }
        if let Some((repository, digest)) = split("/referrers/") {
            return Route::Referrers { repository, digest };
        }
        if let Some(repository) = rest.strip_suffix("/tags/list") {
            return Route::Tags { repository: repository.to_string() };
        }
        Route::Unknown
    }

    /// The repository and the action (`pull` or `push`) a request needs, for authentication.
    pub fn access(&self, method: &str) -> (Option<&str>, &'static str) {
        let action = if matches!(method, "GET" | "HEAD") { "pull" } else { "push" };
        match self {
            Route::Manifest { repository, .. }
            | Route::Blob { repository, .. }
            | Route::StartUpload { repository }
            | Route::Upload { repository, .. }
            | Route::Tags { repository }
            | Route::Referrers { repository, .. } => (Some(repository), action),
            Route::Token | Route::Root | Route::Unknown => (None, action),
        }
    }
}

impl Store {
    pub fn repo(&mut self, repository: &str) -> &mut Repo {
        self.repos.entry(repository.to_string()).or_default()
    }

    /// Stores a blob; returns its digest.
    pub fn put_blob(&mut self, repository: &str, bytes: Vec<u8>) -> String {
        let digest = digest_of(&bytes);
        self.repo(repository).blobs.insert(digest.clone(), Arc::new(bytes));
        digest
    }

    /// Stores a manifest (and tags it); returns its digest.
    pub fn put_manifest(&mut self, repository: &str, media_type: &str, bytes: Vec<u8>, tag: Option<&str>) -> String {
        let digest = digest_of(&bytes);
        let repo = self.repo(repository);
        repo.manifests.insert(digest.clone(), (media_type.to_string(), bytes));
        if let Some(tag) = tag {
            repo.tags.insert(tag.to_string(), digest.clone());
        }
        digest
    }

    /// Serves a request already authenticated. `auth` (if the server has it) decides whether a
    /// mount may read its source repository.
    pub fn handle(&mut self, request: &Request, route: &Route, auth: Option<&TokenAuth>) -> Response {
        let sends_body = matches!(request.method.as_str(), "POST" | "PUT" | "PATCH");
        if sends_body && self.limits.require_content_length && request.header("content-length").is_none() {
            return Response::error(411, "SIZE_INVALID", "Content-Length required");
        }
        match (request.method.as_str(), route) {
            ("GET" | "HEAD", Route::Root) => json(200, "{}"),
            ("GET" | "HEAD", Route::Manifest { repository, reference }) => self.get_manifest(repository, reference),
            ("PUT", Route::Manifest { repository, reference }) => {
                self.put_manifest_request(request, repository, reference)
            }
            ("GET" | "HEAD", Route::Blob { repository, digest }) => self.get_blob(request, repository, digest),
            ("POST", Route::StartUpload { repository }) => self.start_upload(request, repository, auth),
            ("PATCH", Route::Upload { repository, id }) => self.patch_upload(request, repository, id),
            ("PUT", Route::Upload { repository, id }) => self.finish_upload(request, repository, id),
            ("GET", Route::Tags { repository }) => self.list_tags(request, repository),
            ("GET", Route::Referrers { repository, digest }) => self.referrers(request, repository, digest),
            _ => Response::error(405, "UNSUPPORTED", "not served by the fault registry"),
        }
    }

    /// The referrers API: an index of every manifest of the repository whose `subject` is
    /// `digest`, with its `artifactType` (distribution-spec 1.1).
    fn referrers(&mut self, request: &Request, repository: &str, digest: &str) -> Response {
        let mut manifests: Vec<serde_json::Value> = Vec::new();
        for (own, (media_type, bytes)) in &self.repo(repository).manifests {
            let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(bytes) else { continue };
            if parsed["subject"]["digest"] != digest {
                continue;
            }
            let mut descriptor = serde_json::json!({"mediaType": media_type, "digest": own, "size": bytes.len()});
            if let Some(artifact_type) = parsed.get("artifactType") {
                descriptor["artifactType"] = artifact_type.clone();
            }
            manifests.push(descriptor);
        }
        manifests.sort_by_key(|d| d["digest"].as_str().unwrap_or_default().to_string());
        let size = self.limits.referrers_page.max(1);
        let page: usize = request.query_param("page").and_then(|page| page.parse().ok()).unwrap_or(0);
        let more = manifests.len() > (page + 1) * size;
        let manifests: Vec<serde_json::Value> = manifests.into_iter().skip(page * size).take(size).collect();
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests,
        });
        let response = Response::new(200)
            .header("Content-Type", "application/vnd.oci.image.index.v1+json")
            .body(serde_json::to_vec(&index).unwrap());
        if !more {
            return response;
        }
        let next = format!(r#"</v2/{repository}/referrers/{digest}?page={}>; rel="next""#, page + 1);
        response.header("Link", next)
    }

    fn get_manifest(&mut self, repository: &str, reference: &str) -> Response {
        let repo = self.repo(repository);
        let digest = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            repo.tags.get(reference).cloned()
        };
        match digest.and_then(|d| repo.manifests.get(&d).map(|m| (d, m))) {
            Some((digest, (media_type, bytes))) => Response::new(200)
                .header("Content-Type", media_type.clone())
                .header("Docker-Content-Digest", digest)
                .body(bytes.clone()),
            None => Response::error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
        }
    }

    fn put_manifest_request(&mut self, request: &Request, repository: &str, reference: &str) -> Response {
        let digest = digest_of(&request.body);
        if reference.starts_with("sha256:") && reference != digest {
            return Response::error(400, "DIGEST_INVALID", "the manifest does not hash to its reference");
        }
        let Some(media_type) = request.header("content-type").map(str::to_string) else {
            return Response::error(400, "MANIFEST_INVALID", "no Content-Type");
        };
        // Like distribution: every blob an image manifest names must already be here.
        let parsed: serde_json::Value = match serde_json::from_slice(&request.body) {
            Ok(value) => value,
            Err(_) => return Response::error(400, "MANIFEST_INVALID", "not JSON"),
        };
        let repo = self.repo(repository);
        let mut named = Vec::new();
        if let Some(config) = parsed.get("config") {
            named.push(config);
        }
        named.extend(parsed.get("layers").and_then(|l| l.as_array()).into_iter().flatten());
        for descriptor in named {
            let wanted = descriptor.get("digest").and_then(|d| d.as_str()).unwrap_or_default();
            if !repo.blobs.contains_key(wanted) {
                return Response::error(400, "MANIFEST_BLOB_UNKNOWN", "a blob the manifest names is missing");
            }
        }
        let tag = (!reference.starts_with("sha256:")).then_some(reference);
        let digest = self.put_manifest(repository, &media_type, request.body.clone(), tag);
        Response::new(201)
            .header("Location", format!("/v2/{repository}/manifests/{digest}"))
            .header("Docker-Content-Digest", digest)
    }

    fn get_blob(&mut self, request: &Request, repository: &str, digest: &str) -> Response {
        let honour_range = self.limits.honour_range;
        let Some(bytes) = self.repo(repository).blobs.get(digest).cloned() else {
            return Response::error(404, "BLOB_UNKNOWN", "blob unknown");
        };
        let base = Response::new(200)
            .header("Content-Type", "application/octet-stream")
            .header("Docker-Content-Digest", digest);
        let range = request.header("range").filter(|_| honour_range).and_then(parse_range);
        match range {
            None if honour_range => base.header("Accept-Ranges", "bytes").body(bytes.to_vec()),
            None => base.body(bytes.to_vec()),
            Some((start, _)) if start >= bytes.len() => Response::error(416, "RANGE_INVALID", "range not satisfiable"),
            Some((start, end)) => {
                let end = end.unwrap_or(bytes.len() - 1).min(bytes.len() - 1);
                let mut partial = base.header("Content-Range", format!("bytes {start}-{end}/{}", bytes.len()));
                partial.status = 206;
                partial.body(bytes[start..=end].to_vec())
            }
        }
    }

    fn new_upload(&mut self, repository: &str) -> Response {
        self.next_upload += 1;
        let id = format!("upload-{}", self.next_upload);
        self.uploads.insert(id.clone(), Upload { repository: repository.to_string(), data: Vec::new() });
        // A query in the Location, as distribution sends (`_state=`), so the client must append
        // `&digest=` rather than `?digest=`.
        Response::new(202)
            .header("Location", format!("/v2/{repository}/blobs/uploads/{id}?_state=0"))
            .header("Docker-Upload-UUID", id)
            .header("Range", "0-0")
    }

    /// An upload into `repository` already holding `data`; the path and query of its Location.
    pub fn open_upload(&mut self, repository: &str, data: &[u8]) -> String {
        self.next_upload += 1;
        let id = format!("upload-{}", self.next_upload);
        self.uploads.insert(id.clone(), Upload { repository: repository.to_string(), data: data.to_vec() });
        format!("/v2/{repository}/blobs/uploads/{id}?_state={}", data.len())
    }

    fn start_upload(&mut self, request: &Request, repository: &str, auth: Option<&TokenAuth>) -> Response {
        if let (Some(digest), Some(from)) = (request.query_param("mount"), request.query_param("from")) {
            let readable = auth.is_none_or(|auth| auth.allows(request, Some(&from), "pull"));
            let source = self.repos.get(&from).and_then(|repo| repo.blobs.get(&digest)).cloned();
            if let (true, Some(bytes)) = (readable, source) {
                self.repo(repository).blobs.insert(digest.clone(), bytes);
                return Response::new(201)
                    .header("Location", format!("/v2/{repository}/blobs/{digest}"))
                    .header("Docker-Content-Digest", digest);
            }
        }
        self.new_upload(repository)
    }

    fn patch_upload(&mut self, request: &Request, repository: &str, id: &str) -> Response {
        let max_chunk = self.limits.max_chunk;
        let Some(upload) = self.uploads.get_mut(id).filter(|u| u.repository == repository) else {
            return Response::error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown");
        };
        if max_chunk.is_some_and(|max| request.body.len() > max) {
            return Response::error(416, "BLOB_UPLOAD_INVALID", "chunk larger than this registry accepts");
        }
        if let Some(range) = request.header("content-range") {
            let expected_start = upload.data.len();
            let fits = range
                .split_once('-')
                .and_then(|(start, end)| Some((start.parse::<usize>().ok()?, end.parse::<usize>().ok()?)));
            match fits {
                Some((start, end)) if start == expected_start && end + 1 == start + request.body.len() => {}
                _ => return Response::error(416, "BLOB_UPLOAD_INVALID", "Content-Range does not continue the upload"),
            }
        }
        upload.data.extend_from_slice(&request.body);
        let length = upload.data.len();
        Response::new(202)
            .header("Location", format!("/v2/{repository}/blobs/uploads/{id}?_state={length}"))
            .header("Docker-Upload-UUID", id)
            .header("Range", format!("0-{}", length.saturating_sub(1)))
    }

    fn finish_upload(&mut self, request: &Request, repository: &str, id: &str) -> Response {
        // A PUT carrying the blob must say how long it is (distribution-spec "pushing a blob
        // monolithically"); an empty closing PUT may come either way unless the limits say so.
        if !request.body.is_empty() && (request.is_chunked() || request.header("content-length").is_none()) {
            return Response::error(411, "SIZE_INVALID", "a PUT with a body must say its Content-Length");
        }
        if self.limits.max_monolithic.is_some_and(|max| request.body.len() > max) {
            return Response::error(413, "SIZE_INVALID", "too large for one request; upload in chunks");
        }
        let Some(mut upload) = self.uploads.remove(id).filter(|u| u.repository == repository) else {
            return Response::error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown");
        };
        upload.data.extend_from_slice(&request.body);
        let Some(wanted) = request.query_param("digest") else {
            return Response::error(400, "DIGEST_INVALID", "no digest parameter");
        };
        if digest_of(&upload.data) != wanted {
            return Response::error(400, "DIGEST_INVALID", "the uploaded bytes do not match the digest");
        }
        self.repo(repository).blobs.insert(wanted.clone(), Arc::new(upload.data));
        Response::new(201)
            .header("Location", format!("/v2/{repository}/blobs/{wanted}"))
            .header("Docker-Content-Digest", wanted)
    }

    fn list_tags(&mut self, request: &Request, repository: &str) -> Response {
        let page = self.limits.tags_page.max(1);
        let wanted: usize = request.query_param("n").and_then(|n| n.parse().ok()).unwrap_or(page).min(page);
        let last = request.query_param("last");
        let tags: Vec<String> =
            self.repo(repository).tags.keys().filter(|t| last.as_ref().is_none_or(|l| *t > l)).cloned().collect();
        let shown: Vec<String> = tags.iter().take(wanted).cloned().collect();
        let body = serde_json::json!({"name": repository, "tags": shown}).to_string();
        let mut response = json(200, &body);
        if tags.len() > shown.len() {
            let next = shown.last().cloned().unwrap_or_default();
            response =
                response.header("Link", format!(r#"</v2/{repository}/tags/list?n={wanted}&last={next}>; rel="next""#));
        }
        response
    }
}

fn json(status: u16, body: &str) -> Response {
    Response::new(status).header("Content-Type", "application/json").body(body.as_bytes().to_vec())
}

/// `bytes=N-` or `bytes=N-M`.
fn parse_range(value: &str) -> Option<(usize, Option<usize>)> {
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    let end = if end.is_empty() { None } else { Some(end.parse().ok()?) };
    Some((start.parse().ok()?, end))
}
