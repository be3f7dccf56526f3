//! Checking the stored bytes of one backup against the sizes and hashes its metadata recorded.
//!
//! The stream is read once: [`Shared`] hands the bytes on to the content walk (decrypt,
//! decompress, tar) while [`Checker`] takes them segment by segment (as recorded at backup
//! time) and hashes each and the whole stream. After a short or missing segment the content
//! walk sees the end of the stream, but the remaining segments are still checked; whatever the
//! walk leaves unread is drained afterwards, so a content error early on still gets every
//! segment checked.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::catalog::{BackupMeta, SegmentMeta};
use crate::segment::Fetcher;

/// Where the stored bytes come from.
pub(super) enum Source {
    /// The recorded segments, fetched ahead.
    Segments(Fetcher),
    /// Segments given whole (tests).
    #[cfg(test)]
    Given(std::collections::VecDeque<Vec<u8>>),
    /// One stream: a backup that recorded no segments (freezer-agent's).
    Whole(Box<dyn Read + Send>),
}

/// Hashes a stored stream segment by segment as it is read.
pub(super) struct Checker {
    source: Source,
    segments: Vec<SegmentMeta>,
    /// The size of the stored object, if the storage could say.
    stored_size: Option<u64>,
    /// The segment being handed on and how much of it has been.
    current: Vec<u8>,
    pos: usize,
    /// Bytes stored for each segment taken so far.
    got: Vec<u64>,
    /// Indexes of complete segments whose hash differs.
    mismatched: Vec<usize>,
    /// A short segment was met: the content walk sees the end there.
    content_ended: bool,
    total: u64,
    /// Only for backups that recorded a whole-stream hash (before segments were enough).
    total_hash: Option<Sha256>,
    /// The storage failed while reading: where and why.
    read_error: Option<String>,
}

impl Checker {
    pub(super) fn new(source: Source, meta: &BackupMeta, stored_size: Option<u64>) -> Checker {
        Checker {
            source,
            segments: meta.segments.clone().unwrap_or_default(),
            stored_size,
            current: Vec::new(),
            pos: 0,
            got: Vec::new(),
            mismatched: Vec::new(),
            content_ended: false,
            total: 0,
            total_hash: meta.data_sha256.as_ref().map(|_| Sha256::new()),
            read_error: None,
        }
    }

    /// Bytes read so far.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// Whether the storage failed while reading (the content walk's error then only echoes it).
    pub(super) fn failed(&self) -> bool {
        self.read_error.is_some()
    }

    /// Read what is left, to the end (or until SIGTERM/SIGINT, which the caller checks).
    pub(super) fn drain(&mut self) {
        let mut buf = vec![0u8; 64 << 10];
        while self.read_error.is_none() && crate::interrupt::received().is_none() {
            if self.content_ended {
                // No more content to hand on, but every segment is still checked.
                match self.next_segment() {
                    Ok(true) => continue,
                    _ => break,
                }
            }
            match self.read(&mut buf) {
                Ok(0) if !self.content_ended => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Recorded by `read`, reported by `problems`.
                Err(_) => break,
            }
        }
    }

    /// Take the next recorded segment and check it; `false` after the last.
    fn next_segment(&mut self) -> Result<bool, String> {
        let index = self.got.len();
        let Some(seg) = self.segments.get(index) else { return Ok(false) };
        // The fetcher's threads have hashed the segment already; given parts are hashed here.
        let (data, intact) = match &mut self.source {
            Source::Segments(f) => match f.next_segment() {
                Some(Ok(fetched)) => (fetched.data, fetched.problem.is_none()),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Ok(false),
            },
            #[cfg(test)]
            Source::Given(parts) => {
                let data = parts.pop_front().unwrap_or_default();
                let intact = hex::encode(Sha256::digest(&data)).eq_ignore_ascii_case(&seg.sha256);
                (data, intact)
            }
            Source::Whole(_) => return Ok(false),
        };
        self.got.push(data.len() as u64);
        self.total += data.len() as u64;
        if let Some(h) = &mut self.total_hash {
            h.update(&data);
        }
        if data.len() as u64 == seg.size {
            if !intact {
                self.mismatched.push(index);
            }
        } else {
            self.content_ended = true;
        }
        self.current = data;
        self.pos = 0;
        Ok(true)
    }

    /// What is wrong with the stream, once read to the end: one message per problem, without
    /// the backup's name (the caller prefixes it).
    pub(super) fn problems(&mut self, meta: &BackupMeta) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.read_error {
            out.push(format!("reading the data failed after {} bytes: {e}", self.total));
            return out;
        }
        let count = self.segments.len();
        let sum: u64 = self.segments.iter().map(|s| s.size).sum();
        if count > 0 && meta.data_size.is_some_and(|size| size != sum) {
            out.push(format!(
                "the metadata is inconsistent: its segments add up to {sum} bytes but data_size \
                 says {}",
                meta.data_size.unwrap_or_default()
            ));
        }
        for &i in &self.mismatched {
            let start: u64 = self.segments[..i].iter().map(|s| s.size).sum();
            let end = start + self.segments[i].size;
            out.push(format!(
                "segment {i} of {count} (numbered from 0; bytes {start}..{end}): sha256 mismatch"
            ));
        }
        let recorded = meta.data_size.or_else(|| (count > 0).then_some(sum));
        let Some(recorded) = recorded else {
            return out;
        };
        let stored = self.stored_size.unwrap_or(self.total);
        if stored < recorded || self.total < recorded {
            let stored = stored.min(self.total);
            let mut msg = format!(
                "data is {} bytes shorter than recorded ({stored} of {recorded} bytes)",
                recorded - stored
            );
            msg.push_str(&self.first_short(count));
            out.push(msg);
        } else if stored > recorded {
            out.push(format!(
                "data is {} bytes longer than recorded ({stored} bytes, {recorded} recorded)",
                stored - recorded
            ));
        } else if let (Some(expected), Some(hash)) = (&meta.data_sha256, &self.total_hash) {
            let got = hex::encode(hash.clone().finalize());
            // With every segment matching, a whole-stream mismatch means the metadata itself
            // is inconsistent; with a segment mismatch it is already said.
            if self.mismatched.is_empty() && !got.eq_ignore_ascii_case(expected) {
                out.push(format!("data sha256 mismatch (recorded {expected}, read {got})"));
            }
        }
        out
    }

    /// `; segment 3 of 5 (numbered from 0) is incomplete…` for the first short segment.
    fn first_short(&self, count: usize) -> String {
        let Some(i) =
            (0..count).find(|&i| self.got.get(i).copied().unwrap_or(0) < self.segments[i].size)
        else {
            return String::new();
        };
        let what =
            if self.got.get(i).copied().unwrap_or(0) > 0 { "is incomplete" } else { "is missing" };
        let mut msg = format!("; segment {i} of {count} (numbered from 0) {what}");
        let rest_missing = (i + 1..count).all(|j| self.got.get(j).copied().unwrap_or(0) == 0);
        if i + 1 < count && rest_missing {
            msg.push_str(", and every one after it is missing");
        }
        msg
    }
}

impl Read for Checker {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.read_error {
            return Err(io::Error::other(e.clone()));
        }
        if let Source::Whole(inner) = &mut self.source {
            return match inner.read(buf) {
                Ok(n) => {
                    self.total += n as u64;
                    if let Some(h) = &mut self.total_hash {
                        h.update(&buf[..n]);
                    }
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
                Err(e) => {
                    self.read_error = Some(e.to_string());
                    Err(e)
                }
            };
        }
        while self.pos >= self.current.len() {
            if self.content_ended {
                return Ok(0);
            }
            match self.next_segment() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    self.read_error = Some(e.clone());
                    return Err(io::Error::other(e));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A [`Checker`] that the content walk reads through (it may own its reader: the decrypt hook
/// takes a `'static` box) while verify keeps a handle to drain and judge it afterwards.
#[derive(Clone)]
pub(super) struct Shared(Arc<Mutex<Checker>>);

impl Shared {
    pub(super) fn new(checker: Checker) -> Shared {
        Shared(Arc::new(Mutex::new(checker)))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Checker> {
        // A panic while reading cannot leave the hashes half-updated in a way that matters
        // more than the panic itself; take the data either way.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.lock().read(buf)
    }
}
