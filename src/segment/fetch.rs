//! Reading a data object back segment by segment, a few segments ahead on their own threads,
//! each checked against the size and sha256 recorded at backup time before it is handed on.
//!
//! Memory stays at `ahead + 1` segments: workers fetch only while fewer than `ahead` fetched
//! segments wait to be taken. Segments come out in order, whatever order they arrive in.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::Scope;

use sha2::{Digest, Sha256};

use crate::catalog::SegmentMeta;
use crate::error::{Error, Result};
use crate::storage::{SegmentRef, Storage, segment_refs};

/// One fetched segment.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub data: Vec<u8>,
    /// What differs from the recorded size or sha256, if anything.
    pub problem: Option<String>,
}

/// Which segments may be fetched now.
struct Window {
    next_fetch: u64,
    /// Fetch only below this index.
    limit: u64,
    stop: bool,
}

struct Shared {
    window: Mutex<Window>,
    moved: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Segments of one data object, in order, fetched ahead by worker threads of a scope.
pub(crate) struct Fetcher {
    shared: Arc<Shared>,
    rx: Receiver<(u64, Result<Fetched>)>,
    arrived: BTreeMap<u64, Result<Fetched>>,
    next: u64,
    count: u64,
}

impl Fetcher {
    /// Start `ahead` workers (at least 1) in `scope` reading the `segments` of `key`.
    pub(crate) fn start<'scope, 'env: 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        storage: &'env dyn Storage,
        key: &str,
        segments: &[SegmentMeta],
        ahead: usize,
    ) -> Fetcher {
        let ahead = ahead.max(1);
        let count = segments.len() as u64;
        let shared = Arc::new(Shared {
            window: Mutex::new(Window { next_fetch: 0, limit: ahead as u64, stop: false }),
            moved: Condvar::new(),
        });
        let (tx, rx) = channel();
        let mut refs = segment_refs(segments.iter().map(|s| s.size));
        for (r, s) in refs.iter_mut().zip(segments) {
            r.sha256 = hex::decode(&s.sha256).ok().and_then(|h| h.try_into().ok());
        }
        let refs: Arc<Vec<SegmentRef>> = Arc::new(refs);
        let hashes: Arc<Vec<String>> =
            Arc::new(segments.iter().map(|s| s.sha256.clone()).collect());
        for _ in 0..ahead.min(segments.len().max(1)) {
            let job = Job {
                storage,
                key: key.to_string(),
                refs: Arc::clone(&refs),
                hashes: Arc::clone(&hashes),
                shared: Arc::clone(&shared),
                tx: tx.clone(),
            };
            scope.spawn(move || job.run());
        }
        Fetcher { shared, rx, arrived: BTreeMap::new(), next: 0, count }
    }

    /// The next segment in order; `None` after the last.
    pub(crate) fn next_segment(&mut self) -> Option<Result<Fetched>> {
        if self.next >= self.count {
            return None;
        }
        loop {
            if let Some(found) = self.arrived.remove(&self.next) {
                self.next += 1;
                self.shared.lock().limit += 1;
                self.shared.moved.notify_all();
                return Some(found);
            }
            match self.rx.recv() {
                Ok((index, result)) => {
                    self.arrived.insert(index, result);
                }
                Err(_) => {
                    return Some(Err(Error::storage(
                        "the threads reading segments stopped early (a bug in freezer)",
                    )));
                }
            }
        }
    }
}

impl Drop for Fetcher {
    /// Stop the workers; the scope then waits for the fetches in flight.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.moved.notify_all();
    }
}

/// The stream of a data object, from segments each checked before any of its bytes is
/// handed on: a damaged segment is an error of kind [`crate::ErrorKind::Corrupt`] in place of
/// its first byte.
pub(crate) struct VerifiedReader {
    fetcher: Fetcher,
    current: Vec<u8>,
    pos: usize,
    /// Names the data in messages, e.g. `backup host_etc/2_1700000000 (level 2)`.
    what: String,
}

impl VerifiedReader {
    pub(crate) fn new(fetcher: Fetcher, what: String) -> VerifiedReader {
        VerifiedReader { fetcher, current: Vec::new(), pos: 0, what }
    }
}

impl std::io::Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            match self.fetcher.next_segment() {
                None => return Ok(0),
                Some(Err(e)) => {
                    return Err(e.context(format!("cannot read {}", self.what)).into());
                }
                Some(Ok(Fetched { problem: Some(problem), .. })) => {
                    return Err(Error::corrupt(format!(
                        "stored data of {} is damaged: {problem}; nothing of that segment was \
                         used; restore from another backup or re-run this one",
                        self.what
                    ))
                    .into());
                }
                Some(Ok(f)) => {
                    self.current = f.data;
                    self.pos = 0;
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What one worker needs.
struct Job<'env> {
    storage: &'env dyn Storage,
    key: String,
    refs: Arc<Vec<SegmentRef>>,
    hashes: Arc<Vec<String>>,
    shared: Arc<Shared>,
    tx: Sender<(u64, Result<Fetched>)>,
}

impl Job<'_> {
    fn run(self) {
        while let Some(index) = self.claim() {
            let r = &self.refs[index as usize];
            let result = self.storage.read_segment(&self.key, r).map(|data| {
                let problem = check(&data, r, &self.hashes[index as usize], self.refs.len());
                Fetched { data, problem }
            });
            if self.tx.send((index, result)).is_err() {
                return;
            }
        }
    }

    /// The next index to fetch, once the window allows; `None` when done or stopped.
    fn claim(&self) -> Option<u64> {
        let mut w = self.shared.lock();
        loop {
            if w.stop || w.next_fetch >= self.refs.len() as u64 {
                return None;
            }
            if w.next_fetch < w.limit {
                w.next_fetch += 1;
                return Some(w.next_fetch - 1);
            }
            w = self.shared.moved.wait(w).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// How `data` differs from what was recorded for segment `r`.
fn check(data: &[u8], r: &SegmentRef, sha256: &str, count: usize) -> Option<String> {
    let which = format!(
        "segment {} of {count} (numbered from 0; bytes {}..{})",
        r.index,
        r.offset,
        r.offset + r.size
    );
    if data.len() as u64 != r.size {
        let how = if (data.len() as u64) < r.size { "short" } else { "long" };
        return Some(format!(
            "{which} is {how}: {} bytes stored where {} were written",
            data.len(),
            r.size
        ));
    }
    let got = hex::encode(Sha256::digest(data));
    (!got.eq_ignore_ascii_case(sha256)).then(|| format!("{which}: sha256 mismatch"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageWrite;
    use crate::storage::local::LocalStorage;

    fn meta(parts: &[&[u8]]) -> Vec<SegmentMeta> {
        parts
            .iter()
            .map(|p| SegmentMeta { size: p.len() as u64, sha256: hex::encode(Sha256::digest(p)) })
            .collect()
    }

    fn stored(data: &[u8]) -> (tempfile::TempDir, LocalStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path()).unwrap();
        storage.put("d/data", data).unwrap();
        (dir, storage)
    }

    #[test]
    fn segments_arrive_in_order_and_checked() {
        let parts: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000 + i as usize]).collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        let (_dir, storage) = stored(&parts.concat());
        for ahead in [1, 3, 8] {
            std::thread::scope(|s| {
                let mut f = Fetcher::start(s, &storage, "d/data", &meta(&refs), ahead);
                for part in &parts {
                    let got = f.next_segment().unwrap().unwrap();
                    assert_eq!(&got.data, part);
                    assert_eq!(got.problem, None);
                }
                assert!(f.next_segment().is_none());
            });
        }
    }

    #[test]
    fn damage_is_named_per_segment() {
        let mut data = vec![1u8; 300];
        let segments = meta(&[&data[..100], &data[100..200], &data[200..]]);
        data[150] ^= 1;
        data.truncate(250);
        let (_dir, storage) = stored(&data);
        std::thread::scope(|s| {
            let mut f = Fetcher::start(s, &storage, "d/data", &segments, 2);
            assert_eq!(f.next_segment().unwrap().unwrap().problem, None);
            let p = f.next_segment().unwrap().unwrap().problem.unwrap();
            assert!(p.contains("segment 1 of 3") && p.contains("sha256 mismatch"), "{p}");
            let p = f.next_segment().unwrap().unwrap().problem.unwrap();
            assert!(p.contains("segment 2 of 3") && p.contains("short"), "{p}");
        });
    }

    #[test]
    fn dropping_early_stops_the_workers() {
        let parts: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 10]).collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        let (_dir, storage) = stored(&parts.concat());
        std::thread::scope(|s| {
            let mut f = Fetcher::start(s, &storage, "d/data", &meta(&refs), 4);
            f.next_segment().unwrap().unwrap();
        });
    }

    #[test]
    fn a_missing_object_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path()).unwrap();
        std::thread::scope(|s| {
            let mut f = Fetcher::start(s, &storage, "d/data", &meta(&[b"x"]), 1);
            assert!(f.next_segment().unwrap().is_err());
        });
    }
}
