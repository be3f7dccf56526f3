//! Parallel gzip: the input is cut into blocks, each compressed on a worker thread as its own
//! gzip member, and the members are written in order. `gzip -d` (and any multi-member reader)
//! reads the result as one stream, as it does pigz's; the ratio loss from restarting the
//! dictionary every block is a fraction of a percent.
//!
//! Each member records its own length in its header's extra field (RFC 1952 2.3.1.1, like
//! BGZF's `BC` subfield), which every gzip reader skips. [`Decoder`] uses it to read whole
//! members and inflate them on worker threads; at the first member without it (freezer-agent's,
//! gzip's, pigz's) the rest of the stream goes to flate2's sequential multi-member reader.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use flate2::read::MultiGzDecoder;
use flate2::{Decompress, FlushDecompress, Status};

/// Input per member: large enough that the per-member header and dictionary restart cost
/// little, small enough to keep every core busy on modest streams.
pub(super) const BLOCK_SIZE: usize = 1 << 20;
/// Blocks queued or being compressed per worker: bounds memory at about
/// `threads × IN_FLIGHT_PER_THREAD × 2 × BLOCK_SIZE`.
const IN_FLIGHT_PER_THREAD: usize = 2;

/// The header of a member we write: magic, deflate, FEXTRA, no mtime, no extra flags, OS
/// unknown; XLEN 8; subfield `FZ` of 4 bytes: the member's whole length, little-endian.
const HEADER: [u8; 16] = [0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255, 8, 0, b'F', b'Z', 4, 0];
const HEADER_LEN: usize = HEADER.len() + 4;
/// CRC-32 and ISIZE.
const TRAILER_LEN: usize = 8;
/// A member longer than this cannot be ours (1 MiB blocks deflate to little more).
const MAX_MEMBER: usize = 64 << 20;

/// One block of work and where to send its result.
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
        let workers = Workers::start(threads, "gzip", move |block| compress(&block, level))?;
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
        self.pending.push_back(self.workers.submit(block)?);
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

/// A gzip reader that inflates the members [`Encoder`] writes on `threads` worker threads.
pub(super) struct Decoder<R: Read> {
    state: State<R>,
    threads: usize,
    /// Started at the first member of ours.
    workers: Option<Workers>,
    /// Members being inflated, in stream order.
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    out: Vec<u8>,
    pos: usize,
    /// Buffers of members read and inflated, reused: fresh megabyte buffers cost page faults.
    spare: Spare,
}

enum State<R: Read> {
    /// Reading members of ours.
    Members(R),
    /// The rest of the stream, from the first member that is not ours (or from the start).
    Rest(Box<MultiGzDecoder<io::Chain<io::Cursor<Vec<u8>>, R>>>),
    /// After the last member, or damage.
    End,
}

impl<R: Read> Decoder<R> {
    pub(super) fn new(inner: R, threads: usize) -> Decoder<R> {
        Decoder {
            state: State::Members(inner),
            threads,
            workers: None,
            pending: VecDeque::new(),
            out: Vec::new(),
            pos: 0,
            spare: Spare::default(),
        }
    }

    /// Queue members until enough are in flight, the stream ends, or a member is not ours.
    /// Damage is queued too, so that everything before it is read first.
    fn fill(&mut self) -> io::Result<()> {
        let max_pending = self.threads * IN_FLIGHT_PER_THREAD;
        while self.pending.len() < max_pending {
            let State::Members(inner) = &mut self.state else { return Ok(()) };
            let mut head = [0u8; HEADER_LEN];
            let n = crate::pipe::read_full(inner, &mut head)?;
            let len = match member_len(&head[..n]) {
                Ok(Some(len)) => len,
                Ok(None) if n == 0 && self.workers.is_some() => {
                    self.state = State::End;
                    return Ok(());
                }
                Ok(None) => {
                    if let State::Members(inner) = std::mem::replace(&mut self.state, State::End) {
                        let rest = io::Cursor::new(head[..n].to_vec()).chain(inner);
                        self.state = State::Rest(Box::new(MultiGzDecoder::new(rest)));
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.fail(e);
                    return Ok(());
                }
            };
            let mut member = self.spare.take();
            member.resize(len, 0);
            member[..HEADER_LEN].copy_from_slice(&head);
            if crate::pipe::read_full(inner, &mut member[HEADER_LEN..])? < len - HEADER_LEN {
                self.fail(damaged("the stream ends inside a member"));
                return Ok(());
            }
            let workers = match &mut self.workers {
                Some(w) => w,
                none => {
                    let spare = self.spare.clone();
                    none.insert(Workers::start(self.threads, "gunzip", move |member| {
                        let out = inflate(&member, spare.take());
                        spare.put(member);
                        out
                    })?)
                }
            };
            self.pending.push_back(workers.submit(member)?);
        }
        Ok(())
    }

    /// Queue `e` after the members before it, and read no further.
    fn fail(&mut self, e: io::Error) {
        let (done, result) = mpsc::sync_channel(1);
        let _ = done.send(Err(e));
        self.pending.push_back(result);
        self.state = State::End;
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.fill()?;
            match self.pending.pop_front() {
                Some(member) => {
                    let out = member.recv().map_err(|_| stopped())??;
                    self.spare.put(std::mem::replace(&mut self.out, out));
                    self.pos = 0;
                }
                None => match &mut self.state {
                    State::Rest(rest) => return rest.read(buf),
                    _ => return Ok(0),
                },
            }
        }
    }
}

/// Buffers to reuse, shared with the workers; a few, enough for the members in flight.
#[derive(Clone, Default)]
struct Spare(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spare {
    /// An empty buffer, with the capacity of one used before if there is one.
    fn take(&self) -> Vec<u8> {
        self.0.lock().ok().and_then(|mut s| s.pop()).unwrap_or_default()
    }

    fn put(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut s) = self.0.lock()
            && s.len() < 4 * IN_FLIGHT_PER_THREAD
        {
            s.push(buf);
        }
    }
}

/// The length a member of ours records, `None` for anything else (another writer's member,
/// or fewer bytes than a header).
fn member_len(head: &[u8]) -> io::Result<Option<usize>> {
    if head.len() < HEADER_LEN || head[..HEADER.len()] != HEADER {
        return Ok(None);
    }
    let len = u32::from_le_bytes([head[16], head[17], head[18], head[19]]) as usize;
    if !(HEADER_LEN + TRAILER_LEN..=MAX_MEMBER).contains(&len) {
        return Err(damaged("a member's recorded length is impossible"));
    }
    Ok(Some(len))
}

/// The data of one whole member of ours, checked against its CRC-32 and length.
fn inflate(member: &[u8], mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    let (body, trailer) = member[HEADER_LEN..].split_at(member.len() - HEADER_LEN - TRAILER_LEN);
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]) as usize;
    out.reserve(size.min(4 * BLOCK_SIZE));
    let mut d = Decompress::new(false);
    loop {
        if out.len() == out.capacity() {
            out.reserve(64 << 10);
        }
        let before = (d.total_in(), d.total_out());
        let status =
            d.decompress_vec(&body[before.0 as usize..], &mut out, FlushDecompress::Finish);
        match status.map_err(|e| damaged(&e.to_string()))? {
            _ if out.len() > size => return Err(damaged("a member holds more than it says")),
            Status::StreamEnd => break,
            _ if (d.total_in(), d.total_out()) == before => {
                return Err(damaged("a member ends before its deflate data does"));
            }
            _ => {}
        }
    }
    let mut sum = flate2::Crc::new();
    sum.update(&out);
    if d.total_in() as usize != body.len() || out.len() != size || sum.sum() != crc {
        return Err(damaged("a member's CRC or length does not match its data"));
    }
    Ok(out)
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {what}"))
}

/// The worker threads and their job queue.
struct Workers {
    jobs: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// `threads` threads named `name-N`, each running `f` on the blocks submitted.
    fn start<F>(threads: usize, name: &str, f: F) -> io::Result<Workers>
    where
        F: Fn(Vec<u8>) -> io::Result<Vec<u8>> + Clone + Send + 'static,
    {
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads * IN_FLIGHT_PER_THREAD);
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = Workers { jobs: Some(jobs), threads: Vec::with_capacity(threads) };
        for i in 0..threads {
            let (queue, f) = (Arc::clone(&queue), f.clone());
            let thread = thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&queue, f))
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot start a {name} thread: {e}"))
                })?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Queue `block`; its result arrives on the receiver.
    fn submit(&self, block: Vec<u8>) -> io::Result<Receiver<io::Result<Vec<u8>>>> {
        let (done, result) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(Job { block, done }).map_err(|_| stopped())?;
        Ok(result)
    }

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
    /// Unfinished (the backup or restore failed): let the threads end after their current block.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn work(queue: &Mutex<Receiver<Job>>, f: impl Fn(Vec<u8>) -> io::Result<Vec<u8>>) {
    loop {
        // Hold the lock only to take a job. A poisoned lock means another worker panicked
        // there; stopping is fine since the owner reports the lost block.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(Job { block, done }) = job else { return };
        // The owner may have gone away (dropped unfinished): nothing to report to.
        let _ = done.send(f(block));
    }
}

/// One gzip member of `block`, its length in the header.
fn compress(block: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let out = Vec::with_capacity(HEADER_LEN + block.len() / 2 + 64);
    // flate2 writes HEADER with this extra field (`FZ`, 4 bytes); the length is filled in
    // at the end.
    let mut extra = HEADER[12..].to_vec();
    extra.extend_from_slice(&[0; 4]);
    let mut gz = flate2::GzBuilder::new().extra(extra).write(out, flate2::Compression::new(level));
    gz.write_all(block)?;
    let mut out = gz.finish()?;
    if out[..HEADER.len()] != HEADER {
        return Err(io::Error::other("flate2 wrote an unexpected gzip header"));
    }
    let len = u32::try_from(out.len()).map_err(|_| io::Error::other("gzip member too long"))?;
    out[HEADER.len()..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

fn stopped() -> io::Error {
    io::Error::other("a gzip thread stopped unexpectedly (it panicked)")
}
