//! Segments uploaded several at once on worker threads, for the object stores (Swift
//! segments, S3 parts): the pipeline hands a segment over only when a worker is free, so at
//! most `buffers` segments are in memory (the one being filled and the others uploading), and
//! buffers go back to the pipeline once uploaded. The first failure (after the store's own
//! retries) stops the workers and is reported by the next `send` or by `finish`.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// Stores one segment; what it returns (an ETag) is kept for [`Workers::finish`].
pub(crate) type PutFn<R> = dyn Fn(u64, &[u8]) -> Result<R> + Send + Sync;

type Job = (u64, Vec<u8>);

/// A pool of upload threads.
pub(crate) struct Workers<R> {
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Vec<u8>>,
    threads: Vec<JoinHandle<()>>,
    failed: Arc<Mutex<Option<Error>>>,
    done: Arc<Mutex<Vec<(u64, R)>>>,
}

impl<R: Send + 'static> Workers<R> {
    /// Start `buffers - 1` threads (at least one) named `name-N`, each calling `put`.
    pub(crate) fn start(name: &str, buffers: usize, put: Arc<PutFn<R>>) -> Result<Workers<R>> {
        // A rendezvous channel: a segment is handed over only when a worker is free.
        let (jobs, rx) = sync_channel::<Job>(0);
        let rx = Arc::new(Mutex::new(rx));
        let count = buffers.saturating_sub(1).max(1);
        let (give_back, free) = sync_channel::<Vec<u8>>(count + 1);
        let failed = Arc::new(Mutex::new(None));
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for n in 0..count {
            let (rx, give_back, failed, done, put) = (
                Arc::clone(&rx),
                give_back.clone(),
                Arc::clone(&failed),
                Arc::clone(&done),
                Arc::clone(&put),
            );
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || work(&*put, &rx, &give_back, &failed, &done))
                .map_err(|e| Error::io("cannot start an upload thread", e))?;
            threads.push(handle);
        }
        Ok(Workers { jobs: Some(jobs), free, threads, failed, done })
    }

    fn failure(&self) -> Option<Error> {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Hand segment `index` to a free worker (waiting for one); returns a buffer to refill.
    pub(crate) fn send(&mut self, index: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| Error::storage("the upload is finished (a bug in freezer)"))?;
        if jobs.send((index, data)).is_err() {
            // Every worker stopped: one of them failed.
            return Err(self
                .failure()
                .unwrap_or_else(|| Error::storage("the upload threads stopped")));
        }
        Ok(self.free.try_recv().unwrap_or_default())
    }

    /// Wait for every segment; what `put` returned for each, in segment order.
    pub(crate) fn finish(&mut self) -> Result<Vec<(u64, R)>> {
        self.join();
        if let Some(e) = self.failure() {
            return Err(e);
        }
        let mut done =
            std::mem::take(&mut *self.done.lock().unwrap_or_else(PoisonError::into_inner));
        done.sort_by_key(|(index, _)| *index);
        Ok(done)
    }
}

impl<R> Workers<R> {
    /// Let the workers finish what they have and stop.
    pub(crate) fn join(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl<R> Drop for Workers<R> {
    fn drop(&mut self) {
        self.join();
    }
}

fn work<R>(
    put: &PutFn<R>,
    rx: &Mutex<Receiver<Job>>,
    give_back: &SyncSender<Vec<u8>>,
    failed: &Mutex<Option<Error>>,
    done: &Mutex<Vec<(u64, R)>>,
) {
    loop {
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((index, mut data)) = job else { return };
        match put(index, &data) {
            Ok(r) => {
                done.lock().unwrap_or_else(PoisonError::into_inner).push((index, r));
                data.clear();
                let _ = give_back.try_send(data);
            }
            Err(e) => {
                let mut slot = failed.lock().unwrap_or_else(PoisonError::into_inner);
                slot.get_or_insert(e.context(format!("segment {index} could not be stored")));
                return;
            }
        }
    }
}
