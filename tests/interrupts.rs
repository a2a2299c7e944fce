//! What an interrupted command leaves behind (spec/cli.md "pull"): a pull stopped by SIGINT or
//! SIGTERM while it fetches a layer removes its staging directory (`DIR.ferry-pull-*`, layer
//! bytes not yet verified) and exits with 128 + the signal. The fault server holds the layer's
//! GET open, so the signal lands while the staging directory exists.

mod fault;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fault::{Fault, FaultServer, Rule};

/// Entries of `dir` whose names contain `part`.
fn named(dir: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(part))
        .collect()
}

/// Starts `command` with SIGINT, SIGTERM and SIGHUP at their defaults, whatever the test
/// process inherited.
fn with_default_signals(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            for number in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(number, libc::SIG_DFL);
            }
            Ok(())
        });
    }
}

#[test]
fn an_interrupted_pull_removes_its_staging_directory() {
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let server = FaultServer::start();
        let image = server.seed_image("team/files", "v1", vec![vec![7u8; 4096]]);
        let layer = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &layer, Fault::Delay(Duration::from_secs(30))));
        let scratch = tempfile::tempdir().unwrap();
        let output = scratch.path().join("out");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(["pull", "-i", &image.reference, "--registry-insecure", "-o"])
            .arg(&output)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // As from a terminal: a test run in the background (`cmd &` in a script) inherits an
        // ignored SIGINT, which ferry keeps ignoring.
        with_default_signals(&mut command);
        let mut pull = command.spawn().unwrap();
        let started = Instant::now();
        while named(scratch.path(), ".ferry-pull-").is_empty() || server.count(Some("GET"), &layer) == 0 {
            assert!(started.elapsed() < Duration::from_secs(20), "the pull never started its layer");
            assert!(pull.try_wait().unwrap().is_none(), "the pull ended before it was interrupted");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(unsafe { libc::kill(pull.id() as i32, signal) }, 0);
        let status = loop {
            if let Some(status) = pull.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(25) {
                pull.kill().unwrap();
                panic!("the pull did not end on signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut said = String::new();
        std::io::Read::read_to_string(&mut pull.stderr.take().unwrap(), &mut said).unwrap();
        assert_eq!(status.code(), Some(code), "{said}");
        assert!(said.contains("interrupted: removed"), "{said}");
        assert_eq!(named(scratch.path(), ""), Vec::<String>::new(), "nothing is left beside the output: {said}");
    }
}

/// A signal the pull was started ignoring (`nohup` ignores SIGHUP, a script's `&` SIGINT)
/// stays ignored: the pull goes on; another signal still cleans up (review of the change).
#[test]
fn a_signal_ignored_at_start_stays_ignored() {
    use std::os::unix::process::CommandExt;
    let server = FaultServer::start();
    let image = server.seed_image("team/files", "v1", vec![vec![7u8; 4096]]);
    let layer = image.layers[0].0.clone();
    server.add(Rule::new(Some("GET"), &layer, Fault::Delay(Duration::from_secs(30))));
    let scratch = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(["pull", "-i", &image.reference, "--registry-insecure", "-o"])
        .arg(scratch.path().join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    with_default_signals(&mut command);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut pull = command.spawn().unwrap();
    let started = Instant::now();
    while named(scratch.path(), ".ferry-pull-").is_empty() || server.count(Some("GET"), &layer) == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the pull never started its layer");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(unsafe { libc::kill(pull.id() as i32, libc::SIGHUP) }, 0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(pull.try_wait().unwrap().is_none(), "an ignored SIGHUP ended the pull");
    assert_eq!(unsafe { libc::kill(pull.id() as i32, libc::SIGTERM) }, 0);
    let status = loop {
        if let Some(status) = pull.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(25) {
            pull.kill().unwrap();
            panic!("the pull did not end on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));
    assert!(named(scratch.path(), "").is_empty(), "nothing is left beside the output");
}
