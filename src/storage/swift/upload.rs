//! A data object written as freezer-agent 19 writes it to Swift: segments
//! `<dir>/segments/%08d` uploaded first (here several at once, each with its MD5 for Swift to
//! check), then `<dir>/data` as a zero-byte DLO manifest (`X-Object-Manifest`) on commit.
//!
//! Memory: `--upload-concurrency` segments at most (see [`Workers`]). The first failed
//! segment (after its retries) fails the next `put_segment` or the commit; abort deletes every
//! segment written.

use std::sync::Arc;

use md5::{Digest, Md5};

use super::Swift;
use crate::error::Result;
use crate::storage::Upload;
use crate::storage::parallel::Workers;

pub(crate) struct SwiftUpload {
    storage: Arc<Swift>,
    /// The manifest's object name (full, with the container's prefix).
    manifest: String,
    /// `<dir>/segments` (full name): segments are `<segments>/%08d`.
    segments: String,
    workers: Workers<()>,
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
        let (swift, dir) = (Arc::clone(&storage), segments.clone());
        let put = move |index: u64, data: &[u8]| {
            let etag = hex::encode(Md5::digest(data));
            swift.put_object(&segment_name(&dir, index), data, &[("ETag", &etag)])
        };
        let workers = Workers::start("freezer-swift", buffers, Arc::new(put))?;
        Ok(SwiftUpload { storage, manifest, segments, workers, finished: false })
    }
}

impl Upload for SwiftUpload {
    fn put_segment(&mut self, index: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        self.workers.send(index, data)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        if let Err(e) = self.workers.finish() {
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
        self.workers.join();
        self.finished = true;
        let prefix = format!("{}/", self.segments);
        let names = self.storage.list_all(&prefix)?;
        self.storage.delete_objects(&names)
    }
}

impl Drop for SwiftUpload {
    fn drop(&mut self) {
        self.workers.join();
        if !self.finished {
            log::warn!(
                "the upload of {} was neither committed nor aborted: its segments stay until \
                 `freezer prune --orphans` removes them",
                self.manifest
            );
        }
    }
}
