//! A data object written as freezer-agent 19 writes it to Swift: segments
//! `<dir>/segments/%08d` uploaded first (here several at once, each with its MD5 for Swift to
//! check), then `<dir>/data` as a zero-byte DLO manifest (`X-Object-Manifest`) on commit.
//!
//! Memory: `--upload-concurrency` segments at most, the one the pipeline fills and the others
//! uploading (at least one); buffers go back to the pipeline once uploaded. The first failed segment (after its retries) fails the next
//! `put_segment` or the commit; abort deletes every segment written.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use md5::{Digest, Md5};

use super::Swift;
use crate::error::{Error, Result};
use crate::storage::Upload;

type Job = (u64, Vec<u8>);

pub(crate) struct SwiftUpload {
    storage: Arc<Swift>,
    /// The manifest's object name (full, with the container's prefix).
    manifest: String,
    /// `<dir>/segments` (full name): segments are `<segments>/%08d`.
    segments: String,
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
    failed: Arc<Mutex<Option<Error>>>,
    finished: bool,
}

/// The object name of segment `index` under `segments`.
pub(crate) fn segment_name(segments: &str, index: u64) -> String {
    format!("{segments}/{index:08}")
}

impl SwiftUpload {
    pub(crate) fn start(
        storage: Arc<Swift>,
        manifest: String,
        buffers: usize,
    ) -> Result<SwiftUpload> {
        let segments = match manifest.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/segments"),
            None => "segments".to_string(),
        };
        // A rendezvous channel: a segment is handed over only when a worker is free.
        let (jobs, rx) = sync_channel::<Job>(0);
        let rx = Arc::new(Mutex::new(rx));
        // `buffers` segments in memory at most: the one the pipeline fills, the rest uploading.
        let workers = buffers.saturating_sub(1).max(1);
        let (give_back, free) = sync_channel::<Vec<u8>>(workers + 1);
        let failed = Arc::new(Mutex::new(None));
        let mut handles = Vec::new();
        for n in 0..workers {
            let (storage, rx, give_back, failed) =
                (Arc::clone(&storage), Arc::clone(&rx), give_back.clone(), Arc::clone(&failed));
            let segments = segments.clone();
            let handle = std::thread::Builder::new()
                .name(format!("freezer-swift-{n}"))
                .spawn(move || work(&storage, &segments, &rx, &give_back, &failed))
                .map_err(|e| Error::io("cannot start a Swift upload thread", e))?;
            handles.push(handle);
        }
        Ok(SwiftUpload {
            storage,
            manifest,
            segments,
            jobs: Some(jobs),
            free,
            workers: handles,
            failed,
            finished: false,
        })
    }

    fn failure(&self) -> Option<Error> {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Let the workers finish what they have and stop.
    fn join(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn work(
    storage: &Swift,
    segments: &str,
    rx: &Mutex<Receiver<Job>>,
    give_back: &SyncSender<Vec<u8>>,
    failed: &Mutex<Option<Error>>,
) {
    loop {
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((index, mut data)) = job else { return };
        let name = segment_name(segments, index);
        let etag = hex::encode(Md5::digest(&data));
        match storage.put_object(&name, &data, &[("ETag", &etag)]) {
            Ok(()) => {
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

impl Upload for SwiftUpload {
    fn put_segment(&mut self, index: u64, data: Vec<u8>) -> Result<Vec<u8>> {
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
                .unwrap_or_else(|| Error::storage("the Swift upload threads stopped")));
        }
        Ok(self.free.try_recv().unwrap_or_default())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.join();
        if let Some(e) = self.failure() {
            self.storage.delete_prefix(&format!("{}/", self.segments));
            self.finished = true;
            return Err(e);
        }
        // As freezer-agent writes it: `<container>/<dir>/segments`, no trailing slash.
        let manifest = format!("{}/{}", self.storage.client.container, self.segments);
        self.storage.put_object(&self.manifest, b"", &[("X-Object-Manifest", &manifest)])?;
        self.finished = true;
        Ok(())
    }

    fn abort(mut self: Box<Self>) -> Result<()> {
        self.join();
        self.finished = true;
        let prefix = format!("{}/", self.segments);
        let names = self.storage.list_all(&prefix)?;
        self.storage.delete_objects(&names)
    }
}

impl Drop for SwiftUpload {
    fn drop(&mut self) {
        self.join();
        if !self.finished {
            log::warn!(
                "the upload of {} was neither committed nor aborted: its segments stay until \
                 `freezer prune --orphans` removes them",
                self.manifest
            );
        }
    }
}
