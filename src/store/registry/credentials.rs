//! Where registry credentials come from, in imgpkg's order (spec/cli.md "Registry
//! flags", RF-1): `--registry-anon`, then the `IMGPKG_REGISTRY_*` and `FERRY_REGISTRY_*` sets
//! that name the registry (most specific host/path wins; a set names one registry, so it goes
//! before the flags, which name none), then the flags (or `IMGPKG_USERNAME`/`IMGPKG_PASSWORD`/
//! `IMGPKG_TOKEN`), then Docker's `config.json` (`credHelpers`, `credsStore`, `auths`), then
//! podman's `auth.json`. A set's host matches as imgpkg matches it: the same port (none means
//! none), the same number of labels, each label a glob (`*`, `?`).
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
#[cfg(test)]
use base64::engine::general_purpose::STANDARD;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};

/// Base64 as Go's decoder reads a config file's `auth`: padded, and leftover bits in the last
/// character allowed.
const AUTH_BASE64: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true));
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
    /// Reads the environment and the standard config file locations, refusing what imgpkg
    /// refuses ([`CredentialStore::check`]).
    pub fn from_environment(flags: FlagCredentials) -> Result<Self, String> {
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
        let store =
            CredentialStore { flags, env_sets: env_sets(&vars), config_files, resolved: ConfigCache::default() };
        store.check(&vars)?;
        Ok(store)
    }

    /// What imgpkg refuses to start with (review s8 G9): a `*_REGISTRY_*` variable that is no
    /// field of a set (a misspelt `IMGPKG_REGISTRY_PASWORD_1` left the registry anonymous, and the
    /// 401 that followed pointed nowhere), and a config file that exists but cannot be read as
    /// one (invalid JSON, an `auth` that is not base64 `user:password`), named with its problem.
    pub fn check(&self, vars: &BTreeMap<String, String>) -> Result<(), String> {
        // imgpkg's set fields, and `AZURE_CR_CONFIG` of its Azure keychain (not ferry's).
        const FIELDS: [&str; 6] =
            ["HOSTNAME", "USERNAME", "PASSWORD", "IDENTITY_TOKEN", "REGISTRY_TOKEN", "AZURE_CR_CONFIG"];
        for key in vars.keys() {
            let Some(field) = ["IMGPKG_REGISTRY_", "FERRY_REGISTRY_"].iter().find_map(|p| key.strip_prefix(p)) else {
                continue;
            };
            if !FIELDS.iter().any(|known| field == *known || field.starts_with(&format!("{known}_"))) {
                return Err(format!(
                    "unknown variable {key}: a credential set has _HOSTNAME, _USERNAME, _PASSWORD, _IDENTITY_TOKEN \
                     or _REGISTRY_TOKEN, each with an optional _SUFFIX"
                ));
            }
        }
        for path in &self.config_files {
            let Ok(text) = std::fs::read(path) else { continue };
            config_file_problem(&text)
                .map_or(Ok(()), |problem| Err(format!("reading credentials from {}: {problem}", path.display())))?;
        }
        Ok(())
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
        // A set for this registry wins over the flags (imgpkg: "env keychain takes precedence"),
        // so copying from A (a set) to B (the flags) never sends B's credentials to A.
        if let Some(set) = self.best_env_set(registry, repository).filter(|set| set.credential != Credential::Anonymous)
        {
            return set.credential.clone();
        }
        if let Some(token) = &self.flags.token {
            return Credential::RegistryToken(token.clone());
        }
        if let (Some(username), Some(password)) = (&self.flags.username, &self.flags.password) {
            return Credential::Basic { username: username.clone(), password: password.clone() };
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
            sets.push(EnvSet { pattern: set_pattern(hostname), credential });
        }
    }
    sets
}

/// A set's `HOSTNAME` as a pattern `host[:port][/path]`, spelt as imgpkg reads it: a scheme
/// and a `/v1/` or `/v2/` API prefix (as in `https://reg.example.com/v2/`) are left out.
fn set_pattern(hostname: &str) -> String {
    let bare = hostname.trim_start_matches("https://").trim_start_matches("http://");
    let (host, path) = bare.split_once('/').unwrap_or((bare, ""));
    let path = path.strip_prefix("v2/").or_else(|| path.strip_prefix("v1/")).unwrap_or(path);
    let path = if matches!(path, "v1" | "v2") { "" } else { path.trim_end_matches('/') };
    if path.is_empty() { host.to_string() } else { format!("{host}/{path}") }
}

/// `host[:port]` as its host and port (`[v6]:port` too); no port is "".
fn host_and_port(host: &str) -> (&str, &str) {
    if let Some(v6) = host.strip_prefix('[') {
        if let Some((address, rest)) = v6.split_once(']') {
            return (address, rest.strip_prefix(':').unwrap_or(""));
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port),
        _ => (host, ""),
    }
}

/// A set's pattern `host[:port][/path]` against a registry and repository, as imgpkg matches
/// it: the ports are equal (a pattern without one matches only a registry without one, so
/// `127.0.0.*` never sends credentials to `127.0.0.1:5000`), the hosts have as many labels and
/// each matches its glob label; the path, if any, is the repository or a parent of it.
fn pattern_matches(pattern: &str, registry: &str, repository: &str) -> bool {
    let (host_pattern, path_pattern) = pattern.split_once('/').unwrap_or((pattern, ""));
    let normal = |host: &str| if host == "docker.io" { "index.docker.io".to_string() } else { host.to_string() };
    let (host_pattern, registry) = (normal(host_pattern), normal(registry));
    let ((pattern_host, pattern_port), (host, port)) = (host_and_port(&host_pattern), host_and_port(&registry));
    let pattern_labels: Vec<&str> = pattern_host.split('.').collect();
    let host_labels: Vec<&str> = host.split('.').collect();
    let host_ok = pattern_port == port
        && pattern_labels.len() == host_labels.len()
        && pattern_labels
            .iter()
            .zip(&host_labels)
            .all(|(glob, label)| label_matches(glob.as_bytes(), label.as_bytes()));
    host_ok
        && (path_pattern.is_empty()
            || repository == path_pattern
            || repository.starts_with(&format!("{path_pattern}/")))
}

/// One host label against a glob label: `*` any run of characters, `?` one, anything else
/// itself.
fn label_matches(glob: &[u8], label: &[u8]) -> bool {
    match glob.split_first() {
        None => label.is_empty(),
        Some((b'*', rest)) => (0..=label.len()).any(|skip| label_matches(rest, &label[skip..])),
        Some((b'?', rest)) => !label.is_empty() && label_matches(rest, &label[1..]),
        Some((c, rest)) => label.first() == Some(c) && label_matches(rest, &label[1..]),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default, deserialize_with = "null_is_empty")]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default, deserialize_with = "null_is_empty")]
    cred_helpers: BTreeMap<String, String>,
}

/// `null` read as empty, as Docker reads `"auths": null`.
fn null_is_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
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

/// What makes a config file unreadable as one, never quoting its content (a value in it may be a
/// secret): not JSON, not an object, an `auths` entry that is not an object, or an `auth` that is
/// not base64 of `user:password`. An empty file, and `null` anywhere, are no config.
fn config_file_problem(text: &[u8]) -> Option<String> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let value: serde_json::Value = match serde_json::from_slice(text) {
        Ok(value) => value,
        Err(e) => return Some(format!("not valid JSON (line {}, column {})", e.line(), e.column())),
    };
    let config = match &value {
        serde_json::Value::Null => return None,
        serde_json::Value::Object(config) => config,
        _ => return Some("not a JSON object".into()),
    };
    let auths = match config.get("auths") {
        None | Some(serde_json::Value::Null) => return None,
        Some(serde_json::Value::Object(auths)) => auths,
        Some(_) => return Some("\"auths\" is not an object".into()),
    };
    for (key, entry) in auths {
        let auth = match entry {
            serde_json::Value::Null => continue,
            serde_json::Value::Object(entry) => entry.get("auth"),
            _ => return Some(format!("the entry for {key:?} is not an object")),
        };
        let readable = match auth {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::String(auth)) => {
                let decoded = AUTH_BASE64.decode(auth.trim()).ok().and_then(|bytes| String::from_utf8(bytes).ok());
                auth.trim().is_empty() || decoded.is_some_and(|text| text.contains(':'))
            }
            Some(_) => false,
        };
        if !readable {
            return Some(format!("the auth of {key:?} is not base64 of user:password"));
        }
    }
    None
}

/// A config file key as the host it names, as Docker reads it: the scheme and an API path left
/// out (`https://reg.example.com/v2/` and `reg.example.com/` are `reg.example.com`). A key with
/// another path (podman's per-namespace `reg.example.com/team`) names no whole host: `None`.
fn key_host(key: &str) -> Option<&str> {
    let bare = key.trim_start_matches("https://").trim_start_matches("http://");
    let (host, path) = bare.split_once('/').unwrap_or((bare, ""));
    matches!(path, "" | "v1" | "v1/" | "v2" | "v2/").then_some(host)
}

fn from_config_file(path: &Path, registry: &str) -> Option<Credential> {
    let text = std::fs::read(path).ok()?;
    let config: ConfigFile = serde_json::from_slice(&text).ok()?;
    let keys = config_keys(registry);
    if let Some(helper) = keys.iter().find_map(|key| config.cred_helpers.get(key)) {
        return run_helper(helper, &keys[0]);
    }
    // An exact key first, then any key that names the same host in another spelling.
    let entry = keys.iter().find_map(|key| config.auths.get(key)).or_else(|| {
        let host = key_host(&keys[0]);
        config.auths.iter().find(|(key, _)| host.is_some() && key_host(key) == host).map(|(_, entry)| entry)
    });
    if let Some(entry) = entry {
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
    let decoded = AUTH_BASE64.decode(entry.auth.as_ref()?.trim()).ok()?;
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

    /// Review s8 (G2, G3, G8), checked against imgpkg: a set that names the registry wins over
    /// the flags (copying from A, pinned by a set, to B, given by the flags, sent B's user to
    /// A); a host pattern matches only the same port (`127.0.0.*` sent credentials to every
    /// port of 127.0.0.1), its labels are globs, and `https://HOST/v2/` names HOST.
    #[test]
    fn sets_win_over_flags_and_match_ports_and_globs_as_imgpkg() {
        let vars = env(&[
            ("IMGPKG_REGISTRY_HOSTNAME_A", "127.0.0.1:5001"),
            ("IMGPKG_REGISTRY_USERNAME_A", "a-user"),
            ("IMGPKG_REGISTRY_PASSWORD_A", "pa"),
            ("IMGPKG_REGISTRY_HOSTNAME_G", "10.0.0.*"),
            ("IMGPKG_REGISTRY_USERNAME_G", "glob"),
            ("IMGPKG_REGISTRY_PASSWORD_G", "pg"),
            ("IMGPKG_REGISTRY_HOSTNAME_P", "10.1.0.*:5000"),
            ("IMGPKG_REGISTRY_USERNAME_P", "ported"),
            ("IMGPKG_REGISTRY_PASSWORD_P", "pp"),
            ("IMGPKG_REGISTRY_HOSTNAME_L", "reg-?.corp.*"),
            ("IMGPKG_REGISTRY_USERNAME_L", "labels"),
            ("IMGPKG_REGISTRY_PASSWORD_L", "pl"),
            ("IMGPKG_REGISTRY_HOSTNAME_V", "https://api.example.com/v2/"),
            ("IMGPKG_REGISTRY_USERNAME_V", "v2"),
            ("IMGPKG_REGISTRY_PASSWORD_V", "pv"),
        ]);
        let flags = FlagCredentials {
            username: Some("b-user".into()),
            password: Some(Secret::new("pb")),
            ..FlagCredentials::default()
        };
        let store = CredentialStore::new(flags, &vars, Vec::new());
        let user = |reg: &str| match store.lookup(reg, "team/app") {
            Credential::Basic { username, .. } => username,
            other => format!("{other:?}"),
        };
        assert_eq!(user("127.0.0.1:5001"), "a-user", "the set names A: its credentials, not the flags'");
        assert_eq!(user("127.0.0.1:5002"), "b-user", "another registry gets the flags");
        assert_eq!(user("10.0.0.7"), "glob");
        assert_eq!(user("10.0.0.7:5000"), "b-user", "a pattern without a port matches no registry with one");
        assert_eq!(user("10.1.0.7:5000"), "ported");
        assert_eq!(user("10.1.0.7:5001"), "b-user");
        assert_eq!(user("reg-a.corp.example"), "labels");
        assert_eq!(user("reg-ab.corp.example"), "b-user", "? is one character");
        assert_eq!(user("api.example.com"), "v2", "a scheme and /v2/ are left out");
        let bare = CredentialStore::new(FlagCredentials::default(), &vars, Vec::new());
        assert_eq!(bare.lookup("10.0.0.7:5000", "x"), Credential::Anonymous);
    }

    /// Review s8 (G7): a config file key in another spelling of the host (`https://HOST/v2/`,
    /// `HOST/`, as older `docker login` and CI templates write it) is found, as Docker finds it.
    #[test]
    fn config_file_keys_in_other_spellings_name_their_host() {
        let dir = tempfile::tempdir().unwrap();
        for key in ["https://r.example:5000/v2/", "r.example:5000/", "http://r.example:5000"] {
            let file = dir.path().join("config.json");
            let auth = STANDARD.encode("carol:pw");
            std::fs::write(&file, format!(r#"{{"auths":{{"{key}":{{"auth":"{auth}"}}}}}}"#)).unwrap();
            let store = CredentialStore::new(FlagCredentials::default(), &BTreeMap::new(), vec![file]);
            let found = store.lookup("r.example:5000", "x");
            assert!(matches!(&found, Credential::Basic { username, .. } if username == "carol"), "{key}: {found:?}");
            assert_eq!(store.lookup("r.example:5001", "x"), Credential::Anonymous, "{key}: another port");
        }
    }

    /// Review s8 G9: what imgpkg refuses to start with is refused, named: a misspelt set
    /// variable, a config file that is not JSON, an `auth` that is not base64 of user:password.
    #[test]
    fn misspelt_variables_and_unreadable_config_files_are_refused() {
        let good = env(&[("IMGPKG_REGISTRY_HOSTNAME_1", "r.example"), ("FERRY_REGISTRY_REGISTRY_TOKEN_X", "t")]);
        let store = CredentialStore::new(FlagCredentials::default(), &good, Vec::new());
        assert_eq!(store.check(&good), Ok(()));
        let misspelt = env(&[("IMGPKG_REGISTRY_PASWORD_1", "pw"), ("HOME", "/root")]);
        let error = store.check(&misspelt).unwrap_err();
        assert!(error.contains("IMGPKG_REGISTRY_PASWORD_1") && !error.contains("pw\""), "{error}");
        let dir = tempfile::tempdir().unwrap();
        for (body, expected) in
            [("{not json", "config.json"), (r#"{"auths":{"r.example":{"auth":"%%%"}}}"#, "r.example")]
        {
            let file = dir.path().join("config.json");
            std::fs::write(&file, body).unwrap();
            let store = CredentialStore::new(FlagCredentials::default(), &BTreeMap::new(), vec![file]);
            let error = store.check(&BTreeMap::new()).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        let missing = CredentialStore::new(FlagCredentials::default(), &BTreeMap::new(), vec![dir.path().join("none")]);
        assert_eq!(missing.check(&BTreeMap::new()), Ok(()), "a missing file is no problem");
    }

    /// Review s8 (second read): the check never quotes a config file's content (a string where
    /// an entry belongs is the base64 of user:password), and takes what Docker and imgpkg take:
    /// an empty file, `null`s, base64 with leftover bits, imgpkg's Azure variable.
    #[test]
    fn the_check_quotes_no_secret_and_takes_what_docker_takes() {
        let secret = STANDARD.encode("alice:hunter2");
        for body in [
            format!(r#"{{"auths":{{"r.example":"{secret}"}}}}"#),
            format!(r#"{{"auths":{{"r.example":{{"auth":7{secret}}}}}}}"#),
        ] {
            let problem = config_file_problem(body.as_bytes()).expect("refused");
            assert!(!problem.contains(&secret) && !problem.contains("hunter2"), "{problem}");
        }
        let leftover_bits = "YWxpY2U6aHVudGVyMw==".replace("Mw==", "Mx==");
        for body in [
            String::new(),
            " \n".into(),
            "null".into(),
            r#"{"auths":null,"credHelpers":null}"#.into(),
            r#"{"auths":{"r.example":null}}"#.into(),
            format!(r#"{{"auths":{{"r.example":{{"auth":"{leftover_bits}"}}}}}}"#),
        ] {
            assert_eq!(config_file_problem(body.as_bytes()), None, "{body:?}");
        }
        assert!(config_file_problem(b"[]").is_some(), "not an object, as imgpkg refuses it");
        let azure = env(&[("IMGPKG_REGISTRY_AZURE_CR_CONFIG", "/etc/azure.json")]);
        let store = CredentialStore::new(FlagCredentials::default(), &azure, Vec::new());
        assert_eq!(store.check(&azure), Ok(()));
        // `"auths": null` reads as no entries.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, r#"{"auths":null,"credsStore":null}"#).unwrap();
        let store = CredentialStore::new(FlagCredentials::default(), &BTreeMap::new(), vec![file]);
        assert_eq!(store.lookup("r.example", "x"), Credential::Anonymous);
    }

    /// Review s8 (second read): a per-namespace key (podman's `HOST/team`) names no whole host,
    /// so it is never taken for another namespace's repository (ferry took the first key of the
    /// host, sending `HOST/aaa`'s identity for `team/app`).
    #[test]
    fn a_per_namespace_key_is_not_taken_for_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        let (aaa, team) = (STANDARD.encode("aaa:pw"), STANDARD.encode("team:pw"));
        std::fs::write(
            &file,
            format!(r#"{{"auths":{{"r.example/aaa":{{"auth":"{aaa}"}},"r.example/team":{{"auth":"{team}"}}}}}}"#),
        )
        .unwrap();
        let store = CredentialStore::new(FlagCredentials::default(), &BTreeMap::new(), vec![file]);
        assert_eq!(store.lookup("r.example", "team/app"), Credential::Anonymous);
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
