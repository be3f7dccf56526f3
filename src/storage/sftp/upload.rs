//! A data object being written: segments appended to a temporary file next to its key (with
//! WRITE requests pipelined), fsynced and renamed into place on commit.

use std::sync::Arc;

use super::Inner;
use super::io::Writer;
use crate::error::{Error, Result};
use crate::storage::Upload;

pub(super) struct SftpUpload {
    inner: Arc<Inner>,
    /// `None` once committed or aborted, so `Drop` knows there is nothing to clean.
    handle: Option<String>,
    writer: Writer,
    temp: String,
    path: String,
    next: u64,
}

impl SftpUpload {
    pub fn new(inner: Arc<Inner>, handle: String, temp: String, path: String) -> SftpUpload {
        let writer = Writer::new(handle.clone(), inner.remote.chunk);
        SftpUpload { inner, handle: Some(handle), writer, temp, path, next: 0 }
    }

    /// Append; `index` must be `next`, or `next - 1` when `part_of_open`.
    fn append(&mut self, index: u64, data: &[u8], part_of_open: bool) -> Result<()> {
        if index != self.next && !(part_of_open && index + 1 == self.next) {
            return Err(Error::storage(format!(
                "segment {index} of {} arrived out of order (expected {}; this is a bug in freezer)",
                self.path, self.next
            )));
        }
        if self.handle.is_none() {
            return Err(Error::storage(format!("upload of {} is already finished", self.path)));
        }
        let remote = &self.inner.remote;
        self.writer.write(remote, data).map_err(|e| remote.fail("cannot write", &self.temp, e))?;
        self.next = index + 1;
        Ok(())
    }

    /// Close the file and remove it, and its directory if that is left empty.
    fn remove(&mut self) -> Result<()> {
        let remote = &self.inner.remote;
        self.writer.drain(remote);
        if let Some(handle) = self.handle.take() {
            let _ = remote.close(&handle);
        }
        match remote.remove(&self.temp) {
            Err(e) if !super::is_absent(&e) => {
                return Err(remote.fail("cannot remove", &self.temp, e));
            }
            _ => {}
        }
        // The backup's directory, if nothing else is in it (as on an object store); another
        // writer's file there keeps it.
        if let Some((dir, _)) = self.path.rsplit_once('/') {
            let _ = remote.rmdir(dir);
        }
        Ok(())
    }
}

impl Upload for SftpUpload {
    fn put_segment(&mut self, index: u64, mut data: Vec<u8>) -> Result<Vec<u8>> {
        self.append(index, &data, false)?;
        data.clear();
        Ok(data)
    }

    fn streams(&self) -> bool {
        true
    }

    /// Parts of the segment begun last, or the first part of the next one.
    fn put_part(&mut self, index: u64, data: &[u8]) -> Result<()> {
        self.append(index, data, true)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        let Some(handle) = self.handle.clone() else {
            return Err(Error::storage(format!("upload of {} is already finished", self.path)));
        };
        let remote = &self.inner.remote;
        let done = self
            .writer
            .flush(remote)
            .and_then(|()| remote.fsync(&handle))
            .and_then(|()| {
                self.handle = None;
                remote.close(&handle)
            })
            .map_err(|e| remote.fail("cannot write", &self.temp, e))
            .and_then(|()| self.inner.replace(&self.temp, &self.path));
        if done.is_err() {
            let _ = self.remove();
        }
        log::debug!("stored {} ({} bytes)", self.path, self.writer.written());
        done
    }

    fn abort(mut self: Box<Self>) -> Result<()> {
        self.remove()
    }
}

impl Drop for SftpUpload {
    /// Dropped without commit or abort (a panic): still remove the temporary file.
    fn drop(&mut self) {
        if self.handle.is_some() {
            log::warn!("an upload of {} was neither committed nor aborted", self.path);
            let _ = self.remove();
        }
    }
}
