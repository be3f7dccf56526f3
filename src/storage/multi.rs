//! Several storages as one (freezer-agent's `[storage:NAME]` sections): a backup writes the
//! same stream to every member, in parallel, from one read of the source; restore, list and
//! verify read from the first member that has what they need and fall back to the next on a
//! missing or damaged segment.
//!
//! When a member fails, [`OnFailure::Fail`] fails the call (the backup then aborts and
//! removes what every member got: freezer-agent's "one fails, all fail"); [`OnFailure::Warn`]
//! drops that member for the rest of the run, removes its partial copy as far as it can, and
//! records why, so the binary exits 3 with the copies that succeeded.

use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::storage::{Limits, SegmentRef, Storage, StorageWrite, Upload};

/// What a member's failure does to the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// The run fails, and no member keeps a copy.
    #[default]
    Fail,
    /// The member is dropped for the rest of the run; the others go on.
    Warn,
}

/// One storage of the set, with the name of its `[storage:NAME]` section.
pub struct Member {
    /// The section's name.
    pub name: String,
    /// The storage.
    pub storage: Arc<dyn StorageWrite>,
}

/// Several storages written together; cheap to clone.
#[derive(Clone)]
pub struct MultiStorage(Arc<Set>);

struct Set {
    members: Vec<Member>,
    on_failure: OnFailure,
    /// `(member index, why)` of the members dropped so far.
    dropped: Mutex<Vec<(usize, String)>>,
}

impl MultiStorage {
    /// A set of at least one member.
    pub fn new(members: Vec<Member>, on_failure: OnFailure) -> Result<MultiStorage> {
        if members.is_empty() {
            return Err(Error::usage("no storage given (a bug in freezer)"));
        }
        Ok(MultiStorage(Arc::new(Set { members, on_failure, dropped: Mutex::new(Vec::new()) })))
    }

    /// The members dropped by [`OnFailure::Warn`], as `[storage:NAME] (WHERE): ERROR`.
    pub fn dropped(&self) -> Vec<String> {
        let dropped = self.0.dropped.lock().unwrap_or_else(PoisonError::into_inner);
        dropped.iter().map(|(i, why)| format!("{}: {why}", self.0.label(*i))).collect()
    }
}

impl Set {
    fn label(&self, i: usize) -> String {
        let m = &self.members[i];
        format!("[storage:{}] ({})", m.name, m.storage.describe())
    }

    fn is_dropped(&self, i: usize) -> bool {
        self.dropped.lock().unwrap_or_else(PoisonError::into_inner).iter().any(|(d, _)| *d == i)
    }

    /// The members still written to.
    fn live(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|i| !self.is_dropped(*i)).collect()
    }

    /// Handle member `i`'s failure: an error to return (Fail), or `Ok` after dropping it.
    fn failed(&self, i: usize, e: Error) -> Result<()> {
        let e = e.context(format!("{} failed", self.label(i)));
        match self.on_failure {
            OnFailure::Fail => Err(e),
            OnFailure::Warn => {
                log::warn!("{e:#}; going on without it (--storage-failure warn)");
                let mut dropped = self.dropped.lock().unwrap_or_else(PoisonError::into_inner);
                dropped.push((i, format!("{e:#}")));
                if dropped.len() == self.members.len() {
                    return Err(Error::storage("every storage failed").context(format!("{e:#}")));
                }
                Ok(())
            }
        }
    }

    /// Run `f` on every live member at once; each result in member order.
    fn each<T: Send>(
        &self,
        f: impl Fn(&dyn StorageWrite) -> Result<T> + Sync,
    ) -> Vec<(usize, Result<T>)> {
        let live = self.live();
        std::thread::scope(|s| {
            let handles: Vec<_> = live
                .iter()
                .map(|&i| {
                    let (f, m) = (&f, &self.members[i]);
                    (i, s.spawn(move || f(&*m.storage)))
                })
                .collect();
            handles.into_iter().map(|(i, h)| (i, join(h))).collect()
        })
    }

    /// The first member (in order) for which `f` gives `Some`; errors are logged and the next
    /// member is asked, so one broken storage does not hide the others' copies.
    fn first<T>(&self, f: impl Fn(&dyn StorageWrite) -> Result<Option<T>>) -> Result<Option<T>> {
        let mut first_error = None;
        for (i, m) in self.members.iter().enumerate() {
            match f(&*m.storage) {
                Ok(Some(v)) => return Ok(Some(v)),
                Ok(None) => {}
                Err(e) => {
                    log::warn!("{}: {e:#}; trying the next storage", self.label(i));
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if self.members.len() == 1 => Err(e),
            _ => Ok(None),
        }
    }
}

impl Storage for MultiStorage {
    fn describe(&self) -> String {
        let all: Vec<String> = (0..self.0.members.len()).map(|i| self.0.label(i)).collect();
        format!("{} storages: {}", self.0.members.len(), all.join(", "))
    }

    fn kind(&self) -> &'static str {
        "multiple"
    }

    /// What any member lists.
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut errors = Vec::new();
        for (i, m) in self.0.members.iter().enumerate() {
            match m.storage.list(prefix) {
                Ok(n) => names.extend(n),
                Err(e) => errors.push((i, e)),
            }
        }
        if errors.len() == self.0.members.len() {
            return Err(errors.swap_remove(0).1);
        }
        for (i, e) in errors {
            log::warn!("{}: {e:#}; listing the others", self.0.label(i));
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.0.first(|s| Ok(s.exists(key)?.then_some(())))?.is_some())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.0.first(|s| s.get(key))
    }

    /// The first member's copy that has the object (freezer-agent's backups record no
    /// segments, so a damaged one cannot be told from a good one before it is read).
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        for (i, m) in self.0.members.iter().enumerate() {
            match m.storage.size(key) {
                Ok(Some(_)) => return m.storage.open(key),
                Ok(None) => {}
                Err(e) => log::warn!("{}: {e:#}; trying the next storage", self.0.label(i)),
            }
        }
        // Absent everywhere: the first storage says so in its own words.
        self.0.members[0].storage.open(key)
    }

    /// The first copy of the segment whose size (and recorded sha256) match; if none does,
    /// the first copy read, for the caller to report.
    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>> {
        let mut fallback: Option<Result<Vec<u8>>> = None;
        for (i, m) in self.0.members.iter().enumerate() {
            match m.storage.read_segment(key, segment) {
                Ok(data) if intact(&data, segment) => return Ok(data),
                Ok(data) => {
                    log::warn!(
                        "{}: segment {} of {key} is missing or damaged; trying the next storage",
                        self.0.label(i),
                        segment.index
                    );
                    fallback.get_or_insert(Ok(data));
                }
                Err(e) => {
                    log::warn!("{}: {e:#}; trying the next storage", self.0.label(i));
                    fallback.get_or_insert(Err(e));
                }
            }
        }
        fallback.unwrap_or_else(|| Ok(Vec::new()))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.0.first(|s| s.size(key))
    }

    fn parallel_reads(&self) -> usize {
        self.0.members.iter().map(|m| m.storage.parallel_reads()).max().unwrap_or(1)
    }

    fn container_exists(&self) -> Result<bool> {
        Ok(self.0.first(|s| Ok(s.container_exists()?.then_some(())))?.is_some())
    }

    /// What every member can hold.
    fn limits(&self) -> Result<Limits> {
        let mut all = Limits::default();
        for m in &self.0.members {
            let l = m.storage.limits()?;
            all.max_segment_size = min_some(all.max_segment_size, l.max_segment_size);
            all.max_segments = min_some(all.max_segments, l.max_segments);
            all.min_segment_size = all.min_segment_size.max(l.min_segment_size);
        }
        Ok(all)
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether `data` is the segment as recorded.
fn intact(data: &[u8], segment: &SegmentRef) -> bool {
    data.len() as u64 == segment.size
        && segment.sha256.is_none_or(|want| Sha256::digest(data).as_slice() == want)
}

impl StorageWrite for MultiStorage {
    /// On every live member; with [`OnFailure::Fail`], a failure removes it from the others,
    /// so the object is in all of them or in none (a backup's metadata, its commit point).
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let mut stored = Vec::new();
        for (i, r) in self.0.each(|s| s.put(key, data)) {
            match r {
                Ok(()) => stored.push(i),
                Err(e) => {
                    if let Err(e) = self.0.failed(i, e) {
                        self.0.undo_create(key, &stored);
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        let mut uploads = Vec::new();
        for (i, r) in self.0.each(|s| s.create(key)) {
            match r {
                Ok(u) => uploads.push((i, u)),
                Err(e) => {
                    if let Err(e) = self.0.failed(i, e) {
                        abort_all(uploads);
                        return Err(e);
                    }
                }
            }
        }
        Ok(Box::new(MultiUpload { set: Arc::clone(&self.0), uploads }))
    }

    /// On every member, also dropped ones: cleanup must reach every copy it can.
    fn delete(&self, key: &str) -> Result<()> {
        let mut first_error = None;
        for (i, m) in self.0.members.iter().enumerate() {
            if let Err(e) = m.storage.delete(key) {
                log::warn!("{}: {e:#}", self.0.label(i));
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Created on every live member, or on none.
    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        let mut made = Vec::new();
        let mut taken = false;
        for (i, r) in self.0.each(|s| s.create_new(key, data)) {
            match r {
                Ok(true) => made.push(i),
                Ok(false) => taken = true,
                Err(e) => {
                    if let Err(e) = self.0.failed(i, e) {
                        self.0.undo_create(key, &made);
                        return Err(e);
                    }
                }
            }
        }
        if taken {
            self.0.undo_create(key, &made);
        }
        Ok(!taken)
    }
}

impl Set {
    /// Remove `key` from the members that got it, when the others did not.
    fn undo_create(&self, key: &str, made: &[usize]) {
        for &i in made {
            if let Err(e) = self.members[i].storage.delete(key) {
                log::warn!("{}: {e:#}", self.label(i));
            }
        }
    }
}

fn abort_all(uploads: Vec<(usize, Box<dyn Upload>)>) {
    for (_, u) in uploads {
        if let Err(e) = u.abort() {
            log::warn!("{e:#}");
        }
    }
}

/// One data object written to every live member.
struct MultiUpload {
    set: Arc<Set>,
    uploads: Vec<(usize, Box<dyn Upload>)>,
}

impl MultiUpload {
    /// Drop the uploads whose call failed (aborting them), or fail per the policy.
    fn settle(&mut self, failures: Vec<(usize, Error)>) -> Result<()> {
        for (i, e) in failures {
            let at = self.uploads.iter().position(|(m, _)| *m == i);
            self.set.failed(i, e)?;
            if let Some(at) = at {
                let (_, upload) = self.uploads.remove(at);
                if let Err(e) = upload.abort() {
                    log::warn!("{}: {e:#}", self.set.label(i));
                }
            }
        }
        Ok(())
    }
}

impl Upload for MultiUpload {
    /// The segment goes to every member at once (a copy each but the last).
    fn put_segment(&mut self, index: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        let n = self.uploads.len();
        let mut copies: Vec<Vec<u8>> = (1..n).map(|_| data.clone()).collect();
        copies.push(data);
        let results: Vec<(usize, Result<Vec<u8>>)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .uploads
                .iter_mut()
                .zip(copies)
                .map(|((i, u), d)| (*i, s.spawn(move || u.put_segment(index, d))))
                .collect();
            handles.into_iter().map(|(i, h)| (i, join(h))).collect()
        });
        let mut back = None;
        let mut failures = Vec::new();
        for (i, r) in results {
            match r {
                Ok(buf) => {
                    back.get_or_insert(buf);
                }
                Err(e) => failures.push((i, e)),
            }
        }
        self.settle(failures)?;
        Ok(back.unwrap_or_default())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let set = Arc::clone(&self.set);
        let results: Vec<(usize, Result<()>)> = std::thread::scope(|s| {
            let handles: Vec<_> =
                self.uploads.into_iter().map(|(i, u)| (i, s.spawn(move || u.commit()))).collect();
            handles.into_iter().map(|(i, h)| (i, join(h))).collect()
        });
        for (i, r) in results {
            if let Err(e) = r {
                set.failed(i, e)?;
            }
        }
        Ok(())
    }

    fn abort(self: Box<Self>) -> Result<()> {
        let mut first_error = None;
        for (i, u) in self.uploads {
            if let Err(e) = u.abort() {
                log::warn!("{}: {e:#}", self.set.label(i));
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    h.join().unwrap_or_else(|_| Err(Error::storage("a storage thread panicked")))
}

#[cfg(test)]
mod tests;
