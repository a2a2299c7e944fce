//! Proves the real-registry harness in `tests/support` (spec/testing.md TS-1): each variant of
//! `docker-registry` starts on loopback, answers `/v2/` as its auth scheme says (checked with
//! curl), takes an image pushed by skopeo and gives back the same manifest bytes; and a dropped
//! registry, also one dropped by a panicking test, leaves no process behind.

mod support;

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::registry::{PASSWORD, TOOL_TIMEOUT, USERNAME};
use support::token::SERVICE;
use support::{Registry, Variant, run_bounded, write_image_layout};

const CURL_TIMEOUT: Duration = Duration::from_secs(20);

struct Response {
    status: u16,
    headers: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// `curl -i` of `url` with the registry's TLS flags plus `extra`; panics when curl itself fails.
fn curl(registry: &Registry, url: &str, extra: &[&str]) -> Response {
    let output = run_bounded(
        Command::new("curl")
            .args(["-s", "-S", "-i", "--max-time", "10"])
            .args(registry.curl_args())
            .args(extra)
            .arg(url),
        CURL_TIMEOUT,
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "curl {url}: {}\n{}", String::from_utf8_lossy(&output.stderr), registry.log());
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    Response { status, headers: headers.to_string(), body: body.to_string() }
}

fn basic_auth() -> String {
    format!("{USERNAME}:{PASSWORD}")
}

/// Pushes a fresh one-layer image to `repo:tag` with `push_layout` and reads it back with
/// `skopeo inspect --raw`: the bytes, and so the digest, must be the ones written.
fn round_trip(registry: &Registry, repo: &str) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let layout = scratch.path().join("layout");
    let content = format!("pushed to a {:?} registry\n", registry.variant());
    let image = write_image_layout(&layout, "v1", &[("hello.txt", content.as_bytes())]);
    registry.push_layout(&layout, "v1", &format!("{repo}:v1"));

    let output = run_bounded(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .args(registry.skopeo_flags(""))
            .arg(format!("docker://{}/{repo}:v1", registry.host())),
        TOOL_TIMEOUT,
    );
    assert!(output.status.success(), "skopeo inspect: {}\n{}", String::from_utf8_lossy(&output.stderr), registry.log());
    assert_eq!(ferry::model::sha256_digest(&output.stdout).to_string(), image.manifest_digest);
    assert_eq!(output.stdout, image.manifest, "the registry must serve the manifest bytes pushed");
    image.manifest_digest
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn plain_registry_answers_v2_and_round_trips_an_image() {
    let registry = Registry::start(Variant::Plain);
    assert!(registry.url().starts_with("http://127.0.0.1:"), "{}", registry.url());
    assert!(registry.ca_cert_path().is_none() && registry.credentials().is_none());
    let v2 = curl(&registry, &format!("{}/v2/", registry.url()), &[]);
    assert_eq!(v2.status, 200, "{}\n{}", v2.headers, registry.log());
    round_trip(&registry, "harness/plain");
}

#[test]
fn tls_registry_is_trusted_only_through_the_test_ca() {
    let registry = Registry::start(Variant::Tls);
    assert!(registry.url().starts_with("https://127.0.0.1:"), "{}", registry.url());
    let ca = registry.ca_cert_path().expect("TLS variant has a CA");
    assert!(std::fs::read_to_string(ca).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));

    let v2 = curl(&registry, &format!("{}/v2/", registry.url()), &[]);
    assert_eq!(v2.status, 200, "{}", v2.headers);
    // The certificate names localhost as well as 127.0.0.1.
    let port = registry.host().rsplit_once(':').unwrap().1;
    let by_name = format!("https://localhost:{port}/v2/");
    let by_name = curl(&registry, &by_name, &["--resolve", &format!("localhost:{port}:127.0.0.1")]);
    assert_eq!(by_name.status, 200, "{}", by_name.headers);
    // Without the CA, curl must refuse the certificate (exit 60: peer certificate not trusted).
    let untrusted = run_bounded(
        Command::new("curl")
            .args(["-s", "-S", "-o", "/dev/null", "--max-time", "10", "--noproxy", "*"])
            .arg(format!("{}/v2/", registry.url())),
        CURL_TIMEOUT,
    );
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "curl without --cacert: {}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    round_trip(&registry, "harness/tls");
}

#[test]
fn basic_auth_registry_needs_the_credentials() {
    let registry = Registry::start(Variant::TlsBasicAuth);
    assert_eq!(registry.credentials(), Some((USERNAME, PASSWORD)));
    let url = format!("{}/v2/", registry.url());
    let anonymous = curl(&registry, &url, &[]);
    assert_eq!(anonymous.status, 401, "{}", anonymous.headers);
    assert!(anonymous.header("www-authenticate").is_some_and(|h| h.starts_with("Basic ")), "{}", anonymous.headers);
    let wrong = curl(&registry, &url, &["-u", &format!("{USERNAME}:not-the-password")]);
    assert_eq!(wrong.status, 401, "{}", wrong.headers);
    let authed = curl(&registry, &url, &["-u", &basic_auth()]);
    assert_eq!(authed.status, 200, "{}\n{}", authed.headers, registry.log());
    round_trip(&registry, "harness/basic");

    // The Docker config it writes carries the same credentials (skopeo reads that format too).
    let scratch = tempfile::tempdir().unwrap();
    let config = registry.write_docker_config(scratch.path());
    let output = run_bounded(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--authfile"])
            .arg(&config)
            .arg(format!("--cert-dir={}", registry.cert_dir().unwrap().display()))
            .arg(format!("docker://{}/harness/basic:v1", registry.host())),
        TOOL_TIMEOUT,
    );
    assert!(output.status.success(), "skopeo with {}: {}", config.display(), String::from_utf8_lossy(&output.stderr));
}

#[test]
fn token_auth_registry_accepts_tokens_from_its_realm() {
    let registry = Registry::start(Variant::TlsTokenAuth);
    let url = format!("{}/v2/", registry.url());

    // The challenge names the in-process issuer.
    let anonymous = curl(&registry, &url, &[]);
    assert_eq!(anonymous.status, 401, "{}", anonymous.headers);
    let challenge = anonymous.header("www-authenticate").expect("a 401 carries WWW-Authenticate").to_string();
    let realm = registry.realm().unwrap();
    assert!(challenge.starts_with(&format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\"")), "{challenge}");
    assert_eq!(registry.token_requests(), 0);

    // A token fetched with the credentials opens /v2/.
    let token_url = format!("{realm}?service={SERVICE}&scope=repository:harness/token:pull,push");
    let fetched = curl(&registry, &token_url, &["-u", &basic_auth()]);
    assert_eq!(fetched.status, 200, "{}{}", fetched.headers, fetched.body);
    let answer: Value = serde_json::from_str(&fetched.body).unwrap();
    assert_eq!(answer["expires_in"], 300);
    assert_eq!(answer["token"], answer["access_token"]);
    let token = answer["token"].as_str().unwrap().to_string();
    assert_eq!(registry.token_requests(), 1);
    let bearer = format!("Authorization: Bearer {token}");
    let authed = curl(&registry, &url, &["-H", &bearer]);
    assert_eq!(authed.status, 200, "{}\n{}", authed.headers, registry.log());

    // Wrong credentials are refused by the issuer (and still counted).
    let refused = curl(&registry, &token_url, &["-u", &format!("{USERNAME}:wrong")]);
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(registry.token_requests(), 2);

    // The OAuth2 form (POST) gives a refresh token for access_type=offline, which gets tokens.
    let form = format!(
        "grant_type=password&username={USERNAME}&password={PASSWORD}&service={SERVICE}&client_id=ferry&access_type=offline"
    );
    let oauth = curl(&registry, &realm, &["-d", &form]);
    let oauth: Value = serde_json::from_str(&oauth.body).unwrap();
    let refresh = oauth["refresh_token"].as_str().expect("a refresh token for access_type=offline");
    let form = format!("grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}&client_id=ferry");
    let refreshed = curl(&registry, &realm, &["-d", &form]);
    let refreshed: Value = serde_json::from_str(&refreshed.body).unwrap();
    let refreshed_bearer = format!("Authorization: Bearer {}", refreshed["access_token"].as_str().unwrap());
    assert_eq!(curl(&registry, &url, &["-H", &refreshed_bearer]).status, 200);
    assert_eq!(registry.token_requests(), 4);

    // skopeo goes through the realm to push and to read back.
    let digest = round_trip(&registry, "harness/token");
    assert!(registry.token_requests() > 4, "skopeo fetched no token");
    assert!(
        registry.token_request_log().iter().any(|r| r.user.as_deref() == Some(USERNAME)
            && r.scopes.iter().any(|s| s.starts_with("repository:harness/token:") && s.contains("push"))),
        "{:?}",
        registry.token_request_log()
    );

    // The token granted pull on harness/token reads the manifest; an anonymous token may not.
    let manifest_url = format!("{}/v2/harness/token/manifests/v1", registry.url());
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    let pulled = curl(&registry, &manifest_url, &["-H", &bearer, "-H", accept]);
    assert_eq!(pulled.status, 200, "{}", pulled.headers);
    assert_eq!(pulled.header("docker-content-digest"), Some(digest.as_str()));
    let anonymous_token = curl(&registry, &token_url, &[]);
    let anonymous_token: Value = serde_json::from_str(&anonymous_token.body).unwrap();
    let anonymous_bearer = format!("Authorization: Bearer {}", anonymous_token["token"].as_str().unwrap());
    let denied = curl(&registry, &manifest_url, &["-H", &anonymous_bearer, "-H", accept]);
    assert_eq!(denied.status, 401, "{}", denied.headers);
    assert!(denied.header("www-authenticate").is_some_and(|h| h.contains("insufficient_scope")), "{}", denied.headers);
}

#[test]
fn dropping_a_registry_ends_its_process() {
    let registry = Registry::start(Variant::Plain);
    let (pid, host) = (registry.pid(), registry.host().to_string());
    let scratch = registry.dir().to_path_buf();
    assert!(process_exists(pid));
    drop(registry);
    assert!(!process_exists(pid), "docker-registry {pid} outlived its Registry");
    assert!(std::net::TcpStream::connect(&host).is_err(), "{host} still accepts connections");
    assert!(!scratch.exists(), "{} was not removed", scratch.display());
}

#[test]
fn a_panicking_test_leaves_no_registry_behind() {
    let pid = AtomicU32::new(0);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let registry = Registry::start(Variant::TlsTokenAuth);
        pid.store(registry.pid(), Ordering::SeqCst);
        panic!("deliberate panic while a registry runs (expected in this test's output)");
    }));
    assert!(outcome.is_err());
    let pid = pid.load(Ordering::SeqCst);
    assert_ne!(pid, 0);
    assert!(!process_exists(pid), "docker-registry {pid} outlived a panicking test");
}
