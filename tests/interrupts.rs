//! What an interrupted command leaves behind (spec/cli.md "pull"): a pull stopped by SIGINT or
//! SIGTERM while it fetches a layer removes its staging directory (`DIR.ferry-pull-*`, layer
//! bytes not yet verified) and exits with 128 + the signal. The fault server holds the layer's
//! GET open, so the signal lands while the staging directory exists.

mod fault;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// A pull into `scratch/out` held inside its layer's GET (the fault server delays it 30 s).
struct HeldPull {
    child: Child,
    started: Instant,
    _server: FaultServer,
}

impl HeldPull {
    /// Starts the pull with SIGINT, SIGTERM and SIGHUP at their defaults, as from a terminal
    /// (a test run in the background, `cmd &` in a script, inherits an ignored SIGINT, which
    /// ferry keeps ignoring), then `ignored` set to be ignored; returns once the staging
    /// directory exists and the layer's GET has arrived.
    fn start(scratch: &Path, ignored: Option<libc::c_int>) -> HeldPull {
        use std::os::unix::process::CommandExt;
        let server = FaultServer::start();
        let image = server.seed_image("team/files", "v1", vec![vec![7u8; 4096]]);
        let layer = image.layers[0].0.clone();
        server.add(Rule::new(Some("GET"), &layer, Fault::Delay(Duration::from_secs(30))));
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(["pull", "-i", &image.reference, "--registry-insecure", "-o"])
            .arg(scratch.join("out"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                for number in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(number, libc::SIG_DFL);
                }
                if let Some(number) = ignored {
                    libc::signal(number, libc::SIG_IGN);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let started = Instant::now();
        while named(scratch, ".ferry-pull-").is_empty() || server.count(Some("GET"), &layer) == 0 {
            assert!(started.elapsed() < Duration::from_secs(20), "the pull never started its layer");
            assert!(child.try_wait().unwrap().is_none(), "the pull ended before it was interrupted");
            std::thread::sleep(Duration::from_millis(20));
        }
        HeldPull { child, started, _server: server }
    }

    fn signal(&self, number: libc::c_int) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, number) }, 0);
    }

    /// Waits for the exit that `number` should cause (25 s from the start at most); the exit
    /// status and what the pull said on stderr.
    fn ended_by(mut self, number: libc::c_int) -> (ExitStatus, String) {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if self.started.elapsed() > Duration::from_secs(25) {
                self.child.kill().unwrap();
                panic!("the pull did not end on signal {number}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut said = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut said).unwrap();
        (status, said)
    }
}

#[test]
fn an_interrupted_pull_removes_its_staging_directory() {
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let scratch = tempfile::tempdir().unwrap();
        let pull = HeldPull::start(scratch.path(), None);
        pull.signal(signal);
        let (status, said) = pull.ended_by(signal);
        assert_eq!(status.code(), Some(code), "{said}");
        assert!(said.contains("interrupted: removed"), "{said}");
        assert_eq!(named(scratch.path(), ""), Vec::<String>::new(), "nothing is left beside the output: {said}");
    }
}

/// A signal the pull was started ignoring (`nohup` ignores SIGHUP, a script's `&` SIGINT)
/// stays ignored: the pull goes on; another signal still cleans up (review of the change).
#[test]
fn a_signal_ignored_at_start_stays_ignored() {
    let scratch = tempfile::tempdir().unwrap();
    let mut pull = HeldPull::start(scratch.path(), Some(libc::SIGHUP));
    pull.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(pull.child.try_wait().unwrap().is_none(), "an ignored SIGHUP ended the pull");
    pull.signal(libc::SIGTERM);
    let (status, _) = pull.ended_by(libc::SIGTERM);
    assert_eq!(status.code(), Some(143));
    assert!(named(scratch.path(), "").is_empty(), "nothing is left beside the output");
}
