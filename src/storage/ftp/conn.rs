//! One FTP control connection: connect, `AUTH TLS` (never a silent fall back to plain FTP),
//! login, binary mode, passive data connections to the control connection's own address; and
//! the few commands the storage builds on (typed listings, whole reads, ranged reads).

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::client::Resumption;
use suppaftp::types::FileType;
use suppaftp::{FtpError, RustlsConnector, RustlsFtpStream, Status, TlsStream, TransferStream};

use crate::storage::swift::Secret;

/// Everything needed to open a control connection.
pub(super) struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    /// `None`: plain FTP; else TLS 1.2, and TLS 1.3 (see `tls::client_configs`).
    pub tls: Option<[Arc<ClientConfig>; 2]>,
    /// Set once the server refused TLS 1.2.
    pub tls13_only: AtomicBool,
    /// Connect, read and write timeout of every socket (a stall fails the call).
    pub timeout: Duration,
}

/// A logged-in control connection.
pub(super) struct Conn {
    pub ftp: RustlsFtpStream,
    /// The server lists with MLSD (else `LIST -a`).
    pub mlsd: bool,
    /// The login directory (`PWD`), where relative containers start.
    pub home: String,
    pub idle_since: Instant,
}

/// An open data transfer (suppaftp does not export its TLS stream type, so it is boxed).
pub(super) trait Transfer: Read + std::io::Write + Send {
    /// Close the data connection and read the server's reply on the transfer.
    fn finish(self: Box<Self>) -> Result<(), FtpError>;
}

impl<T: TlsStream + Send> Transfer for TransferStream<T> {
    fn finish(self: Box<Self>) -> Result<(), FtpError> {
        TransferStream::finish(*self)
    }
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub name: String,
    pub dir: bool,
}

/// Why connecting failed; the caller words the message with its own description.
pub(super) enum ConnectError {
    /// The server refused the user or password (530).
    Login(String),
    /// `AUTH TLS` was refused: the server has no FTPS.
    NoTls(String),
    /// The server's certificate is not trusted.
    Untrusted(String),
    /// Anything else (refused, timed out, dropped): worth a retry.
    Other(FtpError),
}

impl Server {
    /// Connect, secure (FTPS), log in, switch to binary.
    pub fn connect(&self) -> Result<Conn, ConnectError> {
        let socket =
            self.socket().map_err(|e| ConnectError::Other(FtpError::ConnectionError(e)))?;
        let mut ftp = RustlsFtpStream::connect_with_stream(socket).map_err(ConnectError::Other)?;
        let timeout = self.timeout;
        ftp = ftp.passive_stream_builder(move |addr| {
            let s =
                TcpStream::connect_timeout(&addr, timeout).map_err(FtpError::ConnectionError)?;
            set_timeouts(&s, timeout).map_err(FtpError::ConnectionError)?;
            Ok(s)
        });
        // Data connections go to the control connection's address whatever PASV says: a
        // server behind NAT works, and a hostile one cannot point us elsewhere.
        ftp.set_passive_nat_workaround(true);
        if let Some(configs) = &self.tls {
            let tls13 = self.tls13_only.load(Ordering::Relaxed);
            let base = &configs[usize::from(tls13)];
            // Sessions of this control connection only: vsftpd (and others) require a data
            // connection to resume its own control connection's TLS session, and each vsftpd
            // session process knows no other's.
            let mut config = ClientConfig::clone(base);
            config.resumption = Resumption::in_memory_sessions(64);
            ftp = ftp.into_secure(RustlsConnector::from(Arc::new(config)), &self.host).map_err(
                |e| match e {
                    FtpError::UnexpectedResponse(r) => ConnectError::NoTls(reply(&r)),
                    FtpError::ConnectionError(io) => match super::tls::untrusted(&io) {
                        Some(why) => ConnectError::Untrusted(why),
                        None if !tls13 && super::tls::version_refused(&io) => {
                            self.tls13_only.store(true, Ordering::Relaxed);
                            ConnectError::Other(FtpError::ConnectionError(io))
                        }
                        None => ConnectError::Other(FtpError::ConnectionError(io)),
                    },
                    other => ConnectError::Other(other),
                },
            )?;
        }
        match ftp.login(self.user.as_str(), self.password.expose()) {
            Ok(()) => {}
            Err(FtpError::UnexpectedResponse(r)) if r.status == Status::NotLoggedIn => {
                return Err(ConnectError::Login(reply(&r)));
            }
            Err(e) => return Err(ConnectError::Other(e)),
        }
        ftp.transfer_type(FileType::Binary).map_err(ConnectError::Other)?;
        let home = ftp.pwd().map_err(ConnectError::Other)?;
        // vsftpd has no MLSD; FEAT says who does. A server without FEAT lists with LIST.
        let mlsd = ftp.feat().map(|f| f.contains_key("MLSD")).unwrap_or(false);
        Ok(Conn { ftp, mlsd, home, idle_since: Instant::now() })
    }

    fn socket(&self) -> std::io::Result<TcpStream> {
        let mut last = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    set_timeouts(&s, self.timeout)?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the host name has no address")))
    }
}

fn set_timeouts(s: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)
}

/// A server reply as one line: `550 Failed to open file.`
pub(super) fn reply(r: &suppaftp::types::Response) -> String {
    r.as_string().unwrap_or_default().trim().to_string()
}

/// The reply code of a refusal, if `e` is one (from the text: suppaftp has no name for some,
/// such as 522).
pub(super) fn code(e: &FtpError) -> Option<u32> {
    match e {
        FtpError::UnexpectedResponse(r) => {
            r.body.get(..3).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| d.parse().ok())
        }
        _ => None,
    }
}

/// Whether the control connection is unusable after `e`: dropped, timed out, out of step, or
/// the server closing it (421). Other refusals (4xx/5xx) leave it usable.
pub(super) fn broken(e: &FtpError) -> bool {
    match e {
        FtpError::UnexpectedResponse(_) => code(e) == Some(421),
        _ => true,
    }
}

/// Whether `e` says the file or directory is not there (550; 450 on some servers).
pub(super) fn absent(e: &FtpError) -> bool {
    matches!(code(e), Some(550 | 450))
}

impl Conn {
    /// The entries of directory `dir` (absolute), without `.` and `..`; `None` when it is not
    /// a directory (absent, or a file).
    pub fn entries(&mut self, dir: &str) -> Result<Option<Vec<Entry>>, FtpError> {
        match self.ftp.cwd(dir) {
            Ok(()) => {}
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        // Listing the working directory, so a file never lists as itself; `-a` shows the
        // dot files (temporary names) a recursive delete must remove too.
        let lines = if self.mlsd { self.ftp.mlsd(None)? } else { self.ftp.list(Some("-a"))? };
        let mut out = Vec::with_capacity(lines.len());
        for line in &lines {
            let entry = if self.mlsd { parse_mlsd(line) } else { parse_list(line) };
            match entry {
                Some(e) if e.name == "." || e.name == ".." || e.name.contains('/') => {}
                Some(e) => out.push(e),
                None => log::debug!("FTP listing of {dir}: skipping the line {line:?}"),
            }
        }
        Ok(Some(out))
    }

    /// `RETR`: a transfer to read the file `path` from.
    pub fn retr(&mut self, path: &str) -> Result<Box<dyn Transfer>, FtpError> {
        Ok(Box::new(self.ftp.retr_as_stream(path)?))
    }

    /// `STOR`: a transfer to write the file `path` into.
    pub fn stor(&mut self, path: &str) -> Result<Box<dyn Transfer>, FtpError> {
        Ok(Box::new(self.ftp.put_with_stream(path)?))
    }

    /// The whole file, `None` if it is not there.
    pub fn get(&mut self, path: &str) -> Result<Option<Vec<u8>>, FtpError> {
        let mut stream = match self.retr(path) {
            Ok(s) => s,
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut data = Vec::new();
        let read = stream.read_to_end(&mut data);
        let finished = stream.finish();
        read.map_err(FtpError::ConnectionError)?;
        finished?;
        Ok(Some(data))
    }

    /// Up to `size` bytes from `offset` (REST + RETR). Stopping early closes the data
    /// connection, which the server answers with one reply (426, or 226 if it had sent it
    /// all), so the control connection stays in step.
    pub fn read_range(&mut self, path: &str, offset: u64, size: u64) -> Result<Vec<u8>, FtpError> {
        let at = usize::try_from(offset).map_err(|_| FtpError::BadResponse)?;
        self.ftp.resume_transfer(at)?;
        let mut stream = self.retr(path)?;
        let mut data = Vec::new();
        let read = (&mut stream).take(size).read_to_end(&mut data);
        let ended = read.is_ok() && (data.len() as u64) < size;
        let finished = stream.finish();
        read.map_err(FtpError::ConnectionError)?;
        match finished {
            Ok(()) => Ok(data),
            // Closed before the end of the file: the server says the transfer failed.
            Err(e) if !ended && matches!(code(&e), Some(426 | 451)) => Ok(data),
            Err(e) => Err(e),
        }
    }

    /// The size of a file; `None` if it is not a file.
    pub fn size(&mut self, path: &str) -> Result<Option<u64>, FtpError> {
        match self.ftp.size(path) {
            Ok(n) => Ok(Some(n as u64)),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// An MLSD line: `type=file;size=3;modify=…; name`.
fn parse_mlsd(line: &str) -> Option<Entry> {
    let (facts, name) = line.split_once(' ')?;
    let kind = facts
        .split(';')
        .find_map(|f| f.split_once('=').filter(|(k, _)| k.eq_ignore_ascii_case("type")))?
        .1
        .to_ascii_lowercase();
    let dir = match kind.as_str() {
        "dir" => true,
        "cdir" | "pdir" => return None,
        _ => false,
    };
    Some(Entry { name: name.to_string(), dir })
}

/// A `LIST` line, Unix (`drwxr-xr-x 2 u g 4096 Dec 02 18:27 name`) or DOS style.
fn parse_list(line: &str) -> Option<Entry> {
    use suppaftp::list::ListParser;
    let file = ListParser::parse_posix(line).or_else(|_| ListParser::parse_dos(line)).ok()?;
    Some(Entry { name: file.name().to_string(), dir: file.is_directory() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_lines() {
        let e = |name: &str, dir| Some(Entry { name: name.into(), dir });
        assert_eq!(parse_mlsd("type=dir;modify=20201019151930; sub dir"), e("sub dir", true));
        assert_eq!(parse_mlsd("Type=File;Size=3; a"), e("a", false));
        assert_eq!(parse_mlsd("type=cdir; ."), None);
        assert_eq!(
            parse_list("drwxr-xr-x    3 1002     1002   4096 Dec 02 18:27 0_10"),
            e("0_10", true)
        );
        assert_eq!(
            parse_list("-rw-r--r--    1 1002     1002     10 Dec 02 18:27 .data.tmp-1-2"),
            e(".data.tmp-1-2", false)
        );
        assert_eq!(parse_list("10-19-20  03:19PM  <DIR>  pub"), e("pub", true));
    }
}
