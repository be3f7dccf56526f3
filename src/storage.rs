//! Where backups live. Every storage implements [`Storage`] (read) and [`StorageWrite`];
//! restore, list and verify take only `&dyn Storage`, so they cannot delete anything.
//!
//! Keys are `/`-separated paths relative to the container, in freezer-agent 19's layout
//! (see [`crate::catalog::Layout`]). A backup's data stream reaches the storage as numbered
//! segments through an [`Upload`]: Swift stores each as its own object and uploads several at
//! once, S3 takes them as the parts of one multipart upload, SFTP and local append them to one
//! file. Nothing is visible under the final key until [`Upload::commit`]; a failed backup calls
//! [`Upload::abort`], which removes what was written.
//!
//! Reads of a data object go segment by segment ([`Storage::read_segment`]) where the backup
//! recorded its segments, so a network storage retries one segment, not the whole stream, and
//! restore checks each segment before using it.

use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};

pub mod ftp;
pub(crate) mod http;
pub mod local;
pub mod multi;
mod parallel;
pub mod s3;
pub mod sftp;
pub mod swift;

#[cfg(test)]
mod suite;

/// Where one segment of a data object lies: its number (from 0), its offset in the stream
/// and its size, as the backup's metadata recorded them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentRef {
    /// Numbered from 0.
    pub index: u64,
    /// Bytes before it in the stream.
    pub offset: u64,
    /// Its recorded size.
    pub size: u64,
    /// Its recorded sha256, where the caller has it (a storage with copies picks a good one).
    pub sha256: Option<[u8; 32]>,
}

/// What a storage can hold, checked before a backup starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Largest segment (object or part) in bytes.
    pub max_segment_size: Option<u64>,
    /// Smallest segment but the last (S3's 5 MiB parts).
    pub min_segment_size: Option<u64>,
    /// Most segments in one data object (S3's 10,000 parts).
    pub max_segments: Option<u64>,
}

/// Read access to a container.
pub trait Storage: Send + Sync {
    /// Where this is, for messages: e.g. `local directory /var/backups/freezer`.
    fn describe(&self) -> String;

    /// The `--storage` name of this kind of storage: `local`, `swift`.
    fn kind(&self) -> &'static str;

    /// Names directly under `prefix` (a "directory" key, no trailing `/`), sorted; empty when
    /// the prefix does not exist. Names of objects still being written are not listed.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Whether an object (or a "directory" with something under it) exists at `key`.
    fn exists(&self, key: &str) -> Result<bool>;

    /// Read a small object whole (metadata, engine_metadata); `None` when it does not exist.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stream a data object, its segments joined in order (for backups that recorded no
    /// segments: freezer-agent's).
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>>;

    /// The stored bytes of one segment of the data object `key`, whole. They may be fewer (or
    /// more) than `segment.size` when the object is damaged; the caller checks.
    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>>;

    /// Size in bytes of an object (a data object: all its segments); `None` if absent.
    fn size(&self, key: &str) -> Result<Option<u64>>;

    /// How many segments to read at once on restore: more hides a network's latency.
    fn parallel_reads(&self) -> usize {
        1
    }

    /// Whether the container itself exists (a directory, a Swift container).
    fn container_exists(&self) -> Result<bool>;

    /// What this storage can hold.
    fn limits(&self) -> Result<Limits> {
        Ok(Limits::default())
    }
}

/// Write access to a container.
pub trait StorageWrite: Storage {
    /// Store a small object so that it is visible whole or not at all.
    fn put(&self, key: &str, data: &[u8]) -> Result<()>;

    /// Start writing the data object `key` segment by segment.
    fn create(&self, key: &str) -> Result<Box<dyn Upload>>;

    /// Delete the object `key`, or everything under it if it is a "directory".
    fn delete(&self, key: &str) -> Result<()>;

    /// Store a small object only if nothing is at `key`; whether it was stored. Atomic on
    /// every storage that has a conditional write (O_EXCL or a link locally, `If-None-Match`
    /// on Swift and S3); a storage without one says so in its documentation.
    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool>;
}

/// A data object being written; segments arrive numbered from 0, in order.
///
/// A failed backup calls [`Upload::abort`]; one dropped without commit or abort (a panic)
/// only logs, since removing remote data needs requests that `Drop` cannot report on.
pub trait Upload: Send {
    /// Store segment `index`, taking its buffer; returns an empty buffer to fill next (one
    /// handed back by an earlier segment, so memory stays at the storage's segments in flight).
    /// A storage that uploads in the background may report a failed earlier segment here.
    fn put_segment(&mut self, index: u64, data: Vec<u8>) -> Result<Vec<u8>>;

    /// Whether segments may arrive piece by piece ([`Upload::put_part`]) instead of whole. A
    /// file can take them so, which keeps the data in the CPU cache on its way and memory at a
    /// few chunks; an object store needs whole segments.
    fn streams(&self) -> bool {
        false
    }

    /// Append `data` to segment `index` (only when [`Upload::streams`]): parts of a segment
    /// arrive in order, and segments in order.
    fn put_part(&mut self, index: u64, data: &[u8]) -> Result<()> {
        let _ = (index, data);
        Err(Error::storage("this storage takes whole segments only (a bug in freezer)"))
    }

    /// Wait for every segment, then make the object visible under its key, durably (fsync,
    /// manifest, completed upload).
    fn commit(self: Box<Self>) -> Result<()>;

    /// Remove what was written; called when the backup fails.
    fn abort(self: Box<Self>) -> Result<()>;
}

/// An [`Upload`] shared by a pipeline and the backup that started it: the pipeline writes
/// through one handle; when it fails and is dropped, the backup still holds the other and
/// aborts the upload explicitly.
#[derive(Clone)]
pub(crate) struct SharedUpload(Arc<Mutex<Option<Box<dyn Upload>>>>);

impl SharedUpload {
    /// Share `upload`.
    pub(crate) fn new(upload: Box<dyn Upload>) -> SharedUpload {
        SharedUpload(Arc::new(Mutex::new(Some(upload))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut dyn Upload) -> Result<T>) -> Result<T> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut() {
            Some(upload) => f(upload.as_mut()),
            None => Err(Error::storage("the upload is already finished (a bug in freezer)")),
        }
    }

    fn take(&self) -> Option<Box<dyn Upload>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Abort the upload unless it was committed or aborted already.
    pub(crate) fn abort_if_open(&self) -> Result<()> {
        match self.take() {
            Some(upload) => upload.abort(),
            None => Ok(()),
        }
    }
}

impl Upload for SharedUpload {
    fn put_segment(&mut self, index: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        self.with(|u| u.put_segment(index, data))
    }

    fn streams(&self) -> bool {
        self.with(|u| Ok(u.streams())).unwrap_or(false)
    }

    fn put_part(&mut self, index: u64, data: &[u8]) -> Result<()> {
        self.with(|u| u.put_part(index, data))
    }

    fn commit(self: Box<Self>) -> Result<()> {
        match self.take() {
            Some(upload) => upload.commit(),
            None => Err(Error::storage("the upload is already finished (a bug in freezer)")),
        }
    }

    fn abort(self: Box<Self>) -> Result<()> {
        self.abort_if_open()
    }
}

/// A shared storage is a storage: the lock, the backup and the prune after it use one.
impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        (**self).list(prefix)
    }
    fn exists(&self, key: &str) -> Result<bool> {
        (**self).exists(key)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        (**self).get(key)
    }
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        (**self).open(key)
    }
    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>> {
        (**self).read_segment(key, segment)
    }
    fn size(&self, key: &str) -> Result<Option<u64>> {
        (**self).size(key)
    }
    fn parallel_reads(&self) -> usize {
        (**self).parallel_reads()
    }
    fn container_exists(&self) -> Result<bool> {
        (**self).container_exists()
    }
    fn limits(&self) -> Result<Limits> {
        (**self).limits()
    }
}

impl<S: StorageWrite + ?Sized> StorageWrite for Arc<S> {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        (**self).put(key, data)
    }
    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        (**self).create(key)
    }
    fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key)
    }
    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        (**self).create_new(key, data)
    }
}

/// A small object that must exist, e.g. a backup's snapshot: absent is an error naming it.
pub(crate) fn get_required(storage: &dyn Storage, key: &str) -> Result<Vec<u8>> {
    storage.get(key)?.ok_or_else(|| {
        Error::new(
            crate::ErrorKind::Corrupt,
            format!("{key} is missing from {}", storage.describe()),
        )
    })
}

/// The segments recorded in a backup's metadata, with their offsets.
pub(crate) fn segment_refs(sizes: impl IntoIterator<Item = u64>) -> Vec<SegmentRef> {
    let mut offset = 0;
    sizes
        .into_iter()
        .enumerate()
        .map(|(i, size)| {
            let r = SegmentRef { index: i as u64, offset, size, sha256: None };
            offset += size;
            r
        })
        .collect()
}

/// A storage that asks a hook before each call, so tests can make chosen calls fail.
#[cfg(test)]
pub(crate) struct Hooked<S> {
    pub inner: S,
    /// Called with the operation and key; an error is returned instead of doing it.
    #[allow(clippy::type_complexity)]
    pub hook: Box<dyn Fn(Op, &str) -> Result<()> + Send + Sync>,
}

/// The calls a [`Hooked`] storage reports.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    List,
    Exists,
    Get,
    Open,
    /// With the segment's offset.
    ReadSegment(u64),
    Size,
    Put,
    Create,
    Delete,
    CreateNew,
}

#[cfg(test)]
impl<S: Storage> Storage for Hooked<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        (self.hook)(Op::List, prefix)?;
        self.inner.list(prefix)
    }
    fn exists(&self, key: &str) -> Result<bool> {
        (self.hook)(Op::Exists, key)?;
        self.inner.exists(key)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        (self.hook)(Op::Get, key)?;
        self.inner.get(key)
    }
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        (self.hook)(Op::Open, key)?;
        self.inner.open(key)
    }
    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>> {
        (self.hook)(Op::ReadSegment(segment.offset), key)?;
        self.inner.read_segment(key, segment)
    }
    fn size(&self, key: &str) -> Result<Option<u64>> {
        (self.hook)(Op::Size, key)?;
        self.inner.size(key)
    }
    fn container_exists(&self) -> Result<bool> {
        self.inner.container_exists()
    }
}

#[cfg(test)]
impl<S: StorageWrite> StorageWrite for Hooked<S> {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        (self.hook)(Op::Put, key)?;
        self.inner.put(key, data)
    }
    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        (self.hook)(Op::Create, key)?;
        self.inner.create(key)
    }
    fn delete(&self, key: &str) -> Result<()> {
        (self.hook)(Op::Delete, key)?;
        self.inner.delete(key)
    }
    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        (self.hook)(Op::CreateNew, key)?;
        self.inner.create_new(key, data)
    }
}
