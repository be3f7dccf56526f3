//! Parallel gzip: the input is cut into blocks, each compressed on a worker thread as its own
//! gzip member, and the members are written in order. `gzip -d` (and any multi-member reader)
//! reads the result as one stream, as it does pigz's; the ratio loss from restarting the
//! dictionary every block is a fraction of a percent.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// Input per member: large enough that the per-member header and dictionary restart cost
/// little, small enough to keep every core busy on modest streams.
pub(super) const BLOCK_SIZE: usize = 1 << 20;
/// Blocks queued or being compressed per worker: bounds memory at about
/// `threads × IN_FLIGHT_PER_THREAD × 2 × BLOCK_SIZE`.
const IN_FLIGHT_PER_THREAD: usize = 2;

/// One block to compress and where to send the member.
struct Job {
    block: Vec<u8>,
    done: SyncSender<io::Result<Vec<u8>>>,
}

/// A gzip writer that compresses blocks on `threads` worker threads.
pub(super) struct Encoder<W: Write> {
    inner: W,
    block: Vec<u8>,
    block_size: usize,
    /// Members not yet written, in stream order.
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    workers: Workers,
    /// Whether any member was submitted: an empty stream still needs one member.
    started: bool,
}

impl<W: Write> Encoder<W> {
    pub(super) fn new(inner: W, level: u32, threads: usize) -> io::Result<Self> {
        Encoder::with_block_size(inner, level, threads, BLOCK_SIZE)
    }

    pub(super) fn with_block_size(
        inner: W,
        level: u32,
        threads: usize,
        block_size: usize,
    ) -> io::Result<Self> {
        let threads = threads.max(1);
        let max_pending = threads * IN_FLIGHT_PER_THREAD;
        let (jobs, queue) = mpsc::sync_channel::<Job>(max_pending);
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = Workers { jobs: Some(jobs), threads: Vec::with_capacity(threads) };
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let thread = thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || work(&queue, level))
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot start a gzip thread: {e}"))
                })?;
            workers.threads.push(thread);
        }
        Ok(Encoder {
            inner,
            block: Vec::with_capacity(block_size),
            block_size: block_size.max(1),
            pending: VecDeque::with_capacity(max_pending),
            max_pending,
            workers,
            started: false,
        })
    }

    /// Compress the current block on a worker, first writing out members so that no more
    /// than `max_pending` are in flight.
    fn submit(&mut self) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_next()?;
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(self.block_size));
        let (done, member) = mpsc::sync_channel(1);
        let jobs = self.workers.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(Job { block, done }).map_err(|_| stopped())?;
        self.pending.push_back(member);
        self.started = true;
        Ok(())
    }

    /// Wait for the oldest member and write it.
    fn write_next(&mut self) -> io::Result<()> {
        if let Some(member) = self.pending.pop_front() {
            // A worker that panicked drops `done` unsent: recv fails instead of hanging.
            let member = member.recv().map_err(|_| stopped())??;
            self.inner.write_all(&member)?;
        }
        Ok(())
    }

    /// Write every member, stop the workers and return the inner writer.
    pub(super) fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() || !self.started {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.write_next()?;
        }
        self.workers.stop()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        // Submit a full block before taking more, so an error consumes nothing of `data`.
        if self.block.len() >= self.block_size {
            self.submit()?;
        }
        let n = data.len().min(self.block_size - self.block.len());
        self.block.extend_from_slice(&data[..n]);
        Ok(n)
    }

    /// Ends the current member early and writes everything so far to the inner writer.
    fn flush(&mut self) -> io::Result<()> {
        if !self.block.is_empty() {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.write_next()?;
        }
        self.inner.flush()
    }
}

/// The worker threads and their job queue.
struct Workers {
    jobs: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Close the queue and join the threads; a panicked thread is an error.
    fn stop(&mut self) -> io::Result<()> {
        self.jobs = None;
        let mut panicked = false;
        for thread in self.threads.drain(..) {
            panicked |= thread.join().is_err();
        }
        if panicked { Err(stopped()) } else { Ok(()) }
    }
}

impl Drop for Workers {
    /// Unfinished encoder (the backup failed): let the threads end after their current block.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn work(queue: &Mutex<Receiver<Job>>, level: u32) {
    loop {
        // Hold the lock only to take a job. A poisoned lock means another worker panicked
        // there; stopping is fine since the writer reports the lost member.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(Job { block, done }) = job else { return };
        // The writer may have gone away (dropped unfinished): nothing to report to.
        let _ = done.send(compress(&block, level));
    }
}

fn compress(block: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let out = Vec::with_capacity(block.len() / 2 + 64);
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
    gz.write_all(block)?;
    gz.finish()
}

fn stopped() -> io::Error {
    io::Error::other("a gzip compression thread stopped unexpectedly (it panicked)")
}
