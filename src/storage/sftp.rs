//! SFTP storage (`--storage ssh`): the container is a directory on an SSH server, holding the
//! keys as files in freezer-agent 19's layout (as local storage does); a data object is one file
//! with its segments appended in order.
//!
//! Over one SSH connection (russh, ring) and one SFTP channel, driven by a runtime the storage
//! owns; the trait methods block on it. Every object is written under a temporary name in its
//! final directory (`.<name>.tmp-<pid>-<n>`, never listed) and renamed into place with
//! `posix-rename@openssh.com`, so a half-written backup is never visible. Host keys are checked
//! against known_hosts ([`hostkey`]).

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::OpenFlags;

use crate::error::{Error, Result};
use crate::storage::local::{check_key, is_temp_name};
use crate::storage::swift::Secret;
use crate::storage::{SegmentRef, Storage, StorageWrite, Upload};

mod hostkey;
mod io;
mod session;
#[cfg(test)]
mod tests;
mod upload;

use io::{Reader, Writer};
use session::{Remote, is_absent};
use upload::SftpUpload;

/// How to log in.
#[derive(Clone, Debug)]
pub enum SftpAuth {
    /// A password (freezer-agent's `--ssh-password`).
    Password(Secret),
    /// Private key files, tried in order; missing ones are skipped.
    Keys(Vec<PathBuf>),
}

/// Everything needed to reach one remote directory.
#[derive(Clone, Debug)]
pub struct SftpOptions {
    /// Server name or address, as known_hosts records it.
    pub host: String,
    /// TCP port (22).
    pub port: u16,
    /// The login name.
    pub username: String,
    /// Password or keys.
    pub auth: SftpAuth,
    /// The known_hosts file the server's key is checked against.
    pub known_hosts: PathBuf,
    /// Add an unknown host key to `known_hosts` instead of refusing it (a changed key is
    /// refused all the same).
    pub accept_new_host_key: bool,
    /// The remote directory: absolute, or relative to the login directory.
    pub container: String,
    /// Segments read at once on restore.
    pub parallel_reads: usize,
    /// Longest wait for the login and for any one request.
    pub timeout: Duration,
}

/// A directory on an SFTP server; cheap to clone (one connection, shared).
#[derive(Clone)]
pub struct SftpStorage(Arc<Inner>);

struct Inner {
    remote: Remote,
    /// The container's absolute path, without a trailing `/` (`/` itself is empty).
    root: String,
    parallel_reads: usize,
}

impl SftpStorage {
    /// Connect and log in now, so that a refused host key or password is reported first.
    pub fn connect(opts: &SftpOptions) -> Result<SftpStorage> {
        let container = opts.container.trim_end_matches('/');
        if opts.container.is_empty() {
            return Err(Error::usage("the SFTP container is empty; give a remote directory"));
        }
        if opts.host.is_empty() || opts.username.is_empty() {
            return Err(Error::usage(
                "--storage ssh needs --ssh-host and --ssh-username (freezer-agent's options)",
            ));
        }
        let remote = Remote::connect(opts)?;
        let root = match container.starts_with('/') || opts.container.starts_with('/') {
            true => container.to_string(),
            false => format!("{}/{container}", remote.home.trim_end_matches('/')),
        };
        let parallel_reads = opts.parallel_reads.max(1);
        Ok(SftpStorage(Arc::new(Inner { remote, root, parallel_reads })))
    }

    /// The container's absolute path on the server.
    pub fn root(&self) -> &str {
        if self.0.root.is_empty() { "/" } else { &self.0.root }
    }

    /// Without the atomic rename and link extensions, as a server that lacks them.
    #[cfg(test)]
    fn without_extensions(mut self) -> SftpStorage {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.remote.ext = session::Extensions::default();
        }
        self
    }
}

impl Inner {
    /// The remote path of `key`, after checking it cannot leave the root.
    fn path(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(format!("{}/{key}", self.root))
    }

    fn dir_path(&self, prefix: &str) -> Result<String> {
        match prefix.is_empty() {
            true => Ok(if self.root.is_empty() { "/".into() } else { self.root.clone() }),
            false => self.path(prefix),
        }
    }

    fn fail(&self, what: &str, path: &str, e: SftpError) -> Error {
        self.remote.fail(what, path, e)
    }

    /// Create `dir` and its missing parents.
    fn mkdir_p(&self, dir: &str) -> Result<()> {
        if dir.is_empty() || dir == "/" {
            return Ok(());
        }
        match self.remote.stat(dir) {
            Ok(Some(a)) if a.is_dir() => return Ok(()),
            Ok(Some(_)) => {
                return Err(Error::storage(format!(
                    "{dir} on {} is a file, not a directory; check --container",
                    self.remote.at
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(self.fail("cannot check", dir, e)),
        }
        if let Some((parent, _)) = dir.rsplit_once('/') {
            self.mkdir_p(parent)?;
        }
        match self.remote.mkdir(dir) {
            Ok(()) => Ok(()),
            // Made meanwhile by another writer.
            Err(_) if self.remote.stat(dir).ok().flatten().is_some_and(|a| a.is_dir()) => Ok(()),
            Err(e) => Err(self.fail("cannot create the directory", dir, e)),
        }
    }

    /// Make the parent directory of `path` and return a fresh temporary name next to it.
    fn prepare(&self, path: &str) -> Result<String> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        self.mkdir_p(dir)?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        Ok(format!("{dir}/.{name}.tmp-{}-{n}{nanos:09}", std::process::id()))
    }

    /// Create `path`, failing if it exists; its handle.
    fn create_excl(&self, path: &str) -> Result<String, SftpError> {
        self.remote.open(path, OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE)
    }

    /// Write `data` to the new file `path` open as `handle`, durably, and close it.
    fn fill(&self, handle: String, path: &str, data: &[u8]) -> Result<()> {
        let mut w = Writer::new(handle.clone(), self.remote.chunk);
        let written = w
            .write(&self.remote, data)
            .and_then(|()| w.flush(&self.remote))
            .and_then(|()| self.remote.fsync(&handle));
        let closed = self.remote.close(&handle);
        written.and(closed).map_err(|e| self.fail("cannot write", path, e))
    }

    /// Write `data` to a new file `temp`, durably.
    fn write_new(&self, temp: &str, data: &[u8]) -> Result<()> {
        let handle = self.create_excl(temp).map_err(|e| self.fail("cannot create", temp, e))?;
        self.fill(handle, temp, data)
    }

    /// Move `temp` to `path`, replacing what is there. Atomic with `posix-rename@openssh.com`;
    /// without it, the old object is removed first (a moment with no object at `path`).
    fn replace(&self, temp: &str, path: &str) -> Result<()> {
        let renamed = match self.remote.ext.posix_rename {
            true => self.remote.posix_rename(temp, path),
            false => self.remote.rename(temp, path).or_else(|e| match self.remote.lstat(path) {
                Ok(Some(_)) => {
                    log::debug!(
                        "{} has no posix-rename: replacing {path} in two steps",
                        self.remote.at
                    );
                    self.remote.remove(path).and_then(|()| self.remote.rename(temp, path))
                }
                _ => Err(e),
            }),
        };
        renamed.map_err(|e| self.fail(&format!("cannot rename {temp} to"), path, e))
    }

    /// Remove `path` and everything under it; symlinks are removed, never followed.
    fn remove_tree(&self, path: &str) -> Result<()> {
        let entries = match self.remote.read_dir(path) {
            Ok(Some(entries)) => entries,
            Ok(None) => return Ok(()),
            Err(e) => return Err(self.fail("cannot list", path, e)),
        };
        for (name, attrs) in entries {
            let child = format!("{path}/{name}");
            if attrs.is_dir() {
                self.remove_tree(&child)?;
            } else {
                match self.remote.remove(&child) {
                    Err(e) if !is_absent(&e) => return Err(self.fail("cannot delete", &child, e)),
                    _ => {}
                }
            }
        }
        match self.remote.rmdir(path) {
            Err(e) if !is_absent(&e) => Err(self.fail("cannot delete the directory", path, e)),
            _ => Ok(()),
        }
    }

    /// Whether `dir` holds a file (not a temporary one) at any depth: empty directories left
    /// by a failed backup do not count, as on an object store.
    fn has_file(&self, dir: &str) -> Result<bool> {
        let entries = self.remote.read_dir(dir).map_err(|e| self.fail("cannot list", dir, e))?;
        for (name, attrs) in entries.unwrap_or_default() {
            if is_temp_name(&name) {
                continue;
            }
            if !attrs.is_dir() || self.has_file(&format!("{dir}/{name}"))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Open `path` for reading; `None` if it does not exist.
    fn open_read(&self, path: &str) -> Result<Option<String>> {
        match self.remote.open(path, OpenFlags::READ) {
            Ok(h) => Ok(Some(h)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(self.fail("cannot open", path, e)),
        }
    }

    /// `len` bytes of `path` from `offset` (fewer at its end); `None` if it does not exist.
    fn read(&self, path: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        let Some(handle) = self.open_read(path)? else { return Ok(None) };
        let data = self.remote.read_range(&handle, offset, len);
        let _ = self.remote.close(&handle);
        data.map(Some).map_err(|e| self.fail("cannot read", path, e))
    }
}

impl Storage for SftpStorage {
    fn describe(&self) -> String {
        format!("SFTP directory {} on {}", self.root(), self.0.remote.at)
    }

    fn kind(&self) -> &'static str {
        "ssh"
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.0.dir_path(prefix)?;
        let entries =
            self.0.remote.read_dir(&dir).map_err(|e| self.0.fail("cannot list", &dir, e))?;
        let mut names: Vec<String> = entries
            .unwrap_or_default()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !is_temp_name(name))
            .collect();
        names.sort();
        Ok(names)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        let path = self.0.path(key)?;
        match self.0.remote.lstat(&path) {
            Ok(Some(a)) if a.is_dir() => self.0.has_file(&path),
            Ok(Some(_)) => Ok(true),
            Ok(None) => Ok(false),
            Err(e) => Err(self.0.fail("cannot check", &path, e)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.0.path(key)?;
        self.0.read(&path, 0, u64::MAX)
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.0.path(key)?;
        let handle = self
            .0
            .open_read(&path)?
            .ok_or_else(|| Error::corrupt(format!("{key} is missing from {}", self.describe())))?;
        Ok(Box::new(Reader::new(Arc::clone(&self.0), handle, path)))
    }

    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>> {
        let path = self.0.path(key)?;
        let data = self.0.read(&path, segment.offset, segment.size)?;
        data.ok_or_else(|| Error::corrupt(format!("{key} is missing from {}", self.describe())))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.0.path(key)?;
        let attrs = self.0.remote.stat(&path).map_err(|e| self.0.fail("cannot check", &path, e))?;
        Ok(attrs.map(|a| a.size.unwrap_or(0)))
    }

    fn parallel_reads(&self) -> usize {
        self.0.parallel_reads
    }

    fn container_exists(&self) -> Result<bool> {
        let root = self.root().to_string();
        let attrs = self.0.remote.stat(&root).map_err(|e| self.0.fail("cannot check", &root, e))?;
        Ok(attrs.is_some_and(|a| a.is_dir()))
    }
}

impl StorageWrite for SftpStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.0.path(key)?;
        let temp = self.0.prepare(&path)?;
        let stored = self.0.write_new(&temp, data).and_then(|()| self.0.replace(&temp, &path));
        if stored.is_err() {
            let _ = self.0.remote.remove(&temp);
        }
        stored
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        let path = self.0.path(key)?;
        let temp = self.0.prepare(&path)?;
        let handle =
            self.0.create_excl(&temp).map_err(|e| self.0.fail("cannot create", &temp, e))?;
        Ok(Box::new(SftpUpload::new(Arc::clone(&self.0), handle, temp, path)))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.0.path(key)?;
        match self.0.remote.lstat(&path) {
            Ok(Some(a)) if a.is_dir() => self.0.remove_tree(&path),
            Ok(Some(_)) => match self.0.remote.remove(&path) {
                Err(e) if !is_absent(&e) => Err(self.0.fail("cannot delete", &path, e)),
                _ => Ok(()),
            },
            Ok(None) => Ok(()),
            Err(e) => Err(self.0.fail("cannot check", &path, e)),
        }
    }

    /// Atomic: with `hardlink@openssh.com` (OpenSSH), the object is written whole under a
    /// temporary name and linked to its key, which fails if the key exists, so readers never
    /// see it half written; without it, the key is opened with CREATE|EXCL and written.
    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        let path = self.0.path(key)?;
        // Makes the directory; the temporary name is only used with the link.
        let temp = self.0.prepare(&path)?;
        let r = &self.0.remote;
        let exists = || r.lstat(&path).map_err(|e| self.0.fail("cannot check", &path, e));
        if !r.ext.hardlink {
            let handle = match self.0.create_excl(&path) {
                Ok(h) => h,
                Err(_) if exists()?.is_some() => return Ok(false),
                Err(e) => return Err(self.0.fail("cannot create", &path, e)),
            };
            let filled = self.0.fill(handle, &path, data);
            if filled.is_err() {
                let _ = r.remove(&path);
            }
            return filled.map(|()| true);
        }
        let linked = self.0.write_new(&temp, data).map(|()| r.hardlink(&temp, &path));
        let _ = r.remove(&temp);
        match linked? {
            Ok(()) => Ok(true),
            Err(_) if exists()?.is_some() => Ok(false),
            Err(e) => Err(self.0.fail(&format!("cannot link {temp} to"), &path, e)),
        }
    }
}
