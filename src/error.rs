//! The library's one error type.
//!
//! Rules: every error says what failed and on which value (a path, a backup, an option), and
//! where the user can do something about it, what to do. Module code builds errors with the
//! constructors below; nothing wraps an `Error` in another `Error`.

use std::fmt;
use std::io;

/// What kind of failure this is; the binary maps kinds to documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The options or the configuration are wrong: the user must change the command line.
    Usage,
    /// Reading or writing local files failed.
    Io,
    /// The storage failed or holds something unexpected.
    Storage,
    /// No backup matches what was asked for.
    NotFound,
    /// Stored data is damaged: bad checksum, truncated stream, malformed archive.
    Corrupt,
    /// An archive tried to write outside the restore target; nothing was done for it.
    Unsafe,
    /// The restore target is not empty and `--overwrite` was not given.
    TargetNotEmpty,
    /// SIGTERM or SIGINT arrived; the run stopped and cleaned up.
    Interrupted,
    /// The passphrase or identity does not decrypt the backup.
    WrongKey,
    /// Another run holds the lock of this host and backup name.
    Locked,
}

/// The error returned by every fallible function of this crate.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a complete, user-facing message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    /// A usage error: the message should name the option and the fix.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Usage, message)
    }

    /// Damaged or malformed stored data.
    pub fn corrupt(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Corrupt, message)
    }

    /// An archive member that would escape the restore target.
    pub fn unsafe_path(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unsafe, message)
    }

    /// A storage failure.
    pub fn storage(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Storage, message)
    }

    /// An I/O error with what we were doing, e.g. `io("cannot read /etc/x", e)`.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error { kind: ErrorKind::Io, message: context.into(), source: Some(Box::new(source)) }
    }

    /// Attach an underlying cause to an error built with [`Error::new`].
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// Say what we were doing: `"cannot write x: " + message`.
    pub fn context(mut self, context: impl Into<String>) -> Error {
        let context = context.into();
        self.message =
            if self.message.is_empty() { context } else { format!("{context}: {}", self.message) };
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            if !self.message.is_empty() {
                f.write_str(": ")?;
            }
            write!(f, "{source}")?;
        }
        Ok(())
    }
}

/// The cause is part of the message already (see `Display`), so it is not reported again as
/// a source: chains printed with `{:#}` would repeat it ("Not a directory: Not a directory").
impl std::error::Error for Error {}

/// `io::Error` → `Error` for adapters whose caller adds context; prefer [`Error::io`].
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        // An io::Error may carry one of ours (from a Read/Write adapter); unwrap it.
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(Ok(ours)) = e.into_inner().map(|inner| inner.downcast::<Error>()) {
                return *ours;
            }
            return Error::new(ErrorKind::Io, "I/O error");
        }
        Error { kind: ErrorKind::Io, message: String::new(), source: Some(Box::new(e)) }
    }
}

/// Carry an `Error` through an `io::Read`/`io::Write` adapter; `From<io::Error>` unwraps it.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::other(e)
    }
}
