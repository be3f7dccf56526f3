//! Segment stage of the backup stream: tar → compress → encrypt → **segment** → storage.
//!
//! [`Segmenter`] cuts the stream into segments of a fixed size and hands each to the storage's
//! [`Upload`] as it fills (or, to an upload that streams, piece by piece as it arrives), hashing
//! every segment with sha256 for the backup's metadata (one pass; the segments' hashes cover
//! every byte). On restore the fetcher checks each segment; [`VerifyingReader`] checks a
//! stream stored without segments (freezer-agent's, or ours from before) at its end.
//!
//! Every segment is `segment_size` bytes except the last, which is shorter but never empty.
//! An empty stream is stored as one empty segment, so every object has at least one segment
//! (an S3 multipart upload needs one part).

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::storage::Upload;

mod fetch;
#[cfg(test)]
mod tests;

pub(crate) use fetch::{Fetcher, VerifiedReader};

/// One stored segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// What was stored: the whole stream and each segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamReport {
    pub size: u64,
    /// Each segment's hash is the record: one pass over the data, and verify and restore
    /// check every byte through them (older backups also recorded the whole stream's).
    pub segments: Vec<SegmentInfo>,
}

/// A writer that stores its stream as numbered segments of an [`Upload`].
///
/// It holds at most one segment in memory. `flush` does nothing: a segment is stored when it
/// is full or at [`Segmenter::finish`], so that only the last one can be short.
pub struct Segmenter {
    upload: Box<dyn Upload>,
    segment_size: usize,
    buf: Vec<u8>,
    size: u64,
    segments: Vec<SegmentInfo>,
    /// The upload takes parts as they come: no buffer, the open segment hashed as it passes.
    streaming: bool,
    part_hash: Sha256,
    part_len: usize,
}

impl Segmenter {
    /// Cut what is written into segments of `segment_size` bytes (at least 1).
    pub fn new(upload: Box<dyn Upload>, segment_size: usize) -> Segmenter {
        let segment_size = segment_size.max(1);
        let upload_streams = upload.streams();
        Segmenter {
            upload,
            segment_size,
            // Grows up to one segment; reserving a 128 MiB segment for a tiny stream is waste.
            buf: Vec::new(),
            size: 0,
            segments: Vec::new(),
            streaming: upload_streams,
            part_hash: Sha256::new(),
            part_len: 0,
        }
    }

    /// Streaming: close the open segment.
    fn end_part(&mut self) {
        self.segments.push(SegmentInfo {
            size: self.part_len as u64,
            sha256: hex::encode(self.part_hash.finalize_reset()),
        });
        self.part_len = 0;
    }

    /// Streaming: pass `data` on as part of the open segment, opening the next when full.
    fn write_part(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.part_len >= self.segment_size {
            self.end_part();
        }
        let n = data.len().min(self.segment_size - self.part_len);
        let index = self.segments.len() as u64;
        self.upload.put_part(index, &data[..n])?;
        self.part_hash.update(&data[..n]);
        self.part_len += n;
        self.size += n as u64;
        Ok(n)
    }

    /// Store the last segment and return the report with the upload, which the caller commits
    /// once the rest of the backup is written. If storing fails, the upload is aborted.
    pub fn finish(mut self) -> Result<(StreamReport, Box<dyn Upload>)> {
        if self.streaming {
            if self.size == 0 {
                // An empty stream is still one (empty) segment.
                self.upload.put_part(0, &[])?;
            }
            if self.part_len > 0 || self.segments.is_empty() {
                self.end_part();
            }
            let report = StreamReport { size: self.size, segments: self.segments };
            return Ok((report, self.upload));
        }
        let last_due = !self.buf.is_empty() || self.segments.is_empty();
        if last_due && let Err(e) = self.put() {
            if let Err(abort) = self.upload.abort() {
                log::warn!("could not discard the partly written backup data: {abort}");
            }
            return Err(e);
        }
        let report = StreamReport { size: self.size, segments: self.segments };
        Ok((report, self.upload))
    }

    /// Hand `buf` to the upload as the next segment, and fill the buffer it hands back next.
    fn put(&mut self) -> Result<()> {
        let index = self.segments.len() as u64;
        let info = SegmentInfo {
            size: self.buf.len() as u64,
            sha256: hex::encode(Sha256::digest(&self.buf)),
        };
        let full = std::mem::take(&mut self.buf);
        let mut next = self.upload.put_segment(index, full)?;
        next.clear();
        self.buf = next;
        self.segments.push(info);
        Ok(())
    }
}

impl Write for Segmenter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.streaming {
            return self.write_part(data);
        }
        // Store a full segment before taking more, so an error consumes nothing of `data`.
        if self.buf.len() >= self.segment_size {
            self.put()?;
        }
        let n = data.len().min(self.segment_size - self.buf.len());
        if self.buf.len() + n > self.buf.capacity() {
            // Double as Vec would, but never past one segment.
            let want = (self.buf.capacity() * 2).max(self.buf.len() + n).min(self.segment_size);
            self.buf.reserve_exact(want - self.buf.len());
        }
        self.buf.extend_from_slice(&data[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader over a stored stream that checks, at its end, the size and sha256 recorded at
/// backup time. A mismatch reads as an error of kind [`crate::ErrorKind::Corrupt`].
///
/// A consumer that stops before the end (a tar reader stops at the end-of-archive blocks)
/// must call [`VerifyingReader::finish`], which reads the rest and checks it.
pub struct VerifyingReader<R> {
    inner: R,
    /// `(size, sha256 hex)`; `None` when the backup recorded none (freezer-agent's).
    expected: Option<(u64, String)>,
    what: String,
    hash: Sha256,
    size: u64,
    /// The verdict, once the end was reached: `None` if the data matched.
    done: Option<Option<String>>,
}

impl<R: Read> VerifyingReader<R> {
    /// Check `inner` against `expected` (`(size, sha256 hex)`); `what` names the data in
    /// messages, e.g. `backup host_etc level 2 (1700000000)`.
    pub fn new(inner: R, expected: Option<(u64, String)>, what: String) -> Self {
        VerifyingReader { inner, expected, what, hash: Sha256::new(), size: 0, done: None }
    }

    /// Read to the end, check, and return the inner reader.
    pub fn finish(mut self) -> Result<R> {
        match io::copy(&mut self, &mut io::sink()) {
            Ok(_) => Ok(self.inner),
            // Ours (damaged data, a storage error): it already says what failed.
            Err(e) if e.get_ref().is_some_and(|inner| inner.is::<Error>()) => Err(e.into()),
            Err(e) => Err(Error::io(format!("cannot read the stored data of {}", self.what), e)),
        }
    }

    fn damaged(&self, problem: &str) -> io::Error {
        Error::corrupt(format!(
            "stored data of {} is damaged: {problem}; restore from another backup or \
             re-run this one",
            self.what
        ))
        .into()
    }

    /// At the end of the data: compare with what was recorded.
    fn verdict(&self) -> Option<String> {
        let (size, sha256) = self.expected.as_ref()?;
        if self.size != *size {
            return Some(format!("{} bytes read where {size} were stored", self.size));
        }
        let got = hex::encode(self.hash.clone().finalize());
        (!got.eq_ignore_ascii_case(sha256))
            .then(|| format!("sha256 mismatch (expected {sha256}, read {got})"))
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(verdict) = &self.done {
            return match verdict {
                None => Ok(0),
                Some(problem) => Err(self.damaged(problem)),
            };
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let verdict = self.verdict();
            self.done = Some(verdict);
            return self.read(buf);
        }
        self.size += n as u64;
        if let Some((size, _)) = &self.expected {
            if self.size > *size {
                // Say so now rather than after reading an unbounded stream.
                let problem = format!("more than the {size} bytes stored");
                self.done = Some(Some(problem.clone()));
                return Err(self.damaged(&problem));
            }
            self.hash.update(&buf[..n]);
        }
        Ok(n)
    }
}
