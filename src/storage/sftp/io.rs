//! Pipelined file I/O over SFTP: a [`Writer`] keeps several WRITE requests in flight (their
//! replies are checked in order as the window slides), a [`Reader`] streams a file in windows
//! of several READ requests.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use russh_sftp::client::error::Error as SftpError;
use tokio::task::JoinHandle;

use super::Inner;
use super::session::Remote;

/// WRITE requests in flight: 4 of up to 255 KiB stay inside OpenSSH's 2 MiB channel window;
/// measured 10 % faster than 16 for a 300 MiB backup on 127.0.0.1 (medians of 7 runs: 1.35 s
/// against 1.51 s).
const WRITES_IN_FLIGHT: usize = 4;

/// Appends to an open file at increasing offsets.
pub(super) struct Writer {
    handle: String,
    chunk: usize,
    /// Offset of the next request.
    offset: u64,
    /// Small writes gathered into one request.
    buf: Vec<u8>,
    pending: VecDeque<JoinHandle<Result<(), SftpError>>>,
}

impl Writer {
    pub fn new(handle: String, chunk: u32) -> Writer {
        let chunk = chunk as usize;
        Writer {
            handle,
            chunk,
            offset: 0,
            buf: Vec::with_capacity(chunk),
            pending: VecDeque::new(),
        }
    }

    /// Bytes handed to this writer so far.
    pub fn written(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    /// Queue `data`; waits only when `WRITES_IN_FLIGHT` requests are unanswered. An error may
    /// be an earlier request's.
    pub fn write(&mut self, remote: &Remote, mut data: &[u8]) -> Result<(), SftpError> {
        while !data.is_empty() {
            if self.buf.is_empty() && data.len() >= self.chunk {
                // Whole chunks go out without a copy into `buf`.
                let (now, rest) = data.split_at(self.chunk);
                self.send(remote, now.to_vec())?;
                data = rest;
                continue;
            }
            let n = (self.chunk - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == self.chunk {
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
                self.send(remote, full)?;
            }
        }
        Ok(())
    }

    fn send(&mut self, remote: &Remote, data: Vec<u8>) -> Result<(), SftpError> {
        while self.pending.len() >= WRITES_IN_FLIGHT {
            self.wait_one(remote)?;
        }
        let (handle, offset) = (self.handle.clone(), self.offset);
        self.offset += data.len() as u64;
        let job =
            remote.spawn(|raw| async move { raw.write(handle, offset, data).await.map(|_| ()) });
        self.pending.push_back(job);
        Ok(())
    }

    fn wait_one(&mut self, remote: &Remote) -> Result<(), SftpError> {
        match self.pending.pop_front() {
            Some(job) => remote.wait(job),
            None => Ok(()),
        }
    }

    /// Send what is gathered and wait for every reply.
    pub fn flush(&mut self, remote: &Remote) -> Result<(), SftpError> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.send(remote, rest)?;
        }
        while !self.pending.is_empty() {
            self.wait_one(remote)?;
        }
        Ok(())
    }

    /// Wait for the requests in flight, ignoring their results (before removing the file).
    pub fn drain(&mut self, remote: &Remote) {
        self.buf.clear();
        while !self.pending.is_empty() {
            let _ = self.wait_one(remote);
        }
    }
}

/// Bytes fetched per window when streaming a file.
const WINDOW: u64 = 8 << 20;

/// A remote file read front to back; the handle is closed when dropped.
pub(super) struct Reader {
    inner: Arc<Inner>,
    handle: Option<String>,
    path: String,
    offset: u64,
    data: io::Cursor<Vec<u8>>,
    eof: bool,
}

impl Reader {
    pub fn new(inner: Arc<Inner>, handle: String, path: String) -> Reader {
        let data = io::Cursor::new(Vec::new());
        Reader { inner, handle: Some(handle), path, offset: 0, data, eof: false }
    }
}

impl io::Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.data.read(buf)?;
            if n > 0 || buf.is_empty() || self.eof {
                return Ok(n);
            }
            let Some(handle) = self.handle.as_deref() else { return Ok(0) };
            let remote = &self.inner.remote;
            let data = remote
                .read_range(handle, self.offset, WINDOW)
                .map_err(|e| io::Error::from(remote.fail("cannot read", &self.path, e)))?;
            self.eof = (data.len() as u64) < WINDOW;
            self.offset += data.len() as u64;
            self.data = io::Cursor::new(data);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.inner.remote.close_later(handle);
        }
    }
}
