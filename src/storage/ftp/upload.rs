//! A data object streamed into one STOR: the upload holds its own control connection (others
//! go on meanwhile) and writes the segments into the open data connection as they come, so
//! nothing is spooled; commit checks the stored size and renames the temporary file into place.

use std::io::{BufWriter, Write};
use std::sync::Arc;

use suppaftp::FtpError;

use super::conn::{Conn, Transfer, broken};
use super::{Ftp, Repeat, ops, parent, temp_path};
use crate::error::{Error, Result};
use crate::storage::Upload;

type Data = BufWriter<Box<dyn Transfer>>;

/// Big writes, whatever size the parts arrive in.
const BUFFER: usize = 256 << 10;

pub(super) struct FtpUpload {
    ftp: Arc<Ftp>,
    path: String,
    temp: String,
    conn: Option<Conn>,
    /// `None` once committed or aborted.
    data: Option<Data>,
    next: u64,
    written: u64,
}

impl FtpUpload {
    /// Make the directory and open the STOR of a temporary file next to `path`.
    pub(super) fn start(ftp: Arc<Ftp>, path: String) -> Result<FtpUpload> {
        let temp = temp_path(&path);
        let what = || format!("starting the upload of {path}");
        let (conn, stream) = ftp.attempt(&what, Repeat::Yes, &mut |c| {
            if let Some(dir) = parent(&path) {
                ops::mkdirs(c, dir)?;
            }
            c.stor(&temp)
        })?;
        let data = Some(BufWriter::with_capacity(BUFFER, stream));
        Ok(FtpUpload { ftp, path, temp, conn: Some(conn), data, next: 0, written: 0 })
    }

    /// Append; `index` must be `next`, or `next - 1` when `part_of_open`.
    fn append(&mut self, index: u64, bytes: &[u8], part_of_open: bool) -> Result<()> {
        if index != self.next && !(part_of_open && index + 1 == self.next) {
            return Err(Error::storage(format!(
                "segment {index} of {} arrived out of order (expected {}; this is a bug in freezer)",
                self.path, self.next
            )));
        }
        let data = self.data.as_mut().ok_or_else(|| {
            Error::storage(format!("the upload of {} is already finished", self.path))
        })?;
        data.write_all(bytes).map_err(|e| {
            Error::storage(format!(
                "uploading {} to {}: the data connection failed: {e}",
                self.path,
                self.ftp.where_()
            ))
        })?;
        self.written += bytes.len() as u64;
        self.next = index + 1;
        Ok(())
    }

    /// Close the data connection and read the server's verdict on the transfer.
    fn finish(&mut self) -> std::result::Result<(), FtpError> {
        let Some(data) = self.data.take() else { return Ok(()) };
        let stream = data.into_inner().map_err(|e| FtpError::ConnectionError(e.into_error()))?;
        stream.finish()
    }

    /// The stored size must be what was sent, then the rename makes it visible.
    fn publish(&mut self) -> Result<()> {
        let (temp, path, written) = (self.temp.clone(), self.path.clone(), self.written);
        let what = || format!("storing {path}");
        let mut step = |c: &mut Conn| -> std::result::Result<Option<u64>, FtpError> {
            match c.size(&temp)? {
                Some(n) if n == written => c.ftp.rename(&temp, &path).map(|()| None),
                other => Ok(Some(other.unwrap_or(0))),
            }
        };
        let outcome = match self.conn.take() {
            Some(mut conn) => match step(&mut conn) {
                Err(e) if broken(&e) => self.ftp.call(&what, &mut step),
                Err(e) => {
                    self.ftp.give(conn);
                    Err(self.ftp.refused(&what(), &e))
                }
                Ok(v) => {
                    self.ftp.give(conn);
                    Ok(v)
                }
            },
            None => self.ftp.call(&what, &mut step),
        };
        match outcome? {
            None => Ok(()),
            Some(stored) => Err(Error::storage(format!(
                "uploading {path} to {}: the server stored {stored} bytes of {written}; the \
                 upload is removed, run the backup again (is the server's disk full?)",
                self.ftp.where_()
            ))),
        }
    }

    /// Best effort: remove the temporary file (and the backup's directory if that leaves it
    /// empty, as on an object store).
    fn remove_temp(&mut self) -> Result<()> {
        let (temp, path) = (self.temp.clone(), self.path.clone());
        let mut step = |c: &mut Conn| {
            ops::remove(c, &temp)?;
            if let Some(dir) = parent(&path) {
                // Another writer's file there keeps it.
                match c.ftp.rmdir(dir) {
                    Err(e) if broken(&e) => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        };
        let what = || format!("removing the unfinished upload {temp}");
        match self.conn.take() {
            Some(mut conn) => match step(&mut conn) {
                Ok(()) => {
                    self.ftp.give(conn);
                    Ok(())
                }
                Err(_) => self.ftp.call(&what, &mut step),
            },
            None => self.ftp.call(&what, &mut step),
        }
    }
}

impl Upload for FtpUpload {
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
        if let Err(e) = self.finish() {
            // The reply may be lost while the data arrived whole: the size check decides.
            if !broken(&e) {
                let err = self.ftp.refused(&format!("uploading {}", self.path), &e);
                let _ = self.remove_temp();
                return Err(err);
            }
            self.conn = None;
            log::debug!("FTP: the end of the upload of {} was not confirmed: {e}", self.path);
        }
        let published = self.publish();
        if published.is_err() {
            let _ = self.remove_temp();
        }
        published
    }

    fn abort(mut self: Box<Self>) -> Result<()> {
        if self.finish().is_err() {
            self.conn = None;
        }
        self.remove_temp()
    }
}

impl Drop for FtpUpload {
    /// Dropped without commit or abort (a panic): still no temporary file left, if the
    /// server lets us.
    fn drop(&mut self) {
        if self.data.is_some() {
            log::warn!("an upload of {} was neither committed nor aborted", self.path);
            if self.finish().is_err() {
                self.conn = None;
            }
            let _ = self.remove_temp();
        }
    }
}
