//! Exit codes (spec/cli.md "exit codes") and the failure type commands return.

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything held.
    Success,
    /// 1: the command could not do its job (I/O, missing input, a registry refused).
    Failure,
    /// 2: the command line was wrong (clap uses this code too).
    Usage,
    /// 3: the content failed an integrity check (a digest, a size, a malformed archive).
    Integrity,
}

impl Exit {
    pub fn code(self) -> ExitCode {
        ExitCode::from(match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Integrity => 3,
        })
    }
}

/// A failed command: the error to print and the code to exit with.
#[derive(Debug)]
pub struct Failure {
    pub error: anyhow::Error,
    pub exit: Exit,
}

impl Failure {
    pub fn new(error: impl Into<anyhow::Error>, integrity: bool) -> Self {
        Failure { error: error.into(), exit: if integrity { Exit::Integrity } else { Exit::Failure } }
    }
}

/// Errors that can tell an integrity failure (exit 3) from any other (exit 1).
pub trait Classified: Into<anyhow::Error> {
    fn is_integrity(&self) -> bool;
}

macro_rules! classified {
    ($($error:ty),* $(,)?) => {
        $(impl Classified for $error {
            fn is_integrity(&self) -> bool {
                <$error>::is_integrity(self)
            }
        })*
    };
}

classified!(
    ferry::store::StoreError,
    ferry::ops::export::ExportError,
    ferry::ops::import::ImportError,
    ferry::ops::copy::CopyError,
    ferry::ops::pull::PullError,
    ferry::ops::push::PushError,
    ferry::ops::describe::DescribeError,
);

/// The failure of a command whose error knows whether it is about integrity.
/// A file of a kind ferry does not read (spec/archive.md "Other archives ferry reads") is the
/// wrong input, a usage error (exit 2), whichever error carries it.
pub fn fail(err: impl Classified) -> Failure {
    let integrity = err.is_integrity();
    let mut failure = Failure::new(err, integrity);
    if failure.error.chain().any(|cause| cause.is::<ferry::store::probe::ForeignArchive>()) {
        failure.exit = Exit::Usage;
    }
    failure
}
