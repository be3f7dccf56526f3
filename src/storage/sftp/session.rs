//! One SSH connection and its SFTP channel, driven by a private tokio runtime: connecting,
//! logging in, and the SFTP requests the storage is made of. Reads and writes of a file are
//! pipelined (several requests in flight), because one request at a time is bound by the
//! round trip, not by the link.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use russh::client;
use russh::keys::PrivateKeyWithHashAlg;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::runtime::Runtime;

use super::hostkey::{Checker, ConnectError, HostKeys};
use super::{SftpAuth, SftpOptions};
use crate::error::{Error, Result};

/// Bytes per READ or WRITE request: OpenSSH's sftp-server takes up to 255 KiB (its limits).
const MAX_CHUNK: u32 = 255 * 1024;
/// READ requests in flight per file: enough to keep a fast link busy (our window is 16 MiB;
/// writes keep fewer, see `io.rs`).
const IN_FLIGHT: usize = 16;
/// Ciphers in our order of preference.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];
/// The SSH channel window: how much the server may send before we acknowledge.
const WINDOW: u32 = 16 << 20;

/// The SFTP server's extensions that the storage uses.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Extensions {
    /// `posix-rename@openssh.com`: a rename that replaces the target atomically.
    pub posix_rename: bool,
    /// `hardlink@openssh.com`: link(2), which fails if the target exists.
    pub hardlink: bool,
    /// `fsync@openssh.com`.
    pub fsync: bool,
}

/// A logged-in SFTP session.
pub(super) struct Remote {
    rt: Runtime,
    raw: Arc<RawSftpSession>,
    ssh: client::Handle<Checker>,
    pub ext: Extensions,
    pub chunk: u32,
    /// The login directory, absolute.
    pub home: String,
    /// `user@host:port`, for messages.
    pub at: String,
}

impl Remote {
    /// Connect, check the host key, log in and start SFTP.
    pub fn connect(opts: &SftpOptions) -> Result<Remote> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("freezer-ssh")
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the SSH client's threads", e))?;
        let at = format!("{}@{}:{}", opts.username, opts.host, opts.port);
        let secs = opts.timeout.as_secs();
        let (ssh, raw, ext, chunk) = rt
            .block_on(async { tokio::time::timeout(opts.timeout, establish(opts, &at)).await })
            .map_err(|_| {
                Error::storage(format!(
                    "the SSH server {at} did not complete the login within {secs} s; check \
                     --ssh-host and --ssh-port"
                ))
            })??;
        let raw = Arc::new(raw);
        let mut remote = Remote { rt, raw, ssh, ext, chunk, home: String::new(), at };
        let home = remote.run(|raw| async move { raw.realpath(".").await });
        remote.home = home
            .map_err(|e| remote.fail("cannot find the login directory", ".", e))?
            .files
            .into_iter()
            .next()
            .map(|f| f.filename)
            .unwrap_or_else(|| "/".into());
        Ok(remote)
    }

    /// Run `f` with the session on the runtime and wait for it.
    pub fn run<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(Arc<RawSftpSession>) -> Fut,
        Fut: Future<Output = T>,
    {
        self.rt.block_on(f(Arc::clone(&self.raw)))
    }

    /// Start `f` on the runtime without waiting.
    pub fn spawn<F, Fut, T>(&self, f: F) -> tokio::task::JoinHandle<T>
    where
        F: FnOnce(Arc<RawSftpSession>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.rt.spawn(f(Arc::clone(&self.raw)))
    }

    /// Wait for a spawned request.
    pub fn wait<T>(
        &self,
        job: tokio::task::JoinHandle<Result<T, SftpError>>,
    ) -> Result<T, SftpError> {
        self.rt.block_on(job).unwrap_or_else(|e| {
            Err(SftpError::UnexpectedBehavior(format!("a request failed: {e}")))
        })
    }

    /// An error for `what` on `path`, with advice where there is some.
    pub fn fail(&self, what: &str, path: &str, e: SftpError) -> Error {
        let hint = match &e {
            SftpError::Status(s) if s.status_code == StatusCode::PermissionDenied => {
                format!("; check that {} may write there", self.at)
            }
            SftpError::Timeout => "; the server did not answer in time (--storage-timeout)".into(),
            _ => String::new(),
        };
        Error::storage(format!("{what} {path} on sftp://{}: {e}{hint}", self.at))
    }

    /// `path`'s attributes (following symlinks), `None` if it does not exist.
    pub fn stat(&self, path: &str) -> Result<Option<FileAttributes>, SftpError> {
        let p = path.to_string();
        absent_is_none(self.run(|raw| async move { raw.stat(p).await.map(|a| a.attrs) }))
    }

    /// `path`'s attributes (not following symlinks), `None` if it does not exist.
    pub fn lstat(&self, path: &str) -> Result<Option<FileAttributes>, SftpError> {
        let p = path.to_string();
        absent_is_none(self.run(|raw| async move { raw.lstat(p).await.map(|a| a.attrs) }))
    }

    /// The entries of a directory (without `.` and `..`); `None` if it is absent or a file.
    pub fn read_dir(&self, path: &str) -> Result<Option<Vec<(String, FileAttributes)>>, SftpError> {
        let p = path.to_string();
        absent_is_none(self.run(|raw| async move {
            let handle = raw.opendir(p).await?.handle;
            let mut out = Vec::new();
            let listed = loop {
                match raw.readdir(handle.as_str()).await {
                    Ok(name) => out.extend(
                        name.files
                            .into_iter()
                            .filter(|f| f.filename != "." && f.filename != "..")
                            .map(|f| (f.filename, f.attrs)),
                    ),
                    Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break Ok(out),
                    Err(e) => break Err(e),
                }
            };
            let _ = raw.close(handle).await;
            listed
        }))
    }

    /// Open `path`; its handle.
    pub fn open(&self, path: &str, flags: OpenFlags) -> Result<String, SftpError> {
        let p = path.to_string();
        self.run(|raw| async move {
            raw.open(p, flags, FileAttributes::empty()).await.map(|h| h.handle)
        })
    }

    pub fn close(&self, handle: &str) -> Result<(), SftpError> {
        let h = handle.to_string();
        self.run(|raw| async move { raw.close(h).await.map(|_| ()) })
    }

    /// Close without waiting (from `Drop`).
    pub fn close_later(&self, handle: String) {
        drop(self.spawn(|raw| async move { raw.close(handle).await }));
    }

    pub fn fsync(&self, handle: &str) -> Result<(), SftpError> {
        if !self.ext.fsync {
            return Ok(());
        }
        let h = handle.to_string();
        self.run(|raw| async move { raw.fsync(h).await.map(|_| ()) })
    }

    /// Up to `len` bytes from `offset` (fewer at the end of the file), read with several
    /// requests in flight.
    pub fn read_range(&self, handle: &str, offset: u64, len: u64) -> Result<Vec<u8>, SftpError> {
        let (h, chunk) = (handle.to_string(), self.chunk);
        self.run(|raw| read_range(raw, h, offset, len, chunk))
    }

    pub fn remove(&self, path: &str) -> Result<(), SftpError> {
        let p = path.to_string();
        self.run(|raw| async move { raw.remove(p).await.map(|_| ()) })
    }

    pub fn rmdir(&self, path: &str) -> Result<(), SftpError> {
        let p = path.to_string();
        self.run(|raw| async move { raw.rmdir(p).await.map(|_| ()) })
    }

    pub fn mkdir(&self, path: &str) -> Result<(), SftpError> {
        let p = path.to_string();
        self.run(|raw| async move { raw.mkdir(p, FileAttributes::empty()).await.map(|_| ()) })
    }

    /// Rename, replacing `to` atomically (`posix-rename@openssh.com`).
    pub fn posix_rename(&self, from: &str, to: &str) -> Result<(), SftpError> {
        let mut data = Vec::new();
        for s in [from, to] {
            data.extend_from_slice(&(s.len() as u32).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        self.run(|raw| async move {
            match raw.extended("posix-rename@openssh.com", data).await? {
                russh_sftp::protocol::Packet::Status(s) if s.status_code == StatusCode::Ok => {
                    Ok(())
                }
                russh_sftp::protocol::Packet::Status(s) => Err(SftpError::Status(s)),
                _ => Err(SftpError::UnexpectedPacket),
            }
        })
    }

    /// SFTP's own rename, which fails when `to` exists.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), SftpError> {
        let (f, t) = (from.to_string(), to.to_string());
        self.run(|raw| async move { raw.rename(f, t).await.map(|_| ()) })
    }

    /// A hard link `to` → `from`; fails when `to` exists.
    pub fn hardlink(&self, from: &str, to: &str) -> Result<(), SftpError> {
        let (f, t) = (from.to_string(), to.to_string());
        self.run(|raw| async move { raw.hardlink(f, t).await.map(|_| ()) })
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.raw.close_session();
        let ssh = &self.ssh;
        let bye = ssh.disconnect(russh::Disconnect::ByApplication, "", "en");
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(2), bye).await });
    }
}

/// `Ok(None)` for "no such file".
fn absent_is_none<T>(r: Result<T, SftpError>) -> Result<Option<T>, SftpError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the server said the path (or a parent) does not exist.
pub(super) fn is_absent(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

/// A sliding window of reads: `IN_FLIGHT` requests of `chunk` bytes, taken in order. A short
/// reply (allowed by the protocol before the end) restarts the window after it.
async fn read_range(
    raw: Arc<RawSftpSession>,
    handle: String,
    offset: u64,
    len: u64,
    chunk: u32,
) -> Result<Vec<u8>, SftpError> {
    let end = offset.saturating_add(len);
    let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
    let mut next = offset;
    let mut pending = VecDeque::new();
    loop {
        while pending.len() < IN_FLIGHT && next < end {
            let n = (end - next).min(u64::from(chunk)) as u32;
            let (raw, h, at) = (Arc::clone(&raw), handle.clone(), next);
            pending.push_back((at, n, tokio::spawn(async move { raw.read(h, at, n).await })));
            next += u64::from(n);
        }
        let Some((at, n, job)) = pending.pop_front() else { return Ok(out) };
        let reply = job
            .await
            .unwrap_or_else(|e| Err(SftpError::UnexpectedBehavior(format!("a read failed: {e}"))));
        match reply {
            Ok(data) if !data.data.is_empty() => {
                out.extend_from_slice(&data.data);
                if data.data.len() < n as usize {
                    pending.clear();
                    next = at + data.data.len() as u64;
                }
            }
            Ok(_) => return Ok(out),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// TCP, key exchange, host key check, login, SFTP init.
async fn establish(
    opts: &SftpOptions,
    at: &str,
) -> Result<(client::Handle<Checker>, RawSftpSession, Extensions, u32)> {
    let keys = HostKeys {
        host: opts.host.clone(),
        port: opts.port,
        file: opts.known_hosts.clone(),
        accept_new: opts.accept_new_host_key,
    };
    let preferred = russh::Preferred {
        key: keys.preferred().into(),
        // AES-GCM first: AES-NI makes it several times cheaper than ChaCha20 on both ends.
        cipher: CIPHERS.into(),
        ..Default::default()
    };
    let config = Arc::new(client::Config {
        preferred,
        window_size: WINDOW,
        keepalive_interval: Some(std::time::Duration::from_secs(15)),
        keepalive_max: 4,
        nodelay: true,
        ..Default::default()
    });
    let addr = (opts.host.as_str(), opts.port);
    let mut ssh = client::connect(config, addr, Checker(keys)).await.map_err(|e| match e {
        ConnectError::Ours(e) => e,
        ConnectError::Ssh(russh::Error::IO(e)) => Error::io(
            format!(
                "cannot connect to the SSH server {}:{} (check --ssh-host and --ssh-port, and \
                 that sshd runs there)",
                opts.host, opts.port
            ),
            e,
        ),
        ConnectError::Ssh(e) => Error::storage(format!("SSH connection to {at} failed: {e}")),
    })?;
    login(&mut ssh, opts, at).await?;
    let ssh_fail = |e: russh::Error| {
        Error::storage(format!(
            "cannot start SFTP on {at}: {e}; the server must offer the sftp subsystem"
        ))
    };
    let channel = ssh.channel_open_session().await.map_err(ssh_fail)?;
    channel.request_subsystem(true, "sftp").await.map_err(ssh_fail)?;
    let cfg = russh_sftp::client::Config {
        request_timeout_secs: opts.timeout.as_secs().max(1),
        ..Default::default()
    };
    let raw = RawSftpSession::new_with_config(channel.into_stream(), cfg);
    let sftp_fail = |e: SftpError| Error::storage(format!("cannot start SFTP on {at}: {e}"));
    let version = raw.init().await.map_err(sftp_fail)?;
    let has = |name: &str| version.extensions.contains_key(name);
    let ext = Extensions {
        posix_rename: has("posix-rename@openssh.com"),
        hardlink: has("hardlink@openssh.com"),
        fsync: has("fsync@openssh.com"),
    };
    let mut chunk = 32 * 1024;
    if has("limits@openssh.com") {
        let limits = raw.limits().await.map_err(sftp_fail)?;
        chunk =
            limits.max_write_len.min(limits.max_read_len).clamp(4096, u64::from(MAX_CHUNK)) as u32;
    }
    Ok((ssh, raw, ext, chunk))
}

/// Log in with the password, or with the first key file that exists and is accepted.
async fn login(ssh: &mut client::Handle<Checker>, opts: &SftpOptions, at: &str) -> Result<()> {
    let fail = |e: russh::Error| Error::storage(format!("SSH login to {at} failed: {e}"));
    match &opts.auth {
        SftpAuth::Password(password) => {
            let r = ssh.authenticate_password(&opts.username, password.expose()).await;
            if r.map_err(fail)?.success() {
                return Ok(());
            }
            Err(Error::storage(format!(
                "SSH login to {at} with a password was refused: check --ssh-username and the \
                 password (--ssh-password, from a --config file or FREEZER_SSH_PASSWORD)"
            )))
        }
        SftpAuth::Keys(files) => {
            let existing: Vec<&Path> =
                files.iter().map(|p| p.as_path()).filter(|p| p.exists()).collect();
            if existing.is_empty() {
                let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                return Err(Error::usage(format!(
                    "no SSH key to log in to {at} with: {} does not exist; give --ssh-key FILE \
                     (or a password)",
                    names.join(" or ")
                )));
            }
            for file in &existing {
                let key = russh::keys::load_secret_key(file, None).map_err(|e| {
                    Error::usage(format!(
                        "cannot use the SSH key {}: {e}; freezer needs an unencrypted private \
                         key (OpenSSH or PEM format)",
                        file.display()
                    ))
                })?;
                let hash = match key.algorithm() {
                    russh::keys::Algorithm::Rsa { .. } => {
                        ssh.best_supported_rsa_hash().await.map_err(fail)?.flatten()
                    }
                    _ => None,
                };
                let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
                if ssh.authenticate_publickey(&opts.username, key).await.map_err(fail)?.success() {
                    return Ok(());
                }
                log::debug!("{at} refused the key {}", file.display());
            }
            let names: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
            Err(Error::storage(format!(
                "SSH login to {at} with the key {} was refused: check --ssh-username, and that \
                 the key's .pub line is in that user's ~/.ssh/authorized_keys on the server",
                names.join(", ")
            )))
        }
    }
}
