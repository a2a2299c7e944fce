//! Running external tools (skopeo, curl) from tests with a deadline, so that a hung tool fails
//! its test instead of hanging the suite.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `command` to completion with stdin closed and stdout/stderr captured; kills it and
/// panics (with what it printed so far) when it is still running after `timeout`. Panics when
/// the program cannot be started, naming it, since the suite installs its tools itself
/// (`make deps`, scripts/install-deps.sh) and must not silently skip.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (install the test tools with `make deps`)"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            break status;
        }
        if Instant::now() >= deadline {
            // Kill before joining the readers: they only finish once the pipes close.
            let _ = child.kill();
            let _ = child.wait();
            let out = stdout.join().unwrap_or_default();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "{program} {:?} did not finish within {timeout:?}; stdout: {}; stderr: {}",
                command.get_args().collect::<Vec<_>>(),
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    // Once the tool has exited its pipes are closed (skopeo and curl leave no children behind).
    Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The real imgpkg the suite uses as its reference peer: `FERRY_TEST_IMGPKG` when set, else
/// `../shared/tools/imgpkg` beside the project (see ../shared/tools/README.md). Missing, the
/// calling test fails; it never skips (spec/testing.md).
pub fn imgpkg() -> std::path::PathBuf {
    let path = std::env::var_os("FERRY_TEST_IMGPKG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/imgpkg"));
    assert!(
        path.is_file(),
        "imgpkg is expected at {} (see ../shared/tools/README.md) or in FERRY_TEST_IMGPKG",
        path.display()
    );
    path
}
