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
