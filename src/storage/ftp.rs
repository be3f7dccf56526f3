//! FTP and FTPS storage (`--storage ftp`, `--storage ftps`): the container is a directory on
//! the server, holding freezer-agent 19's layout with `data` as one file, as the agent writes
//! it (and as local storage does).
//!
//! Unlike the agent (which spools a whole backup to local disk before one STOR), the data is
//! streamed: one STOR stays open for the whole upload, on a control connection of its own, and
//! the segments are written into it as they come. Every object is stored under a temporary name
//! in its final directory (`.<name>.tmp-…`, never listed) and renamed into place (RNFR/RNTO);
//! a failed upload deletes it. Reads of a segment are REST + RETR of its range.
//!
//! FTPS is explicit (`AUTH TLS`, then `PROT P` for data), with the server's certificate
//! checked; a server that refuses TLS is an error, never a fall back to plain FTP. Data
//! connections are always passive, and always to the control connection's address.
//!
//! The control connection is not shared: each call takes an idle logged-in connection from a
//! small pool (or opens one), so an upload, the lock's refresh and parallel segment reads each
//! have their own. A call whose connection drops (reset, timeout, 421) is repeated on a fresh
//! one, with backoff, up to `retries` times; every call is written so that repeating it is safe.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use suppaftp::FtpError;

use crate::error::{Error, ErrorKind, Result};
use crate::storage::swift::Secret;
use crate::storage::{SegmentRef, Storage, StorageWrite, Upload};

mod conn;
mod ops;
#[cfg(test)]
mod tests;
mod tls;
mod upload;

pub use tls::TlsOptions;

use conn::{Conn, ConnectError, Server, Transfer, broken};

/// Everything needed to reach one container.
#[derive(Clone, Debug)]
pub struct FtpOptions {
    /// Server host name or address (`--ftp-host`).
    pub host: String,
    /// Control port (`--ftp-port`, 21).
    pub port: u16,
    /// Login user (`--ftp-username`).
    pub user: String,
    /// Login password; never shown.
    pub password: Secret,
    /// `Some`: FTPS (explicit `AUTH TLS`); `None`: plain FTP.
    pub tls: Option<TlsOptions>,
    /// The remote directory: absolute, or relative to the login directory.
    pub container: String,
    /// A socket that sends or receives nothing this long fails the call.
    pub timeout: Duration,
    /// Repeats of a call whose connection dropped.
    pub retries: u32,
    /// Segments read at once on restore (each on its own connection).
    pub concurrency: usize,
}

/// An FTP or FTPS container; cheap to clone (the connections are shared).
#[derive(Clone)]
pub struct FtpStorage(Arc<Ftp>);

pub(crate) struct Ftp {
    server: Server,
    container: String,
    /// The container's absolute path, known after the first login.
    root: OnceLock<String>,
    idle: Mutex<Vec<Conn>>,
    retries: u32,
    concurrency: usize,
}

/// An idle connection older than this is checked with NOOP before use: servers close idle
/// sessions (vsftpd after 300 s), and a non-repeatable step should not be the one to find out.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(15);

impl FtpStorage {
    /// A storage for `opts`; nothing is sent until the first call.
    pub fn new(opts: FtpOptions) -> Result<FtpStorage> {
        let bad = |what: &str| Error::usage(format!("{what}; see --ftp-host and --container"));
        if opts.host.is_empty() {
            return Err(bad("--ftp-host is missing: give the FTP server's host name"));
        }
        if opts.user.is_empty() {
            return Err(bad("--ftp-username is missing: give the FTP user to log in as"));
        }
        let container = opts.container.trim_end_matches('/');
        let container =
            if container.is_empty() && opts.container.starts_with('/') { "/" } else { container };
        if container.is_empty() || container.contains(['\r', '\n', '\0']) {
            return Err(bad(&format!(
                "invalid FTP --container {:?}: give a directory on the server (absolute, or \
                 relative to the user's login directory)",
                opts.container
            )));
        }
        let tls = opts.tls.as_ref().map(tls::client_configs).transpose()?;
        let server = Server {
            host: opts.host,
            port: opts.port,
            user: opts.user,
            password: opts.password,
            tls,
            tls13_only: AtomicBool::new(false),
            timeout: opts.timeout.max(Duration::from_secs(1)),
        };
        Ok(FtpStorage(Arc::new(Ftp {
            server,
            container: container.to_string(),
            root: OnceLock::new(),
            idle: Mutex::new(Vec::new()),
            retries: opts.retries,
            concurrency: opts.concurrency.max(1),
        })))
    }

    /// Log in now, so that a wrong password or an untrusted certificate is reported first.
    pub fn connect(&self) -> Result<()> {
        self.0.root().map(|_| ())
    }
}

/// What a call does with a connection that dropped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Do it again on a fresh connection (the call is safe to repeat).
    Yes,
    /// Fail.
    No,
}

impl Ftp {
    fn scheme(&self) -> &'static str {
        if self.server.tls.is_some() { "ftps" } else { "ftp" }
    }

    /// `ftps://user@host:port/dir` (never the password).
    fn where_(&self) -> String {
        let s = &self.server;
        let dir = self.root.get().map_or(self.container.as_str(), String::as_str);
        let sep = if dir.starts_with('/') { "" } else { "/" };
        format!("{}://{}@{}:{}{sep}{dir}", self.scheme(), s.user, s.host, s.port)
    }

    /// The container's absolute path (logging in first if no call has yet).
    fn root(&self) -> Result<&str> {
        if let Some(root) = self.root.get() {
            return Ok(root);
        }
        let conn = self.attempt(&|| "logging in".into(), Repeat::Yes, &mut |_| Ok(()))?.0;
        self.give(conn);
        self.root.get().map(String::as_str).ok_or_else(|| Error::storage("no FTP root (a bug)"))
    }

    /// The absolute path of `key`.
    fn path(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(join(self.root()?, key))
    }

    /// A connection: an idle one that still answers, or a new one.
    fn take(&self) -> std::result::Result<Conn, (Error, bool)> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let Some(mut conn) = idle else { break };
            if conn.idle_since.elapsed() < CHECK_IDLE_AFTER || conn.ftp.noop().is_ok() {
                return Ok(conn);
            }
        }
        self.connect()
    }

    /// Back to the pool, for the next call.
    fn give(&self, mut conn: Conn) {
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.concurrency + 2 {
            idle.push(conn);
        }
    }

    /// A new logged-in connection; the error says whether trying again may help.
    fn connect(&self) -> std::result::Result<Conn, (Error, bool)> {
        let s = &self.server;
        let at = format!("{}:{}", s.host, s.port);
        let conn = self.server.connect().map_err(|e| match e {
            ConnectError::Login(reply) => (
                Error::usage(format!(
                    "FTP login to {at} as {} failed: the user or password is wrong ({reply}); \
                     check --ftp-username and the password (ftp_password in the --config \
                     file, or FREEZER_FTP_PASSWORD)",
                    s.user
                )),
                false,
            ),
            ConnectError::NoTls(reply) => (
                Error::usage(format!(
                    "the FTP server {at} does not offer FTPS (AUTH TLS was refused: {reply}); \
                     freezer never falls back to plain FTP: enable TLS on the server, or use \
                     --storage ftp on a network you trust"
                )),
                false,
            ),
            ConnectError::Untrusted(why) => (
                Error::usage(format!(
                    "the FTPS server {at}'s certificate is not trusted ({why}); give the CA \
                     that signed it (or the server's certificate) as a PEM file with \
                     --ftp-certfile, or add that CA to the system's trusted certificates"
                )),
                false,
            ),
            ConnectError::Other(e) => (
                Error::storage(format!(
                    "cannot reach the FTP server {at} as {}: {e}; check --ftp-host and \
                     --ftp-port, and that the server runs",
                    s.user
                )),
                true,
            ),
        })?;
        let root = self.root.get_or_init(|| {
            if self.container.starts_with('/') {
                self.container.clone()
            } else {
                join(&conn.home, &self.container)
            }
        });
        log::debug!("FTP: logged in to {at} as {}; container {root}", s.user);
        Ok(conn)
    }

    /// Run `op` on a connection and keep the connection; a dropped connection is replaced and
    /// `op` repeated (with backoff) when `repeat` says so.
    fn attempt<T>(
        &self,
        what: &dyn Fn() -> String,
        repeat: Repeat,
        op: &mut dyn FnMut(&mut Conn) -> std::result::Result<T, FtpError>,
    ) -> Result<(Conn, T)> {
        let mut tries = 0;
        loop {
            let failure = match self.take() {
                Ok(mut conn) => match op(&mut conn) {
                    Ok(value) => return Ok((conn, value)),
                    Err(e) if !broken(&e) => {
                        self.give(conn);
                        return Err(self.refused(&what(), &e));
                    }
                    Err(e) => self.dropped(&what(), &e),
                },
                Err((e, false)) => return Err(e),
                Err((e, true)) => e,
            };
            if repeat == Repeat::No || tries >= self.retries {
                return Err(failure);
            }
            tries += 1;
            log::warn!("{failure}; trying again ({tries} of {})", self.retries);
            std::thread::sleep(backoff(tries));
        }
    }

    /// [`Ftp::attempt`], then the connection goes back to the pool.
    fn call<T>(
        &self,
        what: &dyn Fn() -> String,
        op: &mut dyn FnMut(&mut Conn) -> std::result::Result<T, FtpError>,
    ) -> Result<T> {
        let (conn, value) = self.attempt(what, Repeat::Yes, op)?;
        self.give(conn);
        Ok(value)
    }

    /// The server refused (4xx/5xx): its reply is the message.
    fn refused(&self, what: &str, e: &FtpError) -> Error {
        let why = match e {
            FtpError::UnexpectedResponse(r) => conn::reply(r),
            other => other.to_string(),
        };
        Error::storage(format!("{what} in {}: the server answered {why}", self.where_()))
    }

    /// The connection dropped or timed out.
    fn dropped(&self, what: &str, e: &FtpError) -> Error {
        let e = match e {
            FtpError::ConnectionError(io) if io.kind() == io::ErrorKind::WouldBlock => {
                format!("no answer for {} s (--storage-timeout)", self.server.timeout.as_secs())
            }
            other => other.to_string(),
        };
        Error::storage(format!("{what} in {}: the connection failed: {e}", self.where_()))
    }
}

/// 0.25 s, doubling, at most 5 s.
fn backoff(tries: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << tries.min(5).saturating_sub(1)))
        .min(Duration::from_secs(5))
}

/// `dir/name`, for an absolute `dir` that may be `/`.
fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') { format!("{dir}{name}") } else { format!("{dir}/{name}") }
}

/// The directory holding `path`, if it has one.
fn parent(path: &str) -> Option<&str> {
    match path.rsplit_once('/')? {
        ("", _) if path.len() > 1 => Some("/"),
        ("", _) => None,
        (dir, _) => Some(dir),
    }
}

/// Keys are relative `/`-separated paths with no empty, `.`, `..` or temporary component, and
/// nothing that would end an FTP command line.
fn check_key(key: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::storage(format!("invalid storage key {key:?}: {why} (this is a bug in freezer)"))
    };
    if key.is_empty() || key.contains(['\r', '\n', '\0']) {
        return Err(bad("it is empty or holds a line break or NUL"));
    }
    for part in key.split('/') {
        match part {
            "" | "." | ".." => return Err(bad("it has an empty, '.' or '..' component")),
            _ if is_temp_name(part) => return Err(bad("it uses a temporary file name")),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `name` is one of our temporary names (`.<name>.tmp-…`), never listed.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// A fresh temporary path next to `path`; unique per process, call and clock tick.
fn temp_path(path: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    format!("{dir}/.{name}.tmp-{}-{n}{nanos:09}", std::process::id())
}

/// The directory whose creation (MKD, atomic) decides a [`StorageWrite::create_new`].
fn marker_path(path: &str) -> String {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    format!("{dir}/.{name}.tmp-excl")
}

impl Storage for FtpStorage {
    fn describe(&self) -> String {
        self.0.where_()
    }

    fn kind(&self) -> &'static str {
        self.0.scheme()
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir =
            if prefix.is_empty() { self.0.root()?.to_string() } else { self.0.path(prefix)? };
        let entries = self.0.call(&|| format!("listing {dir}"), &mut |c| c.entries(&dir))?;
        let mut names: Vec<String> = entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.name)
            .filter(|n| !is_temp_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        let path = self.0.path(key)?;
        self.0.call(&|| format!("checking {path}"), &mut |c| {
            Ok(c.size(&path)?.is_some() || ops::has_file(c, &path)?)
        })
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.0.path(key)?;
        self.0.call(&|| format!("reading {path}"), &mut |c| c.get(&path))
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.0.path(key)?;
        let what = || format!("reading {path}");
        let (conn, stream) = self.0.attempt(&what, Repeat::Yes, &mut |c| match c.retr(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if conn::absent(&e) => Ok(None),
            Err(e) => Err(e),
        })?;
        let Some(stream) = stream else {
            self.0.give(conn);
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("{key} is missing from {}", self.describe()),
            ));
        };
        Ok(Box::new(Download {
            ftp: Arc::clone(&self.0),
            path,
            conn: Some(conn),
            stream: Some(stream),
        }))
    }

    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>> {
        let path = self.0.path(key)?;
        let what = || format!("reading segment {} of {path}", segment.index);
        self.0.call(&what, &mut |c| c.read_range(&path, segment.offset, segment.size))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.0.path(key)?;
        self.0.call(&|| format!("checking the size of {path}"), &mut |c| c.size(&path))
    }

    fn parallel_reads(&self) -> usize {
        self.0.concurrency
    }

    fn container_exists(&self) -> Result<bool> {
        let root = self.0.root()?.to_string();
        self.0.call(&|| format!("checking {root}"), &mut |c| Ok(c.entries(&root)?.is_some()))
    }
}

impl StorageWrite for FtpStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.0.path(key)?;
        self.0.call(&|| format!("storing {path}"), &mut |c| ops::put(c, &path, data))
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        let path = self.0.path(key)?;
        Ok(Box::new(upload::FtpUpload::start(Arc::clone(&self.0), path)?))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.0.path(key)?;
        self.0.call(&|| format!("deleting {path}"), &mut |c| ops::remove(c, &path))
    }

    /// Atomic where the server's MKD is (vsftpd's is `mkdir(2)`): the object is stored under
    /// a temporary name, then a marker directory `.<name>.tmp-excl` is made next to the key,
    /// which fails if it exists, and only its maker renames the object into place; `delete`
    /// removes the marker after the object. A marker found without its object belongs to a
    /// create (or delete) in progress and is waited for; one still there after 10 s was left
    /// by a run that died between the two steps and is removed. Two runs that find the same
    /// such leftover at the same moment could both succeed: that needs a crash first.
    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        let path = self.0.path(key)?;
        self.0.call(&|| format!("creating {path}"), &mut |c| ops::create_new(c, &path, data))
    }
}

/// A whole data object streamed over its own connection; the connection is reused when the
/// transfer ends cleanly.
struct Download {
    ftp: Arc<Ftp>,
    path: String,
    conn: Option<Conn>,
    stream: Option<Box<dyn Transfer>>,
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(stream) = self.stream.as_mut() else { return Ok(0) };
        let n = stream.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("reading {} from {}: {e}", self.path, self.ftp.where_()),
            )
        })?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        let finished = self.stream.take().map_or(Ok(()), Transfer::finish);
        match finished {
            Ok(()) => {
                if let Some(conn) = self.conn.take() {
                    self.ftp.give(conn);
                }
                Ok(0)
            }
            Err(e) => Err(io::Error::other(format!(
                "reading {} from {}: the transfer did not complete: {e}",
                self.path,
                self.ftp.where_()
            ))),
        }
    }
}

impl Drop for Download {
    /// Stopped before the end: the server's reply (426) is read here, quietly; the connection
    /// is not reused.
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            let _ = stream.finish();
        }
    }
}
