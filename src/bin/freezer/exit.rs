//! The documented exit codes (also in `--help` and the README); keep them stable.

use std::process::ExitCode;

use freezer::ErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    Warnings = 3,
    NotFound = 4,
    Damaged = 5,
    WrongKey = 6,
    Locked = 7,
    /// Only when the signal cannot be re-raised; normally the process dies by the signal.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// The exit code for an error that stopped the run.
pub fn for_error(err: &anyhow::Error) -> Exit {
    if err.downcast_ref::<clap::Error>().is_some() {
        return Exit::Usage;
    }
    match err.downcast_ref::<freezer::Error>().map(|e| e.kind()) {
        Some(ErrorKind::Usage) | Some(ErrorKind::TargetNotEmpty) => Exit::Usage,
        Some(ErrorKind::NotFound) => Exit::NotFound,
        Some(ErrorKind::Corrupt) | Some(ErrorKind::Unsafe) => Exit::Damaged,
        Some(ErrorKind::Interrupted) => Exit::Interrupted,
        Some(ErrorKind::WrongKey) => Exit::WrongKey,
        Some(ErrorKind::Locked) => Exit::Locked,
        _ => Exit::Failed,
    }
}
