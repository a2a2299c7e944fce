//! The registry client under the faults it must survive (spec/cli.md "Registry flags",
//! RF-2..RF-4), produced on demand by the in-process fault server in `tests/fault` (spec/testing.md
//! TS-2: a fake server only for faults a real registry won't produce on demand): resets and truncation mid-body (resumed
//! with `Range`), 5xx and 429 (with `Retry-After`), wrong bytes and wrong digest headers
//! (failing, never retried), silence (header timeout), token expiry (refreshed, one shared
//! cache), redirects (no `Authorization` forwarded), chunk-size limits and monolithic uploads;
//! and, for issue 12, hostile registries: credentials that must stay on their host (a tag
//! `Link`, an upload `Location`, a challenge from another host, a plain-HTTP token realm) and
//! tag listings that must stay bounded (an oversize page, a looping `Link`, too many tags).
//!
//! Every retry must be reported through `on_retry`, and no error or retry message may carry the
//! password or a token. Every test runs under `bounded` (tests/fault/harness.rs), so none can hang the suite.

mod fault;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault::harness::{
    PASSWORD, REPO, Retries, TEST_LIMIT, USER, anonymous, assert_no_secrets, blob_reader, bounded, connect, content,
    descriptor_of, layers, login, open_image, options, range_start, read_blob, registry_error, repository,
    requests_for,
};
use fault::{Fault, FaultServer, Logged, Rule, digest_of};
use ferry::model::layout::LayoutIndex;
use ferry::model::{RawManifest, Reference, media};
use ferry::store::registry::{RegistryErrorKind, RegistrySink, RegistrySource, TagListing, list_tags, list_tags_with};
use ferry::store::{Plan, Sink, Source, StoreError};
use ferry::verify::VerifyError;

// ---------------------------------------------------------------------------------------------
// Pull: interrupted bodies

/// Fault 1: a reset in the middle of a blob body is resumed with `Range: bytes=N-` from the
/// byte it stopped at, the 206 answer completes the blob, and the resume is reported.
#[test]
fn a_reset_mid_blob_resumes_with_range() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let layer = content(1, 3 << 20);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        let sent = (1 << 20) + 123;
        server.add(Rule::new(Some("GET"), &digest, Fault::ResetAfter(sent)));
        let retries = Retries::default();
        let client = connect(options(&retries), anonymous());
        let source = RegistrySource::new(Arc::clone(&client));
        let (_, manifest) = open_image(&source, &image);

        let bytes = read_blob(&source, &layers(&manifest)[0]).expect("the blob despite the reset");
        assert!(bytes == layer, "the resumed blob has exactly the original bytes");
        assert_eq!(client.direct_answers(), 2, "both answers were read by ferry's own reader (issue 18)");

        let gets = requests_for(&server, "GET", &digest);
        assert_eq!(gets.len(), 2, "one reset, one resume: {gets:#?}");
        assert_eq!(gets[0].header("range"), None);
        let resumed_at = range_start(&gets[1]).expect("the second GET asks for a range");
        assert!(resumed_at > 0 && resumed_at <= sent as u64, "resumed at {resumed_at}, {sent} bytes were sent");
        assert_eq!(gets[1].status, Some(206));
        let messages = retries.messages();
        assert_eq!(messages.len(), 1, "the one resume is reported: {messages:?}");
        assert!(
            messages[0].contains("resuming") && messages[0].contains(&format!("at byte {resumed_at}")),
            "{messages:?}"
        );
    });
}

/// Fault 1, second variant: a registry that ignores `Range` and answers 200 with the whole
/// blob must not have that body spliced onto the bytes already read: the read fails, saying
/// so, and a fresh read of the whole blob (what the engine does next) succeeds.
#[test]
fn a_reset_mid_blob_on_a_registry_ignoring_range_fails_cleanly_and_a_whole_retry_succeeds() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        server.limits(|limits| limits.honour_range = false);
        let layer = content(2, 1 << 20);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &digest, Fault::ResetAfter(64 << 10)));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));
        let (_, manifest) = open_image(&source, &image);
        let descriptor = &layers(&manifest)[0];

        let err = read_blob(&source, descriptor).expect_err("a 200 answer to a Range request cannot continue a blob");
        assert!(!matches!(err, StoreError::Verify(_)), "the bytes were never spliced: {err}");
        let text = err.to_string();
        assert!(text.contains("Range") || text.contains("reading the body"), "{text}");
        let resumes = requests_for(&server, "GET", &digest).iter().filter(|r| r.header("range").is_some()).count();
        assert!(resumes >= 1, "the client asked for the rest with Range first");
        assert_eq!(retries.messages().len(), resumes, "every resume attempt is reported: {:?}", retries.messages());

        let bytes = read_blob(&source, descriptor).expect("the whole blob on a fresh read");
        assert!(bytes == layer);
    });
}

/// The doc of `ResumableBody` (src/store/registry/source.rs) promises that when a registry
/// ignores `Range`, "the read fails, and the engine retries the whole blob". The engine
/// (src/engine/transfer.rs `copy_blob`) retries only errors whose `is_transient()` is true.
#[test]
fn a_reset_mid_blob_on_a_registry_ignoring_range_is_retried_by_the_engine() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        server.limits(|limits| limits.honour_range = false);
        let image = server.seed_image(REPO, "v1", vec![content(3, 1 << 20)]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &digest, Fault::ResetAfter(64 << 10)));
        let source = RegistrySource::new(connect(options(&Retries::default()), anonymous()));
        let (_, manifest) = open_image(&source, &image);

        let err = read_blob(&source, &layers(&manifest)[0]).expect_err("the resume cannot work");
        assert!(err.is_transient(), "the engine must retry the whole blob, but this error is final: {err}");
    });
}

/// Fault 4: a body cut short (its `Content-Length` promised more, then a clean close) is
/// resumed like a reset.
#[test]
fn a_truncated_body_is_resumed() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let layer = content(4, 2 << 20);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &digest, Fault::TruncateAfter(1 << 20)));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));
        let (_, manifest) = open_image(&source, &image);

        let bytes = read_blob(&source, &layers(&manifest)[0]).expect("the blob despite the truncation");
        assert!(bytes == layer);
        let gets = requests_for(&server, "GET", &digest);
        assert_eq!(gets.len(), 2, "{gets:#?}");
        assert_eq!(range_start(&gets[1]), Some(1 << 20), "resumed exactly where the body stopped");
        let messages = retries.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains(&format!("at byte {}", 1 << 20)), "{messages:?}");
    });
}

/// A blob of at most 64 KiB is read in chunks by its consumer itself (no read-ahead thread):
/// through `next_chunk`, as an archive writer reads it, a cut body is still resumed, a body
/// with a byte too many and one with other bytes still fail, naming the blob.
#[test]
fn a_small_blob_read_in_chunks_is_resumed_and_verified_like_a_large_one() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let layer = content(7, 40_000);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));
        let (_, manifest) = open_image(&source, &image);
        let descriptor = layers(&manifest)[0].clone();
        let chunks = |source: &RegistrySource| -> std::io::Result<Vec<u8>> {
            let mut reader = source.blob(&descriptor).map_err(std::io::Error::other)?;
            let mut bytes = Vec::new();
            while let Some(chunk) = reader.next_chunk()? {
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        };

        server.add(Rule::new(Some("GET"), &digest, Fault::TruncateAfter(10_000)));
        assert!(chunks(&source).expect("the blob despite the cut") == layer);
        let gets = requests_for(&server, "GET", &digest);
        assert_eq!(gets.len(), 2, "{gets:#?}");
        assert_eq!(range_start(&gets[1]), Some(10_000), "resumed where the body stopped");

        let mut longer = layer.clone();
        longer.push(0);
        server.add(Rule::new(Some("GET"), &digest, Fault::Chunked(Some(longer))).times(1));
        let err = chunks(&source).expect_err("a byte too many must not pass");
        let found = ferry::verify::verify_error(&err).unwrap_or_else(|| panic!("a verification error: {err}"));
        assert!(matches!(found, VerifyError::Size { expected: 40_000, .. }), "{found:?}");
        assert!(err.to_string().contains(&digest), "{err}");

        server.add(Rule::new(Some("GET"), &digest, Fault::WrongBody).times(1));
        let err = chunks(&source).expect_err("other bytes must not verify");
        let found = ferry::verify::verify_error(&err).unwrap_or_else(|| panic!("a verification error: {err}"));
        assert!(matches!(found, VerifyError::Digest { .. }), "{found:?}");
    });
}

/// Fault 4, persistent: every answer is cut short, so the client resumes `retries` times, then
/// gives up with a transient error naming the byte it reached (the engine may retry later).
#[test]
fn a_body_truncated_every_time_gives_up_after_the_retry_budget() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let image = server.seed_image(REPO, "v1", vec![content(5, 1 << 20)]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &digest, Fault::TruncateAfter(100_000)).times(100));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));
        let (_, manifest) = open_image(&source, &image);

        let err = read_blob(&source, &layers(&manifest)[0]).expect_err("the body never completes");
        assert!(err.is_transient(), "a broken connection is worth another try later: {err}");
        assert!(err.to_string().contains("at byte 400000"), "4 answers of 100000 bytes each: {err}");
        assert_eq!(requests_for(&server, "GET", &digest).len(), 4, "the first GET and 3 resumes, no more");
        assert_eq!(retries.messages().len(), 3, "{:?}", retries.messages());
    });
}

/// A body that stops flowing after its head arrived (the server holds the connection open and
/// silent) must not hang the transfer: spec/cli.md asks for a per-request timeout
/// (`--registry-response-header-timeout`).
/// The server here goes silent for 8 s and then closes; a client with a 1 s timeout should
/// notice well before that and resume.
#[test]
fn a_body_that_stalls_midway_times_out_and_resumes() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let layer = content(6, 1 << 20);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        let stall = Fault::StallBody { after: 256 << 10, pause: Duration::from_secs(8) };
        server.add(Rule::new(Some("GET"), &digest, stall));
        let retries = Retries::default();
        let mut options = options(&retries);
        options.response_header_timeout = Duration::from_secs(1);
        let source = RegistrySource::new(connect(options, anonymous()));
        let (_, manifest) = open_image(&source, &image);

        let started = Instant::now();
        let bytes = read_blob(&source, &layers(&manifest)[0]).expect("the blob, resumed after the stall");
        let waited = started.elapsed();
        assert!(bytes == layer);
        assert!(waited < Duration::from_secs(4), "the stalled body held the read for {waited:?}");
        assert_eq!(retries.messages().len(), 1, "{:?}", retries.messages());
    });
}

/// RF-6: a small answer (here a manifest) trickled a byte every 100 ms never trips the per-read
/// timeout, yet must not hold the request for ever: it fails once it is still arriving
/// `WHOLE_ANSWER_WAITS` header waits (here 4 x 500 ms) after its head, as a timeout; without
/// the deadline the 400-odd bytes would take 40 s.
#[test]
fn a_small_answer_trickled_byte_by_byte_fails_at_its_deadline() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let image = server.seed_image(REPO, "v1", vec![content(7, 64)]);
        let path = format!("/manifests/{}", image.manifest_digest);
        server.add(Rule::new(Some("GET"), &path, Fault::Trickle(Duration::from_millis(100))));
        let retries = Retries::default();
        let mut options = options(&retries);
        options.response_header_timeout = Duration::from_millis(500);
        options.retry.retries = 0;
        let source = RegistrySource::new(connect(options, anonymous()));
        let reference: Reference = image.reference.parse().unwrap();
        let descriptor = source.resolve(&reference).expect("the HEAD is answered at once");

        let started = Instant::now();
        let err = source.manifest(&descriptor).expect_err("the manifest never arrives whole in time");
        let waited = started.elapsed();
        assert!(err.to_string().contains("still arriving 2 s after its head"), "{err}");
        assert!(matches!(registry_error(&err).kind, RegistryErrorKind::Timeout(_)), "{err}");
        assert!(waited < Duration::from_secs(5), "the trickled answer held the request for {waited:?}");
    });
}

/// RF-6 for a token answer (it comes from the realm, through no request of the registry's
/// own): trickled, it fails at the same deadline.
#[test]
fn a_trickled_token_answer_fails_at_its_deadline() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let image = server.seed_image(REPO, "v1", vec![content(19, 64)]);
        server.add(Rule::new(Some("GET"), "/token", Fault::Trickle(Duration::from_millis(100))));
        let retries = Retries::default();
        let mut options = options(&retries);
        options.response_header_timeout = Duration::from_millis(500);
        options.retry.retries = 0;
        let source = RegistrySource::new(connect(options, login(PASSWORD)));
        let started = Instant::now();
        let err = source.resolve(&image.reference.parse().unwrap()).expect_err("the token never arrives whole");
        assert!(err.to_string().contains("still arriving"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    });
}

/// Whether a bundle's repository holds its images (PL-2, no ImageLocations record) is asked
/// for every lock entry at once, not one round trip after another: with each answer 300 ms
/// late, eight entries take about one wait, where one after another took eight (2.4 s). The
/// margin is wide: the point is overlap, not speed.
#[test]
fn a_bundles_whereabouts_are_asked_for_all_entries_at_once() {
    use ferry::engine::LockEntry;
    use ferry::model::lock::ImageRef;
    use ferry::ops::bundle::located::{Whereabouts, whereabouts};

    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let images: Vec<_> =
            (0..8).map(|i| server.seed_image(REPO, &format!("v{i}"), vec![content(40 + i, 64)])).collect();
        let mut entries = Vec::new();
        for image in &images {
            let path = format!("/manifests/{}", image.manifest_digest);
            server.add(Rule::new(Some("HEAD"), &path, Fault::Delay(Duration::from_millis(300))).times(usize::MAX));
            let named = format!("origin.example/team/app@{}", image.manifest_digest);
            entries.push(LockEntry {
                entry: ImageRef { annotations: Default::default(), image: named.clone() },
                reference: named.parse().unwrap(),
            });
        }
        let missing = format!("origin.example/team/app@{}", digest_of(b"not pushed"));
        entries.push(LockEntry {
            entry: ImageRef { annotations: Default::default(), image: missing.clone() },
            reference: missing.parse().unwrap(),
        });
        let client = connect(options(&Retries::default()), anonymous());
        let started = Instant::now();
        let answer = whereabouts(&client, &repository(&server), digest_of(b"a bundle").parse().unwrap(), &entries)
            .expect("every entry answered");
        let took = started.elapsed();
        assert_eq!(answer, Whereabouts::Missing { missing: vec![missing], total: entries.len() });
        assert!(took < Duration::from_millis(1500), "{took:?} for 8 entries answering 300 ms late: asked one by one");
        assert_eq!(server.count(Some("HEAD"), "/manifests/sha256:"), entries.len(), "one HEAD per entry");
        assert_eq!(server.count(Some("HEAD"), ".image-locations.imgpkg"), 1, "and one for the record");
    });
}

// ---------------------------------------------------------------------------------------------
// Pull: error statuses and silence

/// Fault 2: 500, 502 and 503 on the resolve (HEAD), the manifest GET and the blob GET are
/// retried until the registry answers; each retry is reported with the status it followed.
#[test]
fn server_errors_are_retried_until_the_registry_answers() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let layer = content(7, 300_000);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("HEAD"), "/manifests/", Fault::Status(500)));
        server.add(Rule::new(Some("GET"), "/manifests/", Fault::Status(502)).times(2));
        server.add(Rule::new(Some("GET"), &digest, Fault::Status(503)).times(3));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));

        let (_, manifest) = open_image(&source, &image);
        let bytes = read_blob(&source, &layers(&manifest)[0]).expect("the blob after three 503s");
        assert!(bytes == layer);
        assert_eq!(server.faults_applied(), 6);
        let messages = retries.messages();
        assert_eq!(messages.len(), 6, "every retry is reported: {messages:?}");
        for (status, count) in [(500, 1), (502, 2), (503, 3)] {
            let reported = messages.iter().filter(|m| m.contains(&format!("HTTP {status}"))).count();
            assert_eq!(reported, count, "retries after HTTP {status}: {messages:?}");
        }
    });
}

/// Fault 2, persistent: a registry that keeps failing gets exactly `1 + retries` requests, and
/// the error says what failed; it is retryable in kind, but carries the attempts spent, so the
/// engine (which shares the budget, RF-2) does not try it again.
#[test]
fn server_errors_past_the_retry_budget_fail_after_exactly_the_budget() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let image = server.seed_image(REPO, "v1", vec![content(8, 1000)]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &digest, Fault::Status(503)).times(100));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));
        let (_, manifest) = open_image(&source, &image);

        let err = read_blob(&source, &layers(&manifest)[0]).expect_err("the registry never recovers");
        let remote = registry_error(&err);
        assert_eq!(remote.status(), Some(503), "{err}");
        assert!(err.is_transient());
        let text = err.to_string();
        assert!(text.contains(&format!("fetching blob {digest}")) && text.contains(REPO), "{text}");
        assert_eq!(requests_for(&server, "GET", &digest).len(), 4, "one request and three retries");
        assert_eq!(remote.attempts, 4, "the budget is spent: {err}");
        assert!(text.contains("HTTP 503 FAULT"), "the status the registry sent: {text}");
        assert_eq!(retries.messages().len(), 3, "{:?}", retries.messages());
    });
}

/// Fault 3: 429 with `Retry-After: 1` is retried after the second the registry asked for (not
/// the 10 ms backoff), and reported.
#[test]
fn too_many_requests_waits_as_long_as_retry_after_says() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let layer = content(9, 200_000);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &digest, Fault::TooManyRequests { retry_after: 1 }));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));
        let (_, manifest) = open_image(&source, &image);

        let started = Instant::now();
        let bytes = read_blob(&source, &layers(&manifest)[0]).expect("the blob after the 429");
        let waited = started.elapsed();
        assert!(bytes == layer);
        assert!(waited >= Duration::from_millis(950), "Retry-After: 1 was not honoured (waited {waited:?})");
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
        let messages = retries.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains("429"), "{messages:?}");
    });
}

/// Fault 7: a server that accepts the request and never sends the head is given up on after
/// `response_header_timeout`, and the request is tried again.
#[test]
fn headers_that_never_come_time_out_and_the_request_is_retried() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let layer = content(10, 100_000);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &digest, Fault::Stall(Duration::from_secs(5))));
        let retries = Retries::default();
        let mut options = options(&retries);
        options.response_header_timeout = Duration::from_secs(1);
        let source = RegistrySource::new(connect(options, anonymous()));
        let (_, manifest) = open_image(&source, &image);

        let started = Instant::now();
        let bytes = read_blob(&source, &layers(&manifest)[0]).expect("the blob on the second try");
        let waited = started.elapsed();
        assert!(bytes == layer);
        assert!(waited >= Duration::from_millis(900), "gave up before the timeout: {waited:?}");
        assert!(waited < Duration::from_millis(3500), "waited {waited:?} for a 1 s timeout");
        let messages = retries.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains("timed out"), "{messages:?}");
    });
}

/// Fault 7, persistent: silence on every attempt ends in a timeout error after `1 + retries`
/// timeouts, not a hang.
#[test]
fn headers_that_never_come_fail_with_a_timeout_after_the_retry_budget() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let image = server.seed_image(REPO, "v1", vec![content(11, 1000)]);
        server.add(Rule::new(Some("HEAD"), "/manifests/", Fault::Stall(Duration::from_secs(4))).times(100));
        let retries = Retries::default();
        let mut options = options(&retries);
        options.response_header_timeout = Duration::from_secs(1);
        options.retry.retries = 1;
        let source = RegistrySource::new(connect(options, anonymous()));

        let started = Instant::now();
        let err = source.resolve(&image.reference.parse().unwrap()).expect_err("the registry never answers");
        let waited = started.elapsed();
        assert!(matches!(registry_error(&err).kind, RegistryErrorKind::Timeout(_)), "{err:?}");
        assert!(err.is_transient());
        assert!(waited >= Duration::from_millis(1800) && waited < Duration::from_secs(5), "waited {waited:?}");
        assert_eq!(server.count(Some("HEAD"), "/manifests/"), 2);
        assert_eq!(retries.messages().len(), 1, "{:?}", retries.messages());
    });
}

// ---------------------------------------------------------------------------------------------
// Pull: wrong content

/// Fault 5: different bytes of the right length fail verification with an error that names the
/// expected and the actual digest; the failure is final (an integrity error, not retried) and
/// the blob was fetched once.
#[test]
fn wrong_blob_bytes_fail_naming_both_digests_and_are_not_retried() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let layer = content(12, 500_000);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &digest, Fault::WrongBody).times(100));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));
        let (_, manifest) = open_image(&source, &image);

        let err = read_blob(&source, &layers(&manifest)[0]).expect_err("altered bytes must not verify");
        let actual = digest_of(&layer.iter().map(|byte| !byte).collect::<Vec<u8>>());
        match &err {
            StoreError::Verify(VerifyError::Digest { expected, actual: found, .. }) => {
                assert_eq!(expected.to_string(), digest);
                assert_eq!(found.to_string(), actual);
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(&digest) && text.contains(&actual), "the message names both digests: {text}");
        assert!(err.is_integrity() && !err.is_transient(), "{err}");
        assert_eq!(requests_for(&server, "GET", &digest).len(), 1, "no retry of a digest mismatch");
        assert!(retries.messages().is_empty(), "{:?}", retries.messages());
    });
}

/// Fault 6: a manifest GET whose `Docker-Content-Digest` is not the digest of its bytes fails,
/// naming both, and is not retried.
#[test]
fn a_wrong_docker_content_digest_on_a_manifest_get_fails() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let image = server.seed_image(REPO, "v1", vec![content(13, 1000)]);
        server.add(Rule::new(Some("GET"), "/manifests/", Fault::WrongDigestHeader).times(100));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));
        let descriptor = source.resolve(&image.reference.parse().unwrap()).expect("HEAD is not faulted");

        let err = source.manifest(&descriptor).expect_err("the registry contradicts the bytes");
        assert!(matches!(registry_error(&err).kind, RegistryErrorKind::Protocol(_)), "{err:?}");
        let text = err.to_string();
        let wrong = requests_for(&server, "GET", "/manifests/")[0].path.clone();
        assert!(text.contains(&image.manifest_digest), "names the digest of the bytes: {text}");
        assert!(text.contains(&digest_of(format!("not {wrong}").as_bytes())), "names the digest claimed: {text}");
        assert!(!err.is_transient());
        assert_eq!(server.count(Some("GET"), "/manifests/"), 1);
        assert!(retries.messages().is_empty());
    });
}

/// A manifest GET by digest that serves another (valid) manifest fails verification naming
/// the digest asked for and the digest served.
#[test]
fn another_manifest_served_for_a_digest_fails_naming_both_digests() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let image = server.seed_image(REPO, "v1", vec![content(14, 1000)]);
        let other = server.seed_image("team/other", "v1", vec![content(15, 1000)]);
        let source = RegistrySource::new(connect(options(&Retries::default()), anonymous()));
        let descriptor = source.resolve(&image.reference.parse().unwrap()).unwrap();
        server.add(Rule::new(Some("GET"), "/manifests/", Fault::ReplaceBody(other.manifest.clone())));

        let err = source.manifest(&descriptor).expect_err("bytes of another manifest");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Verify(VerifyError::Digest { .. })), "{err:?}");
        assert!(text.contains(&image.manifest_digest) && text.contains(&other.manifest_digest), "{text}");
        assert!(err.is_integrity() && !err.is_transient());
    });
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// Fault 8: tokens come from the registry's own token endpoint; one token serves every request
/// of every thread (one shared cache), and when the registry stops accepting it, the next
/// request gets 401, the client fetches a new token once and goes on.
#[test]
fn an_expired_token_is_refreshed_once_and_the_token_cache_is_shared() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let contents: Vec<Vec<u8>> = (0..8).map(|i| content(100 + i, 64 << 10)).collect();
        let image = server.seed_image(REPO, "v1", contents.clone());
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), login(PASSWORD)));
        let (_, manifest) = open_image(&source, &image);
        let descriptors = layers(&manifest);
        assert_eq!(server.token_requests(), 1, "one token for the resolve and the manifest");

        let read_everything = |source: &RegistrySource| {
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    scope.spawn(|| {
                        for (descriptor, expected) in descriptors.iter().zip(&contents) {
                            assert!(read_blob(source, descriptor).expect("a layer") == *expected);
                        }
                    });
                }
            });
        };
        read_everything(&source);
        assert_eq!(server.token_requests(), 1, "64 reads on 8 threads share the one token");
        let challenges = server.challenges();

        server.expire_tokens();
        assert!(read_blob(&source, &descriptors[0]).expect("a layer after the token expired") == contents[0]);
        assert_eq!(server.challenges(), challenges + 1, "the stale token got one 401");
        assert_eq!(server.token_requests(), 2, "one new token");
        read_everything(&source);
        assert_eq!(server.token_requests(), 2, "the new token is shared too");
        assert!(retries.messages().is_empty(), "re-authentication is not a retry: {:?}", retries.messages());
        let bearer = requests_for(&server, "GET", "/blobs/").iter().all(|r| r.header("authorization").is_some());
        assert!(bearer, "blob GETs go out authorised once the challenge is known");
    });
}

/// Review s8 G11: workers that start together, before any token is cached, ask the realm once
/// between them (a copy's five workers asked it five times for one token; realms such as
/// Docker Hub's rate-limit).
#[test]
fn workers_starting_together_share_one_token_request() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let contents: Vec<Vec<u8>> = (0..2).map(|i| content(200 + i, 16 << 10)).collect();
        let image = server.seed_image(REPO, "v1", contents);
        let retries = Retries::default();
        // A fresh client: no challenge known, no token cached; eight workers at once.
        let source = RegistrySource::new(connect(options(&retries), login(PASSWORD)));
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let (source, start, image) = (&source, &start, &image);
                scope.spawn(move || {
                    start.wait();
                    open_image(source, image);
                });
            }
        });
        assert_eq!(server.token_requests(), 1, "one token request for eight workers");
    });
}

/// Fault 8 in the middle of a transfer: the connection resets mid-blob and, by the time the
/// client resumes, its token has expired: the resume gets 401, the client fetches a new token
/// and the `Range` request completes the blob. Nothing secret reaches the retry messages.
#[test]
fn a_token_expiring_between_a_reset_and_its_resume_is_refreshed() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let layer = content(16, 1 << 20);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &digest, Fault::ResetAfter(200 << 10)));
        server.add(Rule::new(Some("GET"), &digest, Fault::ExpireTokens).with_header("range"));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), login(PASSWORD)));
        let (_, manifest) = open_image(&source, &image);

        let bytes = read_blob(&source, &layers(&manifest)[0]).expect("the blob with a fresh token");
        assert!(bytes == layer);
        let gets = requests_for(&server, "GET", &digest);
        let statuses: Vec<Option<u16>> = gets.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [None, Some(401), Some(206)], "reset, stale token, resumed: {gets:#?}");
        assert_eq!(server.token_requests(), 2);
        let messages = retries.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_no_secrets(&server, &messages);
    });
}

/// Fault 8 under a streamed upload: a 401 on the monolithic PUT cannot be answered by replaying
/// the stream, so the upload fails with a transient error (the engine reopens the blob), and
/// the next attempt fetches a new token and succeeds.
#[test]
fn a_token_expiring_under_a_streamed_upload_fails_transiently_and_the_next_attempt_succeeds() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let data = content(17, 1 << 20);
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        server.add(Rule::new(Some("PUT"), "/blobs/uploads/", Fault::ExpireTokens));
        let retries = Retries::default();
        let sink = RegistrySink::new(connect(options(&retries), login(PASSWORD)), repository(&server));

        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        let err = sink.put_blob(&descriptor, &mut reader).expect_err("the PUT met an expired token");
        assert!(err.is_transient(), "the engine must try again: {err}");
        assert_no_secrets(&server, &[err.to_string(), format!("{err:?}")]);
        assert_eq!(server.token_requests(), 1);

        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        sink.put_blob(&descriptor, &mut reader).expect("the second attempt");
        assert_eq!(server.token_requests(), 2, "one new token");
        assert!(server.blob(REPO, &descriptor.digest.to_string()).as_deref() == Some(&data[..]));
        assert_no_secrets(&server, &retries.messages());
    });
}

/// A token endpoint that fails once with 503 is a transient failure like any other: the
/// request that needed the token should be retried (and the retry reported) instead of failing
/// the resolve outright.
#[test]
fn a_token_endpoint_failing_once_is_retried() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let image = server.seed_image(REPO, "v1", vec![content(18, 1000)]);
        server.add(Rule::new(Some("GET"), "/token", Fault::Status(503)));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), login(PASSWORD)));

        let result = source.resolve(&image.reference.parse().unwrap());
        let err_text = result.as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert_no_secrets(&server, &[err_text.as_str()]);
        assert!(result.is_ok(), "one 503 from the token endpoint failed the resolve: {err_text}");
        assert_eq!(server.count(Some("GET"), "/token"), 2, "the failed token request was made again");
        assert_eq!(server.token_requests(), 1, "the issuer answered once");
        assert_eq!(retries.messages().len(), 1, "{:?}", retries.messages());
    });
}

/// RF-2: a refused connection to a registry that has not answered in this run fails at once,
/// naming the host and what to check, without retries (nothing listens there: a wrong port).
#[test]
fn a_refused_first_connection_fails_at_once_with_a_hint() {
    bounded(TEST_LIMIT, || {
        let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let host = unused.local_addr().expect("its address").to_string();
        drop(unused);
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));
        let reference: Reference = format!("{host}/{REPO}:v1").parse().expect("a reference");

        let started = Instant::now();
        let err = source.resolve(&reference).expect_err("nothing listens there");
        let remote = registry_error(&err);
        assert!(matches!(remote.kind, RegistryErrorKind::Unreachable(_)), "{remote:?}");
        assert!(!err.is_transient(), "{err}");
        assert_eq!(remote.attempts, 1, "{err}");
        assert!(retries.messages().is_empty(), "{:?}", retries.messages());
        let text = err.to_string();
        assert!(text.contains(&host) && text.contains("resolving tag v1"), "{text}");
        assert!(text.contains("check the registry's host and port"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(2), "at once: {:?}", started.elapsed());
    });
}

/// RF-2: once the registry has answered, a refused connection is retried (a registry
/// restarting), and the last error is transient.
#[test]
fn a_refused_connection_after_the_registry_answered_is_retried() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let image = server.seed_image(REPO, "v1", vec![content(9, 1000)]);
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), anonymous()));
        let (_, manifest) = open_image(&source, &image);
        drop(server);

        let err = read_blob(&source, &layers(&manifest)[0]).expect_err("the registry is gone");
        assert!(err.is_transient(), "{err}");
        assert!(!err.to_string().contains("cannot connect"), "{err}");
        assert_eq!(retries.messages().len(), 3, "the whole budget: {:?}", retries.messages());
    });
}

/// Wrong credentials: the token endpoint's 401 ends the operation at once (not transient, the
/// endpoint asked once), with a hint, and without the password in the message.
#[test]
fn a_wrong_password_fails_once_with_a_hint_and_without_leaking_it() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let image = server.seed_image(REPO, "v1", vec![content(19, 1000)]);
        let wrong = "wr0ng-PASSWORD-77a1";
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), login(wrong)));

        let err = source.resolve(&image.reference.parse().unwrap()).expect_err("wrong credentials");
        let text = err.to_string();
        assert_eq!(registry_error(&err).status(), Some(401), "{text}");
        assert_no_secrets(&server, &[text.as_str()]);
        assert!(!err.is_transient());
        assert!(text.contains("--registry-username"), "the message says what to check: {text}");
        assert!(!text.contains(wrong) && !format!("{err:?}").contains(wrong), "the password leaked: {text}");
        assert_eq!(server.token_requests(), 1);
        assert!(retries.messages().is_empty());
    });
}

/// Fault 9: a blob GET redirected (307) to another server, as registries do to a CDN or object
/// store, does not carry the registry's `Authorization` there, neither on the first GET nor on
/// the `Range` resume after a reset on the other server.
#[test]
fn a_redirected_blob_get_does_not_forward_authorization() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let cdn = FaultServer::start();
        let layer = content(20, 1 << 20);
        let image = server.seed_image(REPO, "v1", vec![layer.clone()]);
        let digest = image.layers[0].0.clone();
        cdn.put_blob(REPO, layer.clone());
        server.add(Rule::new(Some("GET"), &digest, Fault::Redirect(cdn.base_url())).times(100));
        cdn.add(Rule::new(Some("GET"), &digest, Fault::ResetAfter(300 << 10)));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), login(PASSWORD)));
        let (_, manifest) = open_image(&source, &image);

        let bytes = read_blob(&source, &layers(&manifest)[0]).expect("the blob from the other server");
        assert!(bytes == layer);
        let at_registry = requests_for(&server, "GET", &digest);
        assert!(at_registry.iter().all(|r| r.status == Some(307)), "{at_registry:#?}");
        let authorised = at_registry.iter().filter(|r| r.header("authorization").is_some()).count();
        assert_eq!(authorised, at_registry.len(), "the registry itself got the token");
        let at_cdn = requests_for(&cdn, "GET", &digest);
        assert_eq!(at_cdn.len(), 2, "the GET and its resume: {at_cdn:#?}");
        assert!(range_start(&at_cdn[1]).is_some());
        for request in &at_cdn {
            assert_eq!(request.header("authorization"), None, "Authorization went to another host: {request:#?}");
        }
        assert_eq!(retries.messages().len(), 1);
        assert_no_secrets(&server, &retries.messages());
    });
}

// ---------------------------------------------------------------------------------------------
// Push

/// Fault 10: a registry that refuses PATCH chunks over 4 MiB (416) takes a 9.5 MiB blob in
/// 4 MiB chunks; the PATCHes continue each other (`Content-Range`), the final PUT carries the
/// digest, and the registry's copy is byte for byte the blob (it checks the digest itself).
#[test]
fn a_chunked_upload_fits_a_4_mib_chunk_limit_and_commits_exact_bytes() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        server.limits(|limits| limits.max_chunk = Some(4 << 20));
        let data = content(21, (9 << 20) + (512 << 10));
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        let retries = Retries::default();
        let mut options = options(&retries);
        options.chunk_size = Some(4 << 20);
        let sink = RegistrySink::new(connect(options, anonymous()), repository(&server));

        assert!(!sink.has_blob(&descriptor).unwrap());
        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        sink.put_blob(&descriptor, &mut reader).expect("a chunked upload");

        let patches = requests_for(&server, "PATCH", "/blobs/uploads/");
        let sizes: Vec<usize> = patches.iter().map(|r| r.body_len).collect();
        assert_eq!(sizes, [4 << 20, 4 << 20, 1536 << 10]);
        let ranges: Vec<&str> = patches.iter().filter_map(|r| r.header("content-range")).collect();
        assert_eq!(ranges, ["0-4194303", "4194304-8388607", "8388608-9961471"]);
        assert!(patches.iter().all(|r| r.status == Some(202)));
        let put = &requests_for(&server, "PUT", "/blobs/uploads/")[0];
        assert_eq!(put.status, Some(201), "{put:#?}");
        assert!(
            put.query.contains(&format!("digest={}", descriptor.digest.to_string().replace(':', "%3A"))),
            "{put:#?}"
        );
        assert!(put.query.starts_with("_state="), "the Location's own query is kept: {put:#?}");
        assert!(server.blob(REPO, &descriptor.digest.to_string()).as_deref() == Some(&data[..]));
        assert!(sink.has_blob(&descriptor).unwrap());
        assert!(retries.messages().is_empty());
    });
}

/// Fault 10, control: chunks larger than the registry accepts fail with the registry's 416 on
/// the first PATCH, without retrying (a refusal is not transient), and nothing is committed.
#[test]
fn chunks_over_the_registry_limit_fail_on_the_first_patch() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        server.limits(|limits| limits.max_chunk = Some(4 << 20));
        let data = content(22, 9 << 20);
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        let retries = Retries::default();
        let mut options = options(&retries);
        options.chunk_size = Some(8 << 20);
        let sink = RegistrySink::new(connect(options, anonymous()), repository(&server));

        let mut reader = blob_reader(data, descriptor.digest, descriptor.size);
        let err = sink.put_blob(&descriptor, &mut reader).expect_err("8 MiB chunks are refused");
        assert_eq!(registry_error(&err).status(), Some(416), "{err}");
        assert!(!err.is_transient());
        assert_eq!(server.count(Some("PATCH"), "/blobs/uploads/"), 1);
        assert!(server.blob(REPO, &descriptor.digest.to_string()).is_none());
        assert!(retries.messages().is_empty());
    });
}

/// Fault 11: a monolithic upload is one POST and one PUT whose `Content-Length` is the blob
/// size (no chunked transfer coding) and whose `digest` matches; what was pushed then reads
/// back through a source, manifest and all.
#[test]
fn a_monolithic_upload_sends_content_length_and_the_digest_and_reads_back() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let layer = content(23, 3 << 20);
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let layer_descriptor = descriptor_of(&layer, media::OCI_LAYER_GZIP);
        let config_descriptor = descriptor_of(&config, media::OCI_CONFIG);
        let retries = Retries::default();
        let client = connect(options(&retries), anonymous());
        let mut sink = RegistrySink::new(Arc::clone(&client), repository(&server));

        for (bytes, descriptor) in [(&layer, &layer_descriptor), (&config, &config_descriptor)] {
            let mut reader = blob_reader(bytes.clone(), descriptor.digest, descriptor.size);
            sink.put_blob(descriptor, &mut reader).expect("a monolithic upload");
        }
        let puts = requests_for(&server, "PUT", "/blobs/uploads/");
        assert_eq!(puts.len(), 2);
        let put = &puts[0];
        assert_eq!(put.header("content-length"), Some((3 << 20).to_string().as_str()), "{put:#?}");
        assert_eq!(put.header("transfer-encoding"), None, "{put:#?}");
        assert_eq!(put.body_len, 3 << 20);
        assert_eq!(put.status, Some(201));
        assert_eq!(server.count(Some("PATCH"), "/"), 0);
        assert!(server.blob(REPO, &layer_descriptor.digest.to_string()).as_deref() == Some(&layer[..]));

        let manifest_bytes = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": config_descriptor,
            "layers": [layer_descriptor],
        })
        .to_string()
        .into_bytes();
        let manifest = RawManifest::parse(manifest_bytes, Some(media::OCI_MANIFEST)).unwrap();
        sink.put_manifest(&manifest).expect("the manifest by digest");
        sink.add_tag("v1".into(), manifest.clone());
        let plan = Plan {
            index: LayoutIndex::new(Vec::new(), BTreeMap::new()),
            manifests: Vec::new(),
            blobs: Vec::new(),
            omitted: Vec::new(),
        };
        sink.finish(&plan).expect("the tag");
        assert_eq!(server.manifest(REPO, "v1").as_deref(), Some(manifest.bytes()));

        let source = RegistrySource::new(client);
        let reference: Reference = format!("{}/{REPO}:v1", server.host()).parse().unwrap();
        let resolved = source.resolve(&reference).unwrap();
        assert_eq!(resolved.digest, manifest.digest());
        let fetched = source.manifest(&resolved).unwrap();
        assert!(read_blob(&source, &layers(&fetched)[0]).unwrap() == layer);
        assert!(retries.messages().is_empty());
    });
}

/// A monolithic upload whose source bytes do not match the descriptor commits nothing under
/// the digest, and the failure is final (no retry can make wrong bytes right).
#[test]
fn a_monolithic_upload_of_altered_bytes_commits_nothing() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let data = content(24, 1 << 20);
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        let altered: Vec<u8> = data.iter().map(|byte| byte ^ 1).collect();
        let retries = Retries::default();
        let sink = RegistrySink::new(connect(options(&retries), anonymous()), repository(&server));

        let mut reader = blob_reader(altered, descriptor.digest, descriptor.size);
        let err = sink.put_blob(&descriptor, &mut reader).expect_err("the bytes do not verify");
        assert!(!err.is_transient(), "{err}");
        assert!(server.blob(REPO, &descriptor.digest.to_string()).is_none());
        assert!(!sink.has_blob(&descriptor).unwrap());
        assert!(retries.messages().is_empty());
    });
}

/// `Sink::put_blob` reads its reader "to its end (which is what verifies it)" (src/store/mod.rs),
/// and `upload_monolithic` maps a failure back to the reader's verification error. But the HTTP
/// client stops reading the stream once it has sent `Content-Length` bytes, so the verifying
/// reader never reaches its end check: altered bytes go out whole, and the error is the
/// registry's `400 DIGEST_INVALID` (not an integrity error) -- or, on a registry that does not
/// check, nothing at all.
#[test]
fn a_monolithic_upload_of_altered_bytes_is_a_verify_error() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let data = content(29, 1 << 20);
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        let altered: Vec<u8> = data.iter().map(|byte| byte ^ 1).collect();
        let sink = RegistrySink::new(connect(options(&Retries::default()), anonymous()), repository(&server));

        let mut reader = blob_reader(altered, descriptor.digest, descriptor.size);
        let err = sink.put_blob(&descriptor, &mut reader).expect_err("the bytes do not verify");
        assert!(matches!(err, StoreError::Verify(VerifyError::Digest { .. })), "{err:?}");
        assert!(err.is_integrity());
        let puts = requests_for(&server, "PUT", "/blobs/uploads/");
        assert!(puts.iter().all(|put| put.status != Some(400)), "the altered blob was sent whole: {puts:#?}");
    });
}

/// Every request of an upload says its `Content-Length`, also when its body is empty: the
/// distribution-spec requires `Content-Length: 0` on the POST that opens a chunked upload, and
/// registries behind strict proxies answer 411 to a body sent with chunked transfer coding.
#[test]
fn upload_requests_without_a_body_say_content_length_0() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        server.limits(|limits| limits.require_content_length = true);
        let data = content(30, 100_000);
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        let mut options = options(&Retries::default());
        options.chunk_size = Some(64 << 10);
        let sink = RegistrySink::new(connect(options, anonymous()), repository(&server));

        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        let result = sink.put_blob(&descriptor, &mut reader);
        let unsized_requests: Vec<Logged> = server
            .requests()
            .into_iter()
            .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH") && r.header("content-length").is_none())
            .collect();
        assert!(unsized_requests.is_empty(), "requests without Content-Length: {unsized_requests:#?}");
        result.expect("a chunked upload to a registry that insists on Content-Length");
        assert!(server.blob(REPO, &descriptor.digest.to_string()).as_deref() == Some(&data[..]));
    });
}

/// A 500 on the monolithic PUT: the streamed body cannot be replayed, so the client does not
/// retry it itself (no half-consumed stream goes out again) but fails transiently; a second
/// attempt with a fresh reader, as the engine makes, succeeds.
#[test]
fn a_server_error_on_a_streamed_put_is_not_replayed_but_left_to_a_fresh_attempt() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let data = content(25, 1 << 20);
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        server.add(Rule::new(Some("PUT"), "/blobs/uploads/", Fault::Status(500)));
        let retries = Retries::default();
        let sink = RegistrySink::new(connect(options(&retries), anonymous()), repository(&server));

        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        let err = sink.put_blob(&descriptor, &mut reader).expect_err("the PUT failed");
        assert_eq!(registry_error(&err).status(), Some(500));
        assert!(err.is_transient());
        assert_eq!(server.count(Some("PUT"), "/blobs/uploads/"), 1, "the stream was not sent twice");
        assert!(retries.messages().is_empty(), "{:?}", retries.messages());

        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        sink.put_blob(&descriptor, &mut reader).expect("a fresh attempt");
        assert!(server.blob(REPO, &descriptor.digest.to_string()).as_deref() == Some(&data[..]));
    });
}

/// A registry that refuses a large single PUT (413) makes the sink switch to chunks: that
/// attempt fails transiently, the next one uploads in PATCH chunks and commits.
#[test]
fn a_registry_refusing_large_puts_gets_chunks_on_the_next_attempt() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        server.limits(|limits| limits.max_monolithic = Some(1 << 20));
        let data = content(26, 3 << 20);
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        let sink = RegistrySink::new(connect(options(&Retries::default()), anonymous()), repository(&server));

        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        let err = sink.put_blob(&descriptor, &mut reader).expect_err("413 on the single PUT");
        assert!(err.is_transient(), "{err}");
        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        sink.put_blob(&descriptor, &mut reader).expect("chunks on the next attempt");
        assert!(server.count(Some("PATCH"), "/blobs/uploads/") >= 1);
        assert!(server.blob(REPO, &descriptor.digest.to_string()).as_deref() == Some(&data[..]));
    });
}

/// A manifest PUT whose answer reports another digest than the bytes pushed fails, naming both.
#[test]
fn a_manifest_push_answered_with_another_digest_fails() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        let source_image = server.seed_image(REPO, "v1", vec![content(27, 1000)]);
        server.add(Rule::new(Some("PUT"), "/manifests/", Fault::WrongDigestHeader));
        let sink = RegistrySink::new(connect(options(&Retries::default()), anonymous()), repository(&server));

        let manifest = RawManifest::parse(source_image.manifest.clone(), Some(media::OCI_MANIFEST)).unwrap();
        let err = sink.put_manifest(&manifest).expect_err("the registry reports another digest");
        let text = err.to_string();
        assert!(text.contains(&source_image.manifest_digest), "{text}");
        assert!(matches!(registry_error(&err).kind, RegistryErrorKind::Protocol(_)), "{err:?}");
    });
}

// ---------------------------------------------------------------------------------------------
// Tags

/// Tag listing follows `Link` pages and retries a 503 between them, reporting it.
#[test]
fn tag_listing_survives_a_server_error_between_pages() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        server.limits(|limits| limits.tags_page = 2);
        for tag in ["a", "b", "c", "d", "e"] {
            server.seed_image(REPO, tag, vec![content(28, 100)]);
        }
        server.add(Rule::new(Some("GET"), "/tags/list", Fault::Status(503)).after(1));
        let retries = Retries::default();
        let client = connect(options(&retries), anonymous());

        let tags = list_tags(&client, &repository(&server)).expect("every page");
        assert_eq!(tags, ["a", "b", "c", "d", "e"]);
        assert_eq!(server.count(Some("GET"), "/tags/list"), 4, "three pages and one retry");
        assert_eq!(retries.messages().len(), 1);
    });
}

/// Issue 12 item 6: a registry answering every tag page with 9 MiB (in the attack, 16 MB pages
/// without end) is refused at the first page, over the 8 MiB page limit, with an error naming
/// the registry; nothing is accumulated.
#[test]
fn an_oversize_tag_page_is_refused_naming_the_registry() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        server.seed_image(REPO, "v1", vec![content(41, 100)]);
        let tags: Vec<String> = (0..80_000).map(|i| format!("t{i:0>119}")).collect();
        let page = serde_json::json!({"name": REPO, "tags": tags}).to_string().into_bytes();
        assert!(page.len() > 9 << 20, "the page is over the limit: {}", page.len());
        server.add(Rule::new(Some("GET"), "/tags/list", Fault::ReplaceBody(page)).times(100));
        let client = connect(options(&Retries::default()), anonymous());

        let err = list_tags(&client, &repository(&server)).expect_err("a 9 MiB page is too large");
        let text = err.to_string();
        assert!(text.contains(&server.host()) && text.contains("8 MiB"), "{text}");
        assert!(!err.is_transient(), "{text}");
        assert_eq!(server.count(Some("GET"), "/tags/list"), 1, "not retried");
    });
}

/// Issue 12 item 6: a `Link` that names a page already read (here `last=b` again and again) is
/// a pagination loop, refused at the first repeat instead of followed for thousands of pages.
#[test]
fn a_looping_tag_page_link_is_refused_at_the_first_repeat() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        server.limits(|limits| limits.tags_page = 2);
        for tag in ["a", "b", "c", "d", "e"] {
            server.seed_image(REPO, tag, vec![content(42, 100)]);
        }
        let link = format!(r#"</v2/{REPO}/tags/list?n=2&last=b>; rel="next""#);
        server.add(Rule::new(Some("GET"), "/tags/list", Fault::SetHeader("Link".into(), link)).times(100_000));
        let client = connect(options(&Retries::default()), anonymous());

        let result = list_tags(&client, &repository(&server));
        let pages = server.count(Some("GET"), "/tags/list");
        assert_eq!(pages, 2, "the second page's Link repeats the first's: {result:?}");
        let text = result.expect_err("a pagination loop").to_string();
        assert!(text.contains("loop") && text.contains(&server.host()), "{text}");
    });
}

/// Issue 12 item 6: the number of tags kept is capped; over the cap the listing fails saying
/// so instead of growing (the cap is lowered here; `TagListing::default` documents the real one).
#[test]
fn tags_past_the_listing_cap_are_refused() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start();
        server.limits(|limits| limits.tags_page = 2);
        for tag in ["a", "b", "c", "d", "e"] {
            server.seed_image(REPO, tag, vec![content(43, 100)]);
        }
        let client = connect(options(&Retries::default()), anonymous());
        let listing = TagListing { page_size: 2, max_tags: 4, ..TagListing::default() };

        let err = list_tags_with(&client, &repository(&server), &listing).expect_err("5 tags, 4 allowed");
        assert!(err.to_string().contains("more than 4 tags"), "{err}");
        let listing = TagListing { page_size: 2, max_tags: 5, ..TagListing::default() };
        assert_eq!(list_tags_with(&client, &repository(&server), &listing).unwrap(), ["a", "b", "c", "d", "e"]);
    });
}

// ---------------------------------------------------------------------------------------------
// Credentials stay on their host (issue 12 item 4; spec/cli.md "Registry flags")

/// Every request `server` logged carried no `Authorization`.
fn assert_never_authorised(server: &FaultServer, what: &str) {
    for request in server.requests() {
        assert_eq!(request.header("authorization"), None, "{what} got the registry's credentials: {request:#?}");
    }
}

/// A `Link` to another host for the next tag page is refused (a registry's pages are its own),
/// naming both hosts, and the other host is never contacted, so it never sees a credential.
#[test]
fn a_tag_page_link_to_another_host_is_refused_and_that_host_sees_no_credentials() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let other = FaultServer::start();
        server.limits(|limits| limits.tags_page = 2);
        for tag in ["a", "b", "c", "d", "e"] {
            server.seed_image(REPO, tag, vec![content(44, 100)]);
        }
        other.seed_image(REPO, "z", vec![content(45, 100)]);
        let link = format!(r#"<{}/v2/{REPO}/tags/list?n=2&last=b>; rel="next""#, other.base_url());
        server.add(Rule::new(Some("GET"), "/tags/list", Fault::SetHeader("Link".into(), link)).times(100));
        let client = connect(options(&Retries::default()), login(PASSWORD));

        let result = list_tags(&client, &repository(&server));
        assert_never_authorised(&other, "the host a tag Link pointed at");
        assert!(other.requests().is_empty(), "the other host was contacted: {:#?}", other.requests());
        let text = result.expect_err("a Link to another host").to_string();
        assert!(text.contains(&other.host()) && text.contains(&server.host()), "both hosts named: {text}");
        assert_no_secrets(&server, &[text]);
    });
}

/// A monolithic upload whose `Location` (the POST's answer) is on another host, as registries
/// backed by object storage send, is PUT there without the registry's token, and completes.
#[test]
fn a_monolithic_upload_to_a_location_on_another_host_carries_no_credentials() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let storage = FaultServer::start();
        let location = format!("{}{}", storage.base_url(), storage.open_upload(REPO, &[]));
        server.add(Rule::new(Some("POST"), "/blobs/uploads/", Fault::SetHeader("Location".into(), location)));
        let data = content(46, 300_000);
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        let sink = RegistrySink::new(connect(options(&Retries::default()), login(PASSWORD)), repository(&server));

        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        let result = sink.put_blob(&descriptor, &mut reader);
        assert_never_authorised(&storage, "the upload Location's host");
        result.expect("the blob goes to the storage host");
        assert!(storage.blob(REPO, &descriptor.digest.to_string()).as_deref() == Some(&data[..]));
        assert_eq!(storage.count(Some("PUT"), "/blobs/uploads/"), 1);
        let posts = requests_for(&server, "POST", "/blobs/uploads/");
        assert!(posts.iter().any(|r| r.header("authorization").is_some()), "the registry itself is authorised");
    });
}

/// A chunked upload opened on another host: every PATCH and the closing PUT go there (a
/// relative `Location` from that host stays on it), none with the registry's token.
#[test]
fn a_chunked_upload_to_a_location_on_another_host_carries_no_credentials() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let storage = FaultServer::start();
        let location = format!("{}{}", storage.base_url(), storage.open_upload(REPO, &[]));
        server.add(Rule::new(Some("POST"), "/blobs/uploads/", Fault::SetHeader("Location".into(), location)));
        let data = content(47, 250_000);
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        let mut options = options(&Retries::default());
        options.chunk_size = Some(100_000);
        let sink = RegistrySink::new(connect(options, login(PASSWORD)), repository(&server));

        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        let result = sink.put_blob(&descriptor, &mut reader);
        assert_never_authorised(&storage, "the chunked upload's host");
        result.expect("the blob goes to the storage host in chunks");
        assert_eq!(storage.count(Some("PATCH"), "/blobs/uploads/"), 3);
        assert_eq!(storage.count(Some("PUT"), "/blobs/uploads/"), 1);
        assert!(storage.blob(REPO, &descriptor.digest.to_string()).as_deref() == Some(&data[..]));
        assert_eq!(server.count(Some("PATCH"), "/blobs/uploads/"), 0);
    });
}

/// A chunked upload that starts on the registry and whose PATCH answer moves it to another
/// host: the first PATCH is authorised (the registry), the rest and the PUT are not.
#[test]
fn a_chunk_answer_moving_the_upload_to_another_host_takes_no_credentials_along() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let storage = FaultServer::start();
        let data = content(48, 250_000);
        let location = format!("{}{}", storage.base_url(), storage.open_upload(REPO, &data[..100_000]));
        server.add(Rule::new(Some("PATCH"), "/blobs/uploads/", Fault::SetHeader("Location".into(), location)));
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        let mut options = options(&Retries::default());
        options.chunk_size = Some(100_000);
        let sink = RegistrySink::new(connect(options, login(PASSWORD)), repository(&server));

        let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
        let result = sink.put_blob(&descriptor, &mut reader);
        assert_never_authorised(&storage, "the host a PATCH answer moved the upload to");
        result.expect("the upload completes on the storage host");
        let patches = requests_for(&server, "PATCH", "/blobs/uploads/");
        assert_eq!(patches.len(), 1);
        assert!(patches[0].header("authorization").is_some(), "the registry's own PATCH is authorised");
        assert_eq!(storage.count(Some("PATCH"), "/blobs/uploads/"), 2);
        assert!(storage.blob(REPO, &descriptor.digest.to_string()).as_deref() == Some(&data[..]));
    });
}

/// Another host that answers an upload with its own 401 challenge must not become the place
/// the registry's credentials go: its challenge is not learnt, so the next attempt (the engine
/// retries) still asks the registry's own realm, and the other host's `/token` never sees the
/// registry's username and password.
#[test]
fn a_challenge_from_another_host_does_not_redirect_the_registry_credentials() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let attacker = FaultServer::start_with_auth(USER, PASSWORD);
        let location = format!("{}{}", attacker.base_url(), attacker.open_upload(REPO, &[]));
        server.add(Rule::new(Some("POST"), "/blobs/uploads/", Fault::SetHeader("Location".into(), location)).times(2));
        let data = content(49, 10_000);
        let descriptor = descriptor_of(&data, media::OCI_LAYER_GZIP);
        let sink = RegistrySink::new(connect(options(&Retries::default()), login(PASSWORD)), repository(&server));

        for _ in 0..2 {
            let mut reader = blob_reader(data.clone(), descriptor.digest, descriptor.size);
            let _ = sink.put_blob(&descriptor, &mut reader);
        }
        assert_never_authorised(&attacker, "a host challenging for credentials");
        assert_eq!(attacker.token_requests(), 0, "the registry's credentials went to another host's realm");
        assert_eq!(server.token_requests(), 1, "the registry's own realm is asked, once");
    });
}

/// A TLS registry (a real `docker-registry` with a test CA) whose token realm is plain HTTP on
/// a network host: the client refuses before sending anything there (clear error, not
/// retried), so the basic credentials never travel in cleartext. The realm's host is reserved
/// (`.invalid`, RFC 2606): a client that tried would not reach anyone.
#[test]
fn a_plain_http_token_realm_for_an_https_registry_is_refused() {
    bounded(Duration::from_secs(60), || {
        // A listener on this machine as the realm: it must never be contacted, loopback or not.
        let listener = std::net::TcpListener::bind("127.0.0.2:0").expect("a loopback listener");
        listener.set_nonblocking(true).unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let registry = TlsTokenRegistry::start(&realm);
        let retries = Retries::default();
        let mut options = options(&retries);
        options.insecure = false;
        options.ca_cert_paths = vec![registry.ca.clone()];
        let client = connect(options, login(PASSWORD));
        let repository = ferry::model::Repository { registry: registry.host.clone(), path: REPO.into() };

        let err = list_tags(&client, &repository).expect_err("the realm is refused");
        let text = err.to_string();
        assert!(text.contains(&format!("plain-HTTP {}", realm.trim_end_matches("/token"))), "{text}");
        let contacted = listener.accept();
        assert!(
            matches!(&contacted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the plain-HTTP realm was contacted: {contacted:?}"
        );
        assert!(text.contains("https") && text.contains(&registry.host), "{text}");
        assert!(!err.is_transient(), "{text}");
        assert!(retries.messages().is_empty(), "nothing to retry: {:?}", retries.messages());
        assert!(!text.contains(PASSWORD));
    });
}

// Only the CA and server certificate are used here.
#[allow(dead_code)]
#[path = "support/pki.rs"]
mod pki;

/// A `docker-registry` over TLS (certificate from a fresh test CA) with `auth: token` naming
/// `realm`; killed on drop.
struct TlsTokenRegistry {
    host: String,
    ca: std::path::PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl TlsTokenRegistry {
    fn start(realm: &str) -> TlsTokenRegistry {
        let dir = tempfile::tempdir().expect("a temp dir");
        let pki = pki::TestPki::generate();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("ca.crt"), &pki.ca_pem).unwrap();
        std::fs::write(path("server.crt"), &pki.server_cert_pem).unwrap();
        std::fs::write(path("server.key"), &pki.server_key_pem).unwrap();
        let quoted = |name: &str| serde_json::to_string(&path(name).display().to_string()).unwrap();
        let mut log = String::new();
        // Another test may take the port between our probe and the registry's bind: try again.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let host = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  inmemory: {{}}\n\
                 http:\n  addr: {host}\n  tls:\n    certificate: {}\n    key: {}\n\
                 auth:\n  token:\n    realm: {realm}\n    service: fault\n    issuer: fault\n    rootcertbundle: {}\n",
                quoted("server.crt"),
                quoted("server.key"),
                quoted("ca.crt"),
            );
            std::fs::write(path("config.yml"), config).unwrap();
            let log_file = std::fs::File::create(path("registry.log")).unwrap();
            let mut command = std::process::Command::new("docker-registry");
            command.arg("serve").arg(path("config.yml")).stdin(std::process::Stdio::null());
            command.stdout(log_file.try_clone().unwrap()).stderr(log_file);
            for (key, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("REGISTRY_")) {
                command.env_remove(key);
            }
            let mut child = command.spawn().expect("docker-registry must be installed (make deps)");
            let deadline = Instant::now() + Duration::from_secs(20);
            let listening = format!("listening on {host}");
            while Instant::now() < deadline {
                log = std::fs::read_to_string(path("registry.log")).unwrap_or_default();
                if log.contains(&listening) {
                    return TlsTokenRegistry { host, ca: path("ca.crt"), child, _dir: dir };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            if !log.contains("address already in use") {
                break;
            }
        }
        panic!("docker-registry did not start:\n{log}");
    }
}

impl Drop for TlsTokenRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 401 from the host a redirect led to (a CDN, or anyone on that hop) is not the registry's
/// challenge: it is not learnt, so the registry's credentials never go to the realm that host
/// names, on the blob path ferry reads itself and on the manifest path the agent follows; the
/// read fails with that 401, and the registry's own challenge still holds afterwards.
#[test]
fn a_challenge_from_where_a_redirect_led_is_not_learnt() {
    bounded(TEST_LIMIT, || {
        let server = FaultServer::start_with_auth(USER, PASSWORD);
        let elsewhere = FaultServer::start_with_auth(USER, PASSWORD);
        let image = server.seed_image(REPO, "v1", vec![content(50, 100_000)]);
        let digest = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &digest, Fault::Redirect(elsewhere.base_url())).times(100));
        let retries = Retries::default();
        let source = RegistrySource::new(connect(options(&retries), login(PASSWORD)));
        let (_, manifest) = open_image(&source, &image);

        let err = read_blob(&source, &layers(&manifest)[0]).expect_err("the other host wants credentials");
        assert_eq!(registry_error(&err).status(), Some(401), "{err}");
        server.add(Rule::new(None, "/manifests/", Fault::Redirect(elsewhere.base_url())).times(100));
        let reference: Reference = image.reference.parse().unwrap();
        let err = source.resolve(&reference).expect_err("the other host wants credentials");
        assert!(err.to_string().contains("401"), "{err}");

        assert_never_authorised(&elsewhere, "a host a redirect led to");
        assert_eq!(elsewhere.token_requests(), 0, "the registry's credentials went to another host's realm");
        assert_eq!(server.token_requests(), 1, "the registry's own realm, once");
    });
}

/// An HTTPS registry that redirects a manifest request to plain HTTP is not followed (without
/// `--registry-insecure`): whoever answers on that hop would choose what the tag is. The
/// plain-HTTP address is never contacted.
#[test]
fn a_redirect_from_https_to_plain_http_is_not_followed() {
    bounded(Duration::from_secs(60), || {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
        plain.set_nonblocking(true).unwrap();
        let to = format!("http://{}", plain.local_addr().unwrap());
        let redirector = TlsRedirector::start(&to);
        let retries = Retries::default();
        let mut options = options(&retries);
        options.insecure = false;
        options.ca_cert_paths = vec![redirector.ca.clone()];
        let source = RegistrySource::new(connect(options, anonymous()));
        let reference: Reference = format!("{}/{REPO}:v1", redirector.host).parse().unwrap();

        let err = source.resolve(&reference).expect_err("the redirect leaves HTTPS");
        let contacted = plain.accept();
        assert!(
            matches!(&contacted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the plain-HTTP address was contacted: {contacted:?}"
        );
        assert!(redirector.answered() >= 1, "the registry itself was asked");
        assert!(err.to_string().to_lowercase().contains("https"), "{err}");
        assert!(!err.is_transient(), "{err}");
    });
}

/// A TLS server on 127.0.0.1 (certificate from a fresh test CA) that answers every request
/// with a 307 to the same path on `to`.
struct TlsRedirector {
    host: String,
    ca: std::path::PathBuf,
    answered: Arc<std::sync::atomic::AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl TlsRedirector {
    fn start(to: &str) -> TlsRedirector {
        use std::io::{BufRead, BufReader, Write};

        use rustls_pki_types::pem::PemObject;
        let dir = tempfile::tempdir().unwrap();
        let pki = pki::TestPki::generate();
        std::fs::write(dir.path().join("ca.crt"), &pki.ca_pem).unwrap();
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (count, to) = (Arc::clone(&answered), to.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { return };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(connection) = rustls::ServerConnection::new(Arc::clone(&config)) else { return };
                let mut tls = BufReader::new(rustls::StreamOwned::new(connection, tcp));
                let mut line = String::new();
                if tls.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                loop {
                    line.clear();
                    if tls.read_line(&mut line).unwrap_or(0) == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.get_mut().write_all(answer.as_bytes());
                let _ = tls.get_mut().flush();
            }
        });
        TlsRedirector { host, ca: dir.path().join("ca.crt"), answered, _dir: dir }
    }

    fn answered(&self) -> usize {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }
}
