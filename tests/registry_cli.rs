//! `ferry tag list`, `ferry tag resolve` and `ferry export -i` against a real registry
//! (tests/support: docker-registry on 127.0.0.1) in every variant: plain HTTP, TLS with a
//! private CA, TLS with basic auth, TLS with token auth. Credentials come from flags, imgpkg's
//! environment variables and Docker's config file; errors must say what to do.

mod cli;
mod support;

use std::path::Path;

use cli::ferry_at_home;
use support::{Registry, Variant, write_image_layout};

/// Pushes one small image as `team/app:v1` and `team/app:v2`; returns its manifest digest.
fn seed(registry: &Registry, scratch: &Path) -> String {
    let layout = scratch.join("layout");
    let image = write_image_layout(&layout, "app", &[("hello.txt", b"hello from ferry's tests\n")]);
    registry.push_layout(&layout, "app", "team/app:v1");
    registry.push_layout(&layout, "app", "team/app:v2");
    image.manifest_digest
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// spec/cli.md "tag": list (with digests) and resolve work in every variant with flags.
#[test]
fn tag_list_and_resolve_in_every_variant() {
    for variant in [Variant::Plain, Variant::Tls, Variant::TlsBasicAuth, Variant::TlsTokenAuth] {
        let registry = Registry::start(variant);
        let scratch = tempfile::tempdir().unwrap();
        let digest = seed(&registry, scratch.path());
        let repo = format!("{}/team/app", registry.host());
        let args = registry.access_flags();

        let listed =
            ferry_at_home(scratch.path()).args(["tag", "list", &repo, "--digests"]).args(&args).output().unwrap();
        assert!(listed.status.success(), "{variant:?}: {}", stderr(&listed));
        assert_eq!(stdout(&listed), format!("v1\t{digest}\nv2\t{digest}\n"), "{variant:?}");

        let resolved =
            ferry_at_home(scratch.path()).args(["tag", "resolve", &format!("{repo}:v1")]).args(&args).output().unwrap();
        assert!(resolved.status.success(), "{variant:?}: {}", stderr(&resolved));
        assert_eq!(stdout(&resolved).trim(), format!("{repo}@{digest}"));
        if variant == Variant::TlsTokenAuth {
            assert!(registry.token_requests() <= 4, "tokens are cached: {} requests", registry.token_requests());
        }
    }
}

/// RF-7: `--registry-insecure` allows plain HTTP, it does not forbid HTTPS (as with imgpkg,
/// whose users pass it for registries of every kind): an HTTPS registry given with it is
/// spoken to over HTTPS, credentials and blob bodies included. It once got plain HTTP and
/// failed with `HTTP 400: Client sent an HTTP request to an HTTPS server`.
#[test]
fn registry_insecure_still_speaks_https_to_an_https_registry() {
    for variant in [Variant::Tls, Variant::TlsBasicAuth] {
        let registry = Registry::start(variant);
        let scratch = tempfile::tempdir().unwrap();
        let digest = seed(&registry, scratch.path());
        let repo = format!("{}/team/app", registry.host());
        let mut args = registry.access_flags();
        args.push("--registry-insecure".into());
        let listed =
            ferry_at_home(scratch.path()).args(["tag", "list", &repo, "--digests"]).args(&args).output().unwrap();
        assert!(listed.status.success(), "{variant:?}: {}", stderr(&listed));
        assert_eq!(stdout(&listed), format!("v1\t{digest}\nv2\t{digest}\n"), "{variant:?}");
        let archive = scratch.path().join("app.tar");
        let exported = ferry_at_home(scratch.path())
            .args(["export", "-q", "-i", &format!("{repo}:v1"), "-o"])
            .arg(&archive)
            .args(&args)
            .output()
            .unwrap();
        assert!(exported.status.success(), "{variant:?}: {}", stderr(&exported));
        // An import's first contact is many HEADs at once: every one goes to HTTPS, not only
        // the one that found it out (review s7: the others failed with the 400).
        let bundle = scratch.path().join("bundle.tar");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts/bundle");
        let made = ferry_at_home(scratch.path())
            .args(["export", "-q", "--oci-layout"])
            .arg(&fixture)
            .arg("-o")
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", stderr(&made));
        let imported = ferry_at_home(scratch.path())
            .args(["import"])
            .arg(&bundle)
            .args(["--to-repo", &format!("{}/mirror/bundle", registry.host())])
            .args(&args)
            .output()
            .unwrap();
        assert!(imported.status.success(), "{variant:?}: {}", stderr(&imported));
    }
    // Pages after the switch are asked for over HTTPS too (their links were resolved against
    // the first page's plain-HTTP URL, and refused as leaving HTTPS).
    assert_eq!(tags_listed_in_pages_of_two(Variant::Tls), ["v1", "v2", "v3", "v4", "v5"]);
}

/// Every tag of `team/app` (five of them, pushed here) in a fresh registry of `variant`, listed
/// with `--registry-insecure` (and the registry's CA, if any) two tags a page, sorted.
fn tags_listed_in_pages_of_two(variant: Variant) -> Vec<String> {
    use ferry::model::Repository;
    use ferry::store::registry::{CredentialStore, FlagCredentials, RegistryClient, RegistryOptions, list_tags_paged};

    let registry = Registry::start(variant);
    let scratch = tempfile::tempdir().unwrap();
    seed(&registry, scratch.path());
    let layout = scratch.path().join("layout");
    for tag in ["v3", "v4", "v5"] {
        registry.push_layout(&layout, "app", &format!("team/app:{tag}"));
    }
    let ca_cert_paths = registry.ca_cert_path().map(Path::to_path_buf).into_iter().collect();
    let options = RegistryOptions { insecure: true, ca_cert_paths, ..RegistryOptions::default() };
    let credentials = CredentialStore::new(FlagCredentials::default(), &Default::default(), Vec::new());
    let client = RegistryClient::new(options, credentials).unwrap();
    let repository = Repository::parse(&format!("{}/team/app", registry.host())).unwrap();
    let mut tags = list_tags_paged(&client, &repository, 2).unwrap();
    tags.sort();
    tags
}

/// Credentials from imgpkg's environment variables and from Docker's config file.
#[test]
fn credentials_from_imgpkg_env_and_docker_config() {
    let registry = Registry::start(Variant::TlsBasicAuth);
    let scratch = tempfile::tempdir().unwrap();
    seed(&registry, scratch.path());
    let (user, password) = registry.credentials().unwrap();
    let repo = format!("{}/team/app", registry.host());

    let from_env = ferry_at_home(scratch.path())
        .args(["tag", "list", &repo])
        .args(registry.reach_flags())
        .env("IMGPKG_REGISTRY_HOSTNAME_0", registry.host())
        .env("IMGPKG_REGISTRY_USERNAME_0", user)
        .env("IMGPKG_REGISTRY_PASSWORD_0", password)
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{}", stderr(&from_env));
    assert_eq!(stdout(&from_env), "v1\nv2\n");

    let home = tempfile::tempdir().unwrap();
    registry.write_docker_config(&home.path().join(".docker"));
    let from_config =
        ferry_at_home(home.path()).args(["tag", "list", &repo]).args(registry.reach_flags()).output().unwrap();
    assert!(from_config.status.success(), "{}", stderr(&from_config));
    assert_eq!(stdout(&from_config), "v1\nv2\n");
}

/// Review s8 G2, G3 (credentials, as imgpkg): a set naming the registry wins over the flags,
/// so the flags meant for another registry are not sent to it (ferry sent them, got a 401); a
/// set whose host pattern names no port is not used for a registry with one (ferry sent
/// `127.0.0.*`'s credentials to 127.0.0.1:PORT).
#[test]
fn a_credential_set_for_one_registry_wins_over_the_flags_and_minds_the_port() {
    let registry = Registry::start(Variant::TlsBasicAuth);
    let scratch = tempfile::tempdir().unwrap();
    seed(&registry, scratch.path());
    let (user, password) = registry.credentials().unwrap();
    let repo = format!("{}/team/app", registry.host());
    let list = |hostname: &str, flags: &[&str]| {
        ferry_at_home(scratch.path())
            .args(["tag", "list", &repo])
            .args(registry.reach_flags())
            .args(flags)
            .env("IMGPKG_REGISTRY_HOSTNAME_A", hostname)
            .env("IMGPKG_REGISTRY_USERNAME_A", user)
            .env("IMGPKG_REGISTRY_PASSWORD_A", password)
            .output()
            .unwrap()
    };
    // The flags are another registry's (a copy from here to there would pass them).
    let elsewhere = ["--registry-username", "someone-else", "--registry-password", "not-this-one"];
    let listed = list(registry.host(), &elsewhere);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(stdout(&listed), "v1\nv2\n");
    // 127.0.0.* names port-less registries only: this one (with a port) gets no credentials.
    let any_port = list("127.0.0.*", &[]);
    assert_eq!(any_port.status.code(), Some(1), "{}", stderr(&any_port));
    assert!(stderr(&any_port).contains("401"), "{}", stderr(&any_port));
    let port = registry.host().rsplit_once(':').unwrap().1;
    let with_port = list(&format!("127.0.0.*:{port}"), &[]);
    assert!(with_port.status.success(), "{}", stderr(&with_port));
}

/// Review s8 G9: a misspelt credential variable or an unreadable `config.json` stops a
/// registry command before any request, naming it (the registry was asked anonymously and the
/// 401 pointed at nothing), as imgpkg stops.
#[test]
fn a_misspelt_credential_variable_or_a_broken_config_file_is_named() {
    let registry = Registry::start(Variant::TlsBasicAuth);
    let home = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", registry.host());
    let misspelt = ferry_at_home(home.path())
        .args(["tag", "list", &repo])
        .args(registry.reach_flags())
        .env("IMGPKG_REGISTRY_HOSTNAME_1", registry.host())
        .env("IMGPKG_REGISTRY_USERNAME_1", "ferry")
        .env("IMGPKG_REGISTRY_PASWORD_1", "secret-value")
        .output()
        .unwrap();
    assert_eq!(misspelt.status.code(), Some(1), "{}", stderr(&misspelt));
    assert!(stderr(&misspelt).contains("IMGPKG_REGISTRY_PASWORD_1"), "{}", stderr(&misspelt));
    assert!(!stderr(&misspelt).contains("secret-value"), "{}", stderr(&misspelt));
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    std::fs::write(home.path().join(".docker/config.json"), "{\"auths\": {").unwrap();
    let broken = ferry_at_home(home.path()).args(["tag", "list", &repo]).args(registry.reach_flags()).output().unwrap();
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    assert!(stderr(&broken).contains(".docker/config.json"), "{}", stderr(&broken));
}

/// Errors a user can act on, and never a secret in them.
#[test]
fn errors_name_the_problem_and_hide_secrets() {
    let registry = Registry::start(Variant::TlsBasicAuth);
    let scratch = tempfile::tempdir().unwrap();
    seed(&registry, scratch.path());
    let repo = format!("{}/team/app", registry.host());
    let (user, _) = registry.credentials().unwrap();

    let wrong = ferry_at_home(scratch.path())
        .args(["tag", "list", &repo, "--registry-username", user, "--registry-password", "not-the-password-xyz"])
        .args(registry.reach_flags())
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    let message = stderr(&wrong);
    assert!(message.contains("HTTP 401") && message.contains("--registry-username"), "{message}");
    assert!(!message.contains("not-the-password-xyz"), "the password leaked: {message}");

    let args = registry.access_flags();
    let missing_repo = ferry_at_home(scratch.path())
        .args(["tag", "list", &format!("{}/team/nothing", registry.host())])
        .args(&args)
        .output()
        .unwrap();
    assert!(stderr(&missing_repo).contains("NAME_UNKNOWN"), "{}", stderr(&missing_repo));

    let missing_tag =
        ferry_at_home(scratch.path()).args(["tag", "resolve", &format!("{repo}:nope")]).args(&args).output().unwrap();
    assert_eq!(missing_tag.status.code(), Some(1));
    assert!(stderr(&missing_tag).contains("tag nope not found"), "{}", stderr(&missing_tag));

    let untrusted =
        ferry_at_home(scratch.path()).args(["tag", "list", &repo]).args(registry.credential_flags()).output().unwrap();
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(stderr(&untrusted).contains("--registry-ca-cert-path"), "{}", stderr(&untrusted));
}

/// Internal `*.imgpkg` tags are hidden unless asked for; JSON output has the documented shape.
#[test]
fn internal_tags_are_hidden_unless_asked() {
    let registry = Registry::start(Variant::Plain);
    let scratch = tempfile::tempdir().unwrap();
    let digest = seed(&registry, scratch.path());
    let layout = scratch.path().join("layout");
    let internal = format!("team/app:{}.imgpkg", digest.replace(':', "-"));
    registry.push_layout(&layout, "app", &internal);
    let repo = format!("{}/team/app", registry.host());

    let plain = ferry_at_home(scratch.path()).args(["tag", "list", &repo, "--registry-insecure"]).output().unwrap();
    assert_eq!(stdout(&plain), "v1\nv2\n");
    let all = ferry_at_home(scratch.path())
        .args(["tag", "list", &repo, "--registry-insecure", "--imgpkg-internal-tags", "--json"])
        .output()
        .unwrap();
    let listing: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(listing.as_array().unwrap().len(), 3, "{listing}");
    assert!(listing[0]["tag"].as_str().unwrap().ends_with(".imgpkg"));
}

/// Link pagination: a small page size walks every page of a real registry's tag list.
#[test]
fn tag_listing_follows_link_pagination() {
    assert_eq!(tags_listed_in_pages_of_two(Variant::Plain), ["v1", "v2", "v3", "v4", "v5"]);
}

/// RF-5 (issue 18): blob bodies are read by ferry's own HTTP/1.1 reader (straight into the buffers that
/// are hashed, no copy through the HTTP client's), from a real registry over plain HTTP, TLS with
/// basic auth and TLS with tokens; every byte still verified.
#[test]
fn blob_bodies_are_read_directly_in_every_variant() {
    use std::io::Read;
    use std::sync::Arc;

    use ferry::model::Reference;
    use ferry::store::Source;
    use ferry::store::registry::{
        CredentialStore, FlagCredentials, RegistryClient, RegistryOptions, RegistrySource, Secret,
    };

    for variant in [Variant::Plain, Variant::TlsBasicAuth, Variant::TlsTokenAuth] {
        let registry = Registry::start(variant);
        let scratch = tempfile::tempdir().unwrap();
        seed(&registry, scratch.path());
        let options = RegistryOptions {
            insecure: !variant.tls(),
            ca_cert_paths: registry.ca_cert_path().map(Path::to_path_buf).into_iter().collect(),
            ..RegistryOptions::default()
        };
        let flags = match registry.credentials() {
            Some((user, password)) => FlagCredentials {
                username: Some(user.to_string()),
                password: Some(Secret::new(password)),
                ..Default::default()
            },
            None => FlagCredentials::default(),
        };
        let client = Arc::new(
            RegistryClient::new(options, CredentialStore::new(flags, &Default::default(), Vec::new())).unwrap(),
        );
        let source = RegistrySource::new(Arc::clone(&client));
        let reference: Reference = format!("{}/team/app:v1", registry.host()).parse().unwrap();
        let manifest = source.manifest(&source.resolve(&reference).unwrap()).unwrap();
        let blobs = manifest.children();
        for blob in &blobs {
            let mut bytes = Vec::new();
            source.blob(blob).unwrap().read_to_end(&mut bytes).unwrap();
            assert_eq!(bytes.len() as u64, blob.size, "{variant:?}");
        }
        assert_eq!(client.direct_answers(), blobs.len() as u64, "{variant:?}: every blob body read directly");
    }
}

/// `ferry export -i` through TLS and token auth gives an archive that verifies, with the
/// registry's digest.
#[test]
fn export_an_image_through_token_auth() {
    let registry = Registry::start(Variant::TlsTokenAuth);
    let scratch = tempfile::tempdir().unwrap();
    let digest = seed(&registry, scratch.path());
    let archive = scratch.path().join("app.tar");
    let args = registry.access_flags();
    let exported = ferry_at_home(scratch.path())
        .args(["export", "-i", &format!("{}/team/app:v1", registry.host()), "-o"])
        .arg(&archive)
        .args(&args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", stderr(&exported));
    let verified = ferry_at_home(scratch.path()).arg("verify").arg(&archive).arg("--json").output().unwrap();
    assert!(verified.status.success(), "{}", stdout(&verified));
    let inspected = ferry_at_home(scratch.path()).arg("inspect").arg(&archive).arg("--json").output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(report["artifacts"][0]["digest"], digest.as_str());
    assert_eq!(report["artifacts"][0]["rootTag"], "v1");

    let bundle = ferry_at_home(scratch.path())
        .args(["export", "-b", &format!("{}/team/app:v1", registry.host()), "-o"])
        .arg(scratch.path().join("b.tar"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(bundle.status.code(), Some(1));
    assert!(stderr(&bundle).contains("is not a bundle") && stderr(&bundle).contains("use -i"), "{}", stderr(&bundle));
}

/// Docker credential helpers (`credHelpers`, then `credsStore`) run as
/// `docker-credential-NAME get`, with the server on stdin; "not found" means anonymous.
#[test]
fn credentials_from_docker_credential_helpers() {
    use std::os::unix::fs::PermissionsExt;

    let registry = Registry::start(Variant::TlsBasicAuth);
    let scratch = tempfile::tempdir().unwrap();
    seed(&registry, scratch.path());
    let (user, password) = registry.credentials().unwrap();
    let bin = scratch.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-ferrytest");
    let script = format!(
        "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = \"{host}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\n",
        host = registry.host()
    );
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let repo = format!("{}/team/app", registry.host());

    for config in [
        format!(r#"{{"credHelpers":{{"{}":"ferrytest"}}}}"#, registry.host()),
        r#"{"credsStore":"ferrytest"}"#.to_string(),
    ] {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".docker")).unwrap();
        std::fs::write(home.path().join(".docker/config.json"), &config).unwrap();
        let listed = ferry_at_home(home.path())
            .env("PATH", &path)
            .args(["tag", "list", &repo])
            .args(registry.reach_flags())
            .output()
            .unwrap();
        assert!(listed.status.success(), "{config}: {}", stderr(&listed));
        assert_eq!(stdout(&listed), "v1\nv2\n");
    }
}
