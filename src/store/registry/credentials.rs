//! Where registry credentials come from, in imgpkg's order (spec/cli.md "Registry
//! flags", RF-1): flags (or `IMGPKG_USERNAME`/`IMGPKG_PASSWORD`/`IMGPKG_TOKEN`/`IMGPKG_ANON`),
//! then `IMGPKG_REGISTRY_*` and `FERRY_REGISTRY_*` sets (most specific host/path wins), then
//! Docker's `config.json` (`credHelpers`, `credsStore`, `auths`), then podman's `auth.json`.
//!
//! Config files are read, and credential helpers run, at most once per registry host for the
//! life of a store, which is one run (spec/cli.md "Registry flags", RF-1): a helper may take a
//! noticeable time (Docker Desktop's `credsStore`, ecr-login, gcloud), and every request, retry
//! and token refresh needs the credential again.
//!
//! Secrets never appear in `Debug` output or error messages.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// A secret that prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What to present to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    Basic {
        username: String,
        password: Secret,
    },
    /// An identity (refresh) token, exchanged at the token endpoint.
    IdentityToken(Secret),
    /// A bearer token used as is.
    RegistryToken(Secret),
}

/// Credentials given on the command line (or their environment equivalents).
#[derive(Debug, Clone, Default)]
pub struct FlagCredentials {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    pub anonymous: bool,
}

/// One `IMGPKG_REGISTRY_*` / `FERRY_REGISTRY_*` set.
#[derive(Debug, Clone)]
struct EnvSet {
    /// `host[/path]`, where host labels may be `*`.
    pattern: String,
    credential: Credential,
}

/// What the config files say for each registry host, resolved on first use; clones share it.
type ConfigCache = Arc<Mutex<HashMap<String, Arc<OnceLock<Option<Credential>>>>>>;

/// Resolves the credential for a registry host and repository.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    flags: FlagCredentials,
    env_sets: Vec<EnvSet>,
    config_files: Vec<PathBuf>,
    resolved: ConfigCache,
}

impl CredentialStore {
    /// Reads the environment and the standard config file locations.
    pub fn from_environment(flags: FlagCredentials) -> Self {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        let mut config_files = Vec::new();
        let docker_dir = vars
            .get("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| vars.get("HOME").map(|h| Path::new(h).join(".docker")));
        if let Some(dir) = docker_dir {
            config_files.push(dir.join("config.json"));
        }
        if let Some(file) = vars.get("REGISTRY_AUTH_FILE") {
            config_files.push(PathBuf::from(file));
        } else if let Some(runtime) = vars.get("XDG_RUNTIME_DIR") {
            config_files.push(Path::new(runtime).join("containers/auth.json"));
        }
        CredentialStore { flags, env_sets: env_sets(&vars), config_files, resolved: ConfigCache::default() }
    }

    /// A store with only the given pieces (for tests and embedding).
    pub fn new(flags: FlagCredentials, env: &BTreeMap<String, String>, config_files: Vec<PathBuf>) -> Self {
        CredentialStore { flags, env_sets: env_sets(env), config_files, resolved: ConfigCache::default() }
    }

    /// The credential for `registry` (a host with optional port) and `repository` path.
    pub fn lookup(&self, registry: &str, repository: &str) -> Credential {
        if self.flags.anonymous {
            return Credential::Anonymous;
        }
        if let Some(token) = &self.flags.token {
            return Credential::RegistryToken(token.clone());
        }
        if let (Some(username), Some(password)) = (&self.flags.username, &self.flags.password) {
            return Credential::Basic { username: username.clone(), password: password.clone() };
        }
        if let Some(set) = self.best_env_set(registry, repository) {
            return set.credential.clone();
        }
        self.resolved_from_config_files(registry).unwrap_or(Credential::Anonymous)
    }

    /// The config files' credential for `registry`, read (and its helper run) only the first
    /// time; concurrent first lookups of one host wait for the one resolution.
    fn resolved_from_config_files(&self, registry: &str) -> Option<Credential> {
        let slot = {
            let mut resolved = self.resolved.lock().expect("credential cache lock");
            Arc::clone(resolved.entry(registry.to_string()).or_default())
        };
        slot.get_or_init(|| self.config_files.iter().find_map(|file| from_config_file(file, registry))).clone()
    }

    fn best_env_set(&self, registry: &str, repository: &str) -> Option<&EnvSet> {
        self.env_sets
            .iter()
            .filter(|set| pattern_matches(&set.pattern, registry, repository))
            .max_by_key(|set| set.pattern.len())
    }
}

/// Reads every `<PREFIX>_HOSTNAME[_suffix]` set of both prefixes.
fn env_sets(vars: &BTreeMap<String, String>) -> Vec<EnvSet> {
    let mut sets = Vec::new();
    for prefix in ["IMGPKG_REGISTRY_", "FERRY_REGISTRY_"] {
        let hostname_key = format!("{prefix}HOSTNAME");
        for (key, hostname) in vars {
            let Some(suffix) = key.strip_prefix(&hostname_key) else { continue };
            if !(suffix.is_empty() || suffix.starts_with('_')) {
                continue;
            }
            let get = |field: &str| vars.get(&format!("{prefix}{field}{suffix}")).filter(|v| !v.is_empty());
            let credential = if let Some(token) = get("REGISTRY_TOKEN") {
                Credential::RegistryToken(Secret::new(token.clone()))
            } else if let Some(token) = get("IDENTITY_TOKEN") {
                Credential::IdentityToken(Secret::new(token.clone()))
            } else if let (Some(username), Some(password)) = (get("USERNAME"), get("PASSWORD")) {
                Credential::Basic { username: username.clone(), password: Secret::new(password.clone()) }
            } else {
                Credential::Anonymous
            };
            let pattern = hostname.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
            sets.push(EnvSet { pattern: pattern.to_string(), credential });
        }
    }
    sets
}

/// `host[/path]` with `*` host labels, against a registry and repository.
fn pattern_matches(pattern: &str, registry: &str, repository: &str) -> bool {
    let (host_pattern, path_pattern) = pattern.split_once('/').unwrap_or((pattern, ""));
    let normal = |host: &str| if host == "docker.io" { "index.docker.io".to_string() } else { host.to_string() };
    let (host_pattern, registry) = (normal(host_pattern), normal(registry));
    let pattern_labels: Vec<&str> = host_pattern.split('.').collect();
    let host_labels: Vec<&str> = registry.split('.').collect();
    let host_ok = pattern_labels.len() == host_labels.len()
        && pattern_labels.iter().zip(&host_labels).all(|(p, h)| *p == "*" || p == h);
    host_ok
        && (path_pattern.is_empty()
            || repository == path_pattern
            || repository.starts_with(&format!("{path_pattern}/")))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// The keys under which a config file may store a registry (Docker Hub has several).
fn config_keys(registry: &str) -> Vec<String> {
    if matches!(registry, "index.docker.io" | "docker.io" | "registry-1.docker.io") {
        vec!["https://index.docker.io/v1/".into(), "index.docker.io".into(), "docker.io".into()]
    } else {
        vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")]
    }
}

fn from_config_file(path: &Path, registry: &str) -> Option<Credential> {
    let text = std::fs::read(path).ok()?;
    let config: ConfigFile = serde_json::from_slice(&text).ok()?;
    let keys = config_keys(registry);
    if let Some(helper) = keys.iter().find_map(|key| config.cred_helpers.get(key)) {
        return run_helper(helper, &keys[0]);
    }
    if let Some(entry) = keys.iter().find_map(|key| config.auths.get(key)) {
        if let Some(credential) = from_auth_entry(entry) {
            return Some(credential);
        }
    }
    config.creds_store.as_deref().and_then(|store| run_helper(store, &keys[0]))
}

fn from_auth_entry(entry: &AuthEntry) -> Option<Credential> {
    if let Some(token) = entry.registrytoken.as_ref().filter(|t| !t.is_empty()) {
        return Some(Credential::RegistryToken(Secret::new(token.clone())));
    }
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Some(Credential::IdentityToken(Secret::new(token.clone())));
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Some(Credential::Basic { username: username.clone(), password: Secret::new(password.clone()) });
    }
    let decoded = STANDARD.decode(entry.auth.as_ref()?.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credential::Basic { username: username.to_string(), password: Secret::new(password) })
}

/// Runs `docker-credential-NAME get`; "not found" (or a missing helper) means anonymous.
fn run_helper(helper: &str, server: &str) -> Option<Credential> {
    #[derive(Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(server.as_bytes()).ok()?;
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        return None;
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).ok()?;
    if answer.username == "<token>" {
        return Some(Credential::IdentityToken(Secret::new(answer.secret)));
    }
    Some(Credential::Basic { username: answer.username, password: Secret::new(answer.secret) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn imgpkg_env_sets_with_suffixes_and_most_specific_path() {
        let vars = env(&[
            ("IMGPKG_REGISTRY_HOSTNAME_0", "reg.example.com"),
            ("IMGPKG_REGISTRY_USERNAME_0", "wide"),
            ("IMGPKG_REGISTRY_PASSWORD_0", "p0"),
            ("IMGPKG_REGISTRY_HOSTNAME_1", "reg.example.com/team"),
            ("IMGPKG_REGISTRY_USERNAME_1", "team"),
            ("IMGPKG_REGISTRY_PASSWORD_1", "p1"),
            ("FERRY_REGISTRY_HOSTNAME", "*.corp.example"),
            ("FERRY_REGISTRY_REGISTRY_TOKEN", "tok"),
        ]);
        let store = CredentialStore::new(FlagCredentials::default(), &vars, Vec::new());
        let user = |reg: &str, repo: &str| match store.lookup(reg, repo) {
            Credential::Basic { username, .. } => username,
            other => format!("{other:?}"),
        };
        assert_eq!(user("reg.example.com", "team/app"), "team");
        assert_eq!(user("reg.example.com", "other/app"), "wide");
        assert!(matches!(store.lookup("a.corp.example", "x"), Credential::RegistryToken(_)));
        assert_eq!(store.lookup("elsewhere.io", "x"), Credential::Anonymous);
    }

    #[test]
    fn docker_config_auths_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        let auth = STANDARD.encode("alice:s3cret");
        std::fs::write(&file, format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}}}}}}"#)).unwrap();
        let store = CredentialStore::new(FlagCredentials::default(), &BTreeMap::new(), vec![file.clone()]);
        let found = store.lookup("index.docker.io", "library/nginx");
        assert!(matches!(&found, Credential::Basic { username, .. } if username == "alice"));
        assert!(!format!("{found:?}").contains("s3cret"), "secrets never print");
        let flags = FlagCredentials { anonymous: true, ..FlagCredentials::default() };
        let anonymous = CredentialStore::new(flags, &BTreeMap::new(), vec![file]);
        assert_eq!(anonymous.lookup("index.docker.io", "library/nginx"), Credential::Anonymous);
    }

    /// RF-1: the config file is read once per registry host; later lookups (other
    /// repositories, clones of the store) reuse the answer even if the file changes.
    #[test]
    fn config_files_are_resolved_once_per_registry_host() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        let write = |user: &str| {
            let auth = STANDARD.encode(format!("{user}:pw"));
            std::fs::write(&file, format!(r#"{{"auths":{{"r.example":{{"auth":"{auth}"}}}}}}"#)).unwrap();
        };
        write("first");
        let store = CredentialStore::new(FlagCredentials::default(), &BTreeMap::new(), vec![file.clone()]);
        let user = |store: &CredentialStore, repo: &str| match store.lookup("r.example", repo) {
            Credential::Basic { username, .. } => username,
            other => format!("{other:?}"),
        };
        assert_eq!(user(&store, "a"), "first");
        write("second");
        assert_eq!(user(&store, "b"), "first", "resolved once for the host");
        assert_eq!(user(&store.clone(), "c"), "first", "clones share the resolution");
        let fresh = CredentialStore::new(FlagCredentials::default(), &BTreeMap::new(), vec![file.clone()]);
        assert_eq!(user(&fresh, "a"), "second", "another run reads the file again");
    }
}
