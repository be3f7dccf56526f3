//! Checking the stored bytes of one backup against the sizes and hashes its metadata recorded.
//!
//! The stream is read once: [`Shared`] hands the bytes on to the content walk (decrypt,
//! decompress, tar) while [`Checker`] splits them at the recorded segment sizes and hashes each
//! segment and the whole stream. Whatever the walk leaves unread is drained afterwards, so a
//! content error early on still gets every segment checked.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::catalog::{BackupMeta, SegmentMeta};

/// Hashes a stored stream segment by segment as it is read.
pub(super) struct Checker {
    inner: Box<dyn Read + Send>,
    segments: Vec<SegmentMeta>,
    /// The segment being read and how much of it has been.
    index: usize,
    in_segment: u64,
    segment_hash: Sha256,
    /// Indexes of complete segments whose hash differs.
    mismatched: Vec<usize>,
    total: u64,
    total_hash: Sha256,
    /// The storage failed while reading: where and why.
    read_error: Option<String>,
}

impl Checker {
    pub(super) fn new(inner: Box<dyn Read + Send>, meta: &BackupMeta) -> Checker {
        Checker {
            inner,
            segments: meta.segments.clone().unwrap_or_default(),
            index: 0,
            in_segment: 0,
            segment_hash: Sha256::new(),
            mismatched: Vec::new(),
            total: 0,
            total_hash: Sha256::new(),
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
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Recorded by `read`, reported by `problems`.
                Err(_) => break,
            }
        }
    }

    /// Hash `data` into the segments it spans.
    fn account(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        self.total_hash.update(data);
        while !data.is_empty() {
            let Some(seg) = self.segments.get(self.index) else {
                return; // Past the recorded segments: counted in `total`, reported by size.
            };
            let room = seg.size - self.in_segment;
            let n = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            self.segment_hash.update(&data[..n]);
            self.in_segment += n as u64;
            data = &data[n..];
            if self.in_segment == seg.size {
                self.close_segment();
            }
        }
        // Zero-sized recorded segments (an empty stream's one segment) complete without bytes.
        while self.segments.get(self.index).is_some_and(|s| s.size == 0) {
            self.close_segment();
        }
    }

    fn close_segment(&mut self) {
        let hash = std::mem::replace(&mut self.segment_hash, Sha256::new()).finalize();
        if !hex::encode(hash).eq_ignore_ascii_case(&self.segments[self.index].sha256) {
            self.mismatched.push(self.index);
        }
        self.index += 1;
        self.in_segment = 0;
    }

    /// What is wrong with the stream, once read to the end: one message per problem, without
    /// the backup's name (the caller prefixes it).
    pub(super) fn problems(&mut self, meta: &BackupMeta) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.read_error {
            out.push(format!("reading the data failed after {} bytes: {e}", self.total));
            return out;
        }
        // An empty stream completes its one empty segment only at the end.
        self.account(&[]);
        let count = self.segments.len();
        let recorded: Option<u64> = meta
            .data_size
            .or_else(|| (count > 0).then(|| self.segments.iter().map(|s| s.size).sum()));
        if count > 0 {
            let sum: u64 = self.segments.iter().map(|s| s.size).sum();
            if meta.data_size.is_some_and(|size| size != sum) {
                out.push(format!(
                    "the metadata is inconsistent: its segments add up to {sum} bytes but \
                     data_size says {}",
                    meta.data_size.unwrap_or_default()
                ));
            }
        }
        for &i in &self.mismatched {
            let start: u64 = self.segments[..i].iter().map(|s| s.size).sum();
            let end = start + self.segments[i].size;
            out.push(format!(
                "segment {i} of {count} (numbered from 0; bytes {start}..{end}): sha256 mismatch"
            ));
        }
        let Some(recorded) = recorded else {
            return out;
        };
        if self.total < recorded {
            let mut msg = format!(
                "data is {} bytes shorter than recorded ({} of {recorded} bytes)",
                recorded - self.total,
                self.total
            );
            if self.index < count {
                let what = if self.in_segment > 0 { "is incomplete" } else { "is missing" };
                msg.push_str(&format!(
                    "; segment {} of {count} (numbered from 0) {what}",
                    self.index
                ));
                if self.index + 1 < count {
                    msg.push_str(", and every one after it is missing");
                }
            }
            out.push(msg);
        } else if self.total > recorded {
            out.push(format!(
                "data is {} bytes longer than recorded ({} bytes, {recorded} recorded)",
                self.total - recorded,
                self.total
            ));
        } else if let Some(expected) = &meta.data_sha256 {
            let got = hex::encode(self.total_hash.clone().finalize());
            // With every segment matching, a whole-stream mismatch means the metadata itself
            // is inconsistent; with a segment mismatch it is already said.
            if self.mismatched.is_empty() && !got.eq_ignore_ascii_case(expected) {
                out.push(format!("data sha256 mismatch (recorded {expected}, read {got})"));
            }
        }
        out
    }
}

impl Read for Checker {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.read_error {
            return Err(io::Error::other(e.clone()));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.account(&buf[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.read_error = Some(e.to_string());
                Err(e)
            }
        }
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
