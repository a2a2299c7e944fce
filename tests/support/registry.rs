//! A real registry per test: Debian's `docker-registry` (CNCF distribution 2.8) serving a
//! temporary storage dir on a free 127.0.0.1 port (spec/testing.md TS-1). The process is killed
//! and reaped when the [`Registry`] drops, which also happens while a panicking test unwinds.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tempfile::TempDir;

use super::pki::TestPki;
use super::process::run_bounded;
use super::token::{self, TokenIssuer, TokenRequest};

/// The user the auth variants accept (htpasswd, and the token issuer's basic auth).
pub const USERNAME: &str = "ferry";
/// The password of [`USERNAME`].
pub const PASSWORD: &str = "ferry-test-password";
/// bcrypt of [`PASSWORD`] (distribution's htpasswd reads bcrypt only). Cost 4, the minimum,
/// because the registry checks it on every request. Check with `htpasswd -vb FILE USER PASS`.
const PASSWORD_BCRYPT: &str = "$2b$04$NKsRUPPqfwFyEHilqh36J.8.a1SwgPaWegrmfPzMTZFTkK4nW20bK";

/// How long [`Registry::start`] waits for `GET /v2/` to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one skopeo run (seeding, reading back) may take.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// Start attempts: a port picked free can be taken by another test before the registry binds it.
const START_ATTEMPTS: usize = 3;

/// How the registry is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Plain HTTP, anonymous.
    Plain,
    /// HTTPS with a certificate from a test CA, anonymous.
    Tls,
    /// HTTPS and htpasswd basic auth.
    TlsBasicAuth,
    /// HTTPS and bearer tokens from a token issuer in the test process.
    TlsTokenAuth,
}

impl Variant {
    /// Every variant, for tests that cover them all.
    pub const ALL: [Variant; 4] = [Variant::Plain, Variant::Tls, Variant::TlsBasicAuth, Variant::TlsTokenAuth];

    /// Whether the registry serves HTTPS.
    pub fn tls(self) -> bool {
        self != Variant::Plain
    }

    /// Whether the registry requires credentials.
    pub fn auth(self) -> bool {
        matches!(self, Variant::TlsBasicAuth | Variant::TlsTokenAuth)
    }
}

/// Kills and reaps the registry process on drop; the first field of [`Registry`] so it goes
/// before the storage dir and the token issuer.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `docker-registry`; see the module docs of `support` for the API.
pub struct Registry {
    process: Process,
    variant: Variant,
    host: String,
    log_path: PathBuf,
    ca_cert: Option<PathBuf>,
    issuer: Option<TokenIssuer>,
    dir: TempDir,
}

enum NotReady {
    AddressInUse,
    Failed(String),
}

impl Registry {
    /// Starts a registry of `variant` and waits until `GET /v2/` answers 200 or 401; panics
    /// with the registry's log when it does not within [`START_TIMEOUT`].
    pub fn start(variant: Variant) -> Registry {
        let mut dir = tempfile::Builder::new().prefix("ferry-registry-").tempdir().expect("temp dir for the registry");
        let storage = dir.path().join("storage");
        fs::create_dir(&storage).expect("create registry storage dir");

        let pki = variant.tls().then(TestPki::generate);
        let mut ca_cert = None;
        let mut tls_config = String::new();
        if let Some(pki) = &pki {
            // `certs/` holds only the CA: skopeo's --cert-dir takes every *.crt in it as a root
            // and would treat a *.key as a client key.
            let certs = dir.path().join("certs");
            fs::create_dir(&certs).expect("create certs dir");
            let ca = certs.join("ca.crt");
            let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            fs::write(&ca, &pki.ca_pem).expect("write ca.crt");
            fs::write(&cert, &pki.server_cert_pem).expect("write server.crt");
            fs::write(&key, &pki.server_key_pem).expect("write server.key");
            tls_config = format!("  tls:\n    certificate: {}\n    key: {}\n", yaml_path(&cert), yaml_path(&key));
            ca_cert = Some(ca);
        }

        let mut issuer = None;
        let auth_config = match variant {
            Variant::Plain | Variant::Tls => String::new(),
            Variant::TlsBasicAuth => {
                let htpasswd = dir.path().join("htpasswd");
                fs::write(&htpasswd, format!("{USERNAME}:{PASSWORD_BCRYPT}\n")).expect("write htpasswd");
                format!("auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n", yaml_path(&htpasswd))
            }
            Variant::TlsTokenAuth => {
                let started =
                    TokenIssuer::start(pki.as_ref().expect("token auth is served over TLS"), USERNAME, PASSWORD);
                let config = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    started.realm(),
                    token::SERVICE,
                    token::ISSUER,
                    yaml_path(ca_cert.as_ref().expect("CA written")),
                );
                issuer = Some(started);
                config
            }
        };

        let log_path = dir.path().join("registry.log");
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let config_path = dir.path().join("config.yml");
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {host}\n  secret: ferry-test-http-secret\n{tls_config}{auth_config}",
                storage = yaml_path(&storage),
            );
            fs::write(&config_path, config).expect("write registry config");
            let child = spawn(&config_path, dir.path(), &log_path);
            let mut registry = Registry {
                process: Process(child),
                variant,
                host,
                log_path: log_path.clone(),
                ca_cert: ca_cert.clone(),
                issuer: None,
                dir,
            };
            match registry.wait_ready() {
                Ok(()) => {
                    registry.issuer = issuer;
                    return registry;
                }
                Err(NotReady::AddressInUse) => {
                    last_failure = format!("{} was taken before the registry bound it", registry.host);
                    // Kill the process but keep the temp dir for the next attempt.
                    let Registry { process, dir: kept, .. } = registry;
                    drop(process);
                    dir = kept;
                }
                Err(NotReady::Failed(reason)) => {
                    panic!(
                        "docker-registry ({variant:?}) did not start: {reason}\n--- registry log ---\n{}",
                        registry.log()
                    )
                }
            }
        }
        panic!("docker-registry ({variant:?}) did not start after {START_ATTEMPTS} attempts: {last_failure}")
    }

    fn wait_ready(&mut self) -> Result<(), NotReady> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr: SocketAddr = self.host.parse().expect("host is an address");
        loop {
            if let Some(status) = self.process.0.try_wait().expect("poll docker-registry") {
                if self.log().contains("address already in use") {
                    return Err(NotReady::AddressInUse);
                }
                return Err(NotReady::Failed(format!("it exited with {status}")));
            }
            // Another test's registry may hold the port we picked; only our own log line proves
            // that the answer comes from this process.
            let listening = format!("listening on {}", self.host);
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && matches!(self.probe_v2().as_str(), "200" | "401")
                && self.log().contains(&listening)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NotReady::Failed(format!(
                    "GET {}/v2/ did not answer within {START_TIMEOUT:?}",
                    self.url()
                )));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The HTTP status of an anonymous `GET /v2/`, as curl prints it ("000" when none).
    fn probe_v2(&self) -> String {
        let output = run_bounded(
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3"])
                .args(self.curl_args())
                .arg(format!("{}/v2/", self.url())),
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The variant this registry was started as.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// `127.0.0.1:PORT`, the registry part of a reference.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.variant.tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// The PEM of the CA that signed the registry's certificate (TLS variants).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// A directory holding only `ca.crt`, the form skopeo's `--cert-dir` wants (TLS variants).
    pub fn cert_dir(&self) -> Option<&Path> {
        self.ca_cert.as_deref().and_then(Path::parent)
    }

    /// The username and password the auth variants accept.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.variant.auth().then_some((USERNAME, PASSWORD))
    }

    /// ferry's flags for reaching this registry: its CA (or plain HTTP) and its credentials.
    pub fn access_flags(&self) -> Vec<String> {
        let mut flags = self.reach_flags();
        flags.extend(self.credential_flags());
        flags
    }

    /// ferry's flags for reaching this registry without credentials: its CA, or plain HTTP.
    pub fn reach_flags(&self) -> Vec<String> {
        match self.ca_cert_path() {
            Some(ca) => vec!["--registry-ca-cert-path".into(), ca.display().to_string()],
            None => vec!["--registry-insecure".into()],
        }
    }

    /// ferry's credential flags for the auth variants (none otherwise).
    pub fn credential_flags(&self) -> Vec<String> {
        self.credentials()
            .map(|(user, password)| {
                vec!["--registry-username".into(), user.into(), "--registry-password".into(), password.into()]
            })
            .unwrap_or_default()
    }

    /// The process id of `docker-registry`.
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// The token realm (`http://127.0.0.1:PORT/token`) of [`Variant::TlsTokenAuth`].
    pub fn realm(&self) -> Option<String> {
        self.issuer.as_ref().map(TokenIssuer::realm)
    }

    /// How many requests the token issuer received (0 for the other variants).
    pub fn token_requests(&self) -> usize {
        self.issuer.as_ref().map_or(0, TokenIssuer::requests)
    }

    /// Every request the token issuer received, oldest first (user and scopes asked).
    pub fn token_request_log(&self) -> Vec<TokenRequest> {
        self.issuer.as_ref().map_or_else(Vec::new, TokenIssuer::request_log)
    }

    /// What the registry printed so far (stdout and stderr), for assertion messages.
    pub fn log(&self) -> String {
        fs::read(&self.log_path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// The scratch dir the registry's config, certificates and storage live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// curl flags to reach this registry: no proxy, and `--cacert` for the TLS variants.
    /// Credentials are left to the caller.
    pub fn curl_args(&self) -> Vec<String> {
        let mut args = vec!["--noproxy".to_string(), "*".to_string()];
        if let Some(ca) = &self.ca_cert {
            args.push("--cacert".to_string());
            args.push(ca.display().to_string());
        }
        args
    }

    /// skopeo flags to reach this registry: `prefix` is `""` (inspect, delete, list-tags),
    /// `"src-"` or `"dest-"` (copy). Plain HTTP gets `--PREFIXtls-verify=false`, TLS gets
    /// `--PREFIXcert-dir`, auth gets `--PREFIXcreds`.
    pub fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let mut flags = Vec::new();
        match self.cert_dir() {
            Some(dir) => flags.push(format!("--{prefix}cert-dir={}", dir.display())),
            None => flags.push(format!("--{prefix}tls-verify=false")),
        }
        if let Some((user, pass)) = self.credentials() {
            flags.push(format!("--{prefix}creds={user}:{pass}"));
        }
        flags
    }

    /// Copies the image or index named `layout_ref_name` in the OCI layout at `layout_dir` to
    /// `HOST/REPO:TAG` with skopeo (`--all --preserve-digests`, so digests stay as written);
    /// panics with skopeo's output and the registry's log when the copy fails.
    pub fn push_layout(&self, layout_dir: &Path, layout_ref_name: &str, repo_and_tag: &str) {
        let source = format!("oci:{}:{layout_ref_name}", layout_dir.display());
        let destination = format!("docker://{}/{repo_and_tag}", self.host);
        let output = run_bounded(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--all", "--preserve-digests"])
                .args(self.skopeo_flags("dest-"))
                .args([&source, &destination]),
            TOOL_TIMEOUT,
        );
        assert!(
            output.status.success(),
            "skopeo copy {source} {destination} failed: {}\n--- registry log ---\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }

    /// Writes `dir/config.json` in Docker's format with this registry's credentials under
    /// `auths` (an empty `auths` for anonymous variants) and returns its path; point
    /// `DOCKER_CONFIG` at `dir`.
    pub fn write_docker_config(&self, dir: &Path) -> PathBuf {
        let mut auths = serde_json::Map::new();
        if let Some((user, pass)) = self.credentials() {
            auths.insert(self.host.clone(), serde_json::json!({"auth": STANDARD.encode(format!("{user}:{pass}"))}));
        }
        fs::create_dir_all(dir).expect("create docker config dir");
        let path = dir.join("config.json");
        fs::write(&path, serde_json::json!({"auths": auths}).to_string()).expect("write docker config.json");
        path
    }
}

/// Starts `docker-registry serve CONFIG` with stdout and stderr going to `log_path`.
fn spawn(config_path: &Path, dir: &Path, log_path: &Path) -> Child {
    let log = File::create(log_path).expect("create registry log");
    let mut command = Command::new("docker-registry");
    command
        .arg("serve")
        .arg(config_path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log);
    // distribution overrides its config with REGISTRY_* variables; none may leak in.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGISTRY_") {
            command.env_remove(key);
        }
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run docker-registry: {e} (install the test tools with `make deps`)"))
}

/// A port that was free a moment ago: bind port 0 on loopback, read it, release it.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A path as a YAML double-quoted scalar (JSON string syntax is valid YAML).
fn yaml_path(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).expect("path as JSON string")
}
