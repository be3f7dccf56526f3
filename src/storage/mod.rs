//! Where backups live. Every storage implements [`Storage`] (read) and [`StorageWrite`];
//! restore, list and verify take only `&dyn Storage`, so they cannot delete anything.
//!
//! Keys are `/`-separated paths relative to the container, in freezer-agent 19's layout
//! (see [`crate::catalog::Layout`]). A backup's data stream reaches the storage as numbered
//! segments through an [`Upload`]: Swift stores each as its own object and uploads several at
//! once, S3 takes them as the parts of one multipart upload, SFTP and local append them to one
//! file. Nothing is visible under the final key until [`Upload::commit`].

use std::io::Read;

use crate::error::Result;

pub mod local;

/// Read access to a container.
pub trait Storage: Send + Sync {
    /// Where this is, for messages: e.g. `local directory /var/backups/freezer`.
    fn describe(&self) -> String;

    /// Names directly under `prefix` (a "directory" key, no trailing `/`), sorted; empty when
    /// the prefix does not exist. Names of objects still being written are not listed.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Whether an object (or a "directory" with something under it) exists at `key`.
    fn exists(&self, key: &str) -> Result<bool>;

    /// Read a small object whole (metadata, engine_metadata).
    fn get(&self, key: &str) -> Result<Vec<u8>>;

    /// Stream a data object, its segments joined in order.
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>>;

    /// Size in bytes of an object. The default reads it through; storages that can ask
    /// should override it.
    fn size(&self, key: &str) -> Result<u64> {
        let mut r = self.open(key)?;
        std::io::copy(&mut r, &mut std::io::sink())
            .map_err(|e| crate::Error::io(format!("cannot read {key} in {}", self.describe()), e))
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

    /// Store a small object only if nothing is at `key`; whether it was stored. Storages with
    /// an atomic form (O_EXCL, a conditional PUT) override this default, which leaves a window
    /// between the check and the write in which another writer can get in too.
    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        if self.exists(key)? {
            return Ok(false);
        }
        self.put(key, data)?;
        Ok(true)
    }
}

/// A data object being written; segments arrive numbered from 0, in order.
pub trait Upload: Send {
    /// Store segment `index`. The pipeline reuses `data` after this returns.
    fn put_segment(&mut self, index: u64, data: &[u8]) -> Result<()>;

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
        Err(crate::Error::storage("this storage takes whole segments only (a bug in freezer)"))
    }

    /// Make the object visible under its key, durably (fsync, manifest, complete upload).
    fn commit(self: Box<Self>) -> Result<()>;

    /// Drop what was written; called when the backup fails.
    fn abort(self: Box<Self>) -> Result<()>;
}
