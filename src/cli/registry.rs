//! Registry flags, named as imgpkg names them, with their environment equivalents, turned into
//! one shared [`RegistryClient`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::output;
use ferry::store::registry::{CredentialStore, FlagCredentials, RegistryClient, RegistryOptions, RetryPolicy, Secret};

/// Flags for talking to registries: only the commands that do take them (spec/cli.md
/// "Registry flags"), so `verify` and `inspect` do not list flags they would ignore.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Registry options")]
pub struct RegistryFlags {
    /// Username for every registry (else: IMGPKG_REGISTRY_* variables, then docker config)
    #[arg(long, global = true, env = "IMGPKG_USERNAME", value_name = "NAME")]
    pub registry_username: Option<String>,
    /// Password for --registry-username
    #[arg(long, global = true, env = "IMGPKG_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    pub registry_password: Option<String>,
    /// Bearer token for every registry
    #[arg(long, global = true, env = "IMGPKG_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,
    /// Use no credentials at all
    #[arg(long, global = true, env = "IMGPKG_ANON")]
    pub registry_anon: bool,
    /// Trust this CA certificate (PEM) beside the system roots; repeatable
    #[arg(long, global = true, value_name = "PATH")]
    pub registry_ca_cert_path: Vec<PathBuf>,
    /// Verify registry certificates (set to false only for testing)
    #[arg(long, global = true, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub registry_verify_certs: bool,
    /// Allow plain HTTP: registries are spoken to in plain HTTP unless one answers as an HTTPS
    /// server, which is then spoken to over HTTPS (never used unless asked)
    #[arg(long, global = true)]
    pub registry_insecure: bool,
    /// Retries of a failed request: it is tried at most 1 + N times (0: once, no retry). Only
    /// connection errors, resets and HTTP 408, 429, 500, 502, 503 and 504 are retried; any
    /// other answer fails at once, and so does a refused connection or an unknown host name
    /// for a registry that has not answered yet (nothing listens there)
    #[arg(long, global = true, default_value_t = 5, value_name = "N")]
    pub registry_retry_count: u32,
    /// How long to wait for a registry's response headers, and for each read of a body; a
    /// manifest, token or tag list must arrive whole within 4 times as long (e.g. 30s, 2m)
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub registry_response_header_timeout: Duration,
    /// Upload blobs in chunks of this size (e.g. 4MiB) instead of one request each
    #[arg(long, global = true, value_parser = parse_size, value_name = "SIZE")]
    pub registry_chunk_size: Option<u64>,
}

impl RegistryFlags {
    /// The shared client for this run; retries are reported as warnings.
    pub fn client(&self, workers: usize) -> anyhow::Result<Arc<RegistryClient>> {
        let flags = FlagCredentials {
            username: self.registry_username.clone(),
            password: self.registry_password.clone().map(Secret::new),
            token: self.registry_token.clone().map(Secret::new),
            anonymous: self.registry_anon,
        };
        if flags.username.is_some() != flags.password.is_some() {
            anyhow::bail!("--registry-username and --registry-password go together");
        }
        let options = RegistryOptions {
            insecure: self.registry_insecure,
            verify_certs: self.registry_verify_certs,
            ca_cert_paths: self.registry_ca_cert_path.clone(),
            response_header_timeout: self.registry_response_header_timeout,
            retry: self.retry_policy(),
            chunk_size: self.registry_chunk_size,
            connections: workers,
            on_retry: Some(Arc::new(|message: &str| output::warn(message))),
        };
        let client =
            RegistryClient::new(options, CredentialStore::from_environment(flags).map_err(anyhow::Error::msg)?)
                .map_err(anyhow::Error::msg)?;
        Ok(Arc::new(client))
    }
}

impl RegistryFlags {
    /// The one retry policy of the run (RF-2), for the client and for the engine.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy { retries: self.registry_retry_count, ..RetryPolicy::default() }
    }
}

/// An output file's name (`--lock-output`, `inventory -o`): refused at once when it holds
/// anything but a regular file, before the command does its work.
pub fn parse_output_file(text: &str) -> Result<std::path::PathBuf, String> {
    let file = std::path::PathBuf::from(text);
    ferry::store::user_file::check_user_file(&file)?;
    Ok(file)
}

/// `30s`, `2m`, `500ms`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 30s or 2m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// `4MiB`, `512KiB`, `1GiB`, `4MB`, or plain bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a size like 4MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use KiB, MiB, GiB, KB, MB or GB)")),
    };
    value.checked_mul(factor).filter(|&v| v > 0).ok_or_else(|| format!("{text:?} is out of range"))
}
