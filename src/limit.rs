//! `--upload-limit` / `--download-limit`: bandwidth limits enforced inside the process.
//!
//! freezer-agent re-executed itself under `trickle`, which missed HTTPS traffic and read its
//! bytes-per-second option as KB/s. Here a token bucket ([`RateLimit`]) meters the bytes that
//! cross the storage boundary: [`Limited`] wraps any storage, so every storage gets the limits,
//! and [`LimitedReader`] / [`LimitedWriter`] meter any other stream.
//!
//! The bucket holds at most `max(rate / 10, 64 KiB)` bytes of credit and may go into debt: a
//! caller takes what it needs and sleeps until the debt is paid back. Over a long transfer the
//! average stays on the rate however large each piece is (a whole segment, say), and several
//! threads sharing one `Arc<RateLimit>` share the rate.

use std::io::{self, Read, Write};
use std::num::{IntErrorKind, ParseIntError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::interrupt;
use crate::storage::{Limits, SegmentRef, Storage, StorageWrite, Upload};

/// Smallest burst: below this, per-call overhead would dominate small rates.
const MIN_BURST: u64 = 64 << 10;

/// Longest single sleep, so that SIGTERM stops a throttled run promptly.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// Parse a `--upload-limit` / `--download-limit` value: bytes per second, with an optional
/// `K`, `M` or `G` suffix (powers of 1024, either case). `-1`, the agent's default, means no
/// limit (`None`). `option` names the option in the error, e.g. `"--upload-limit"`.
pub fn parse_rate(option: &str, value: &str) -> Result<Option<u64>> {
    let s = value.trim();
    if s == "-1" {
        return Ok(None);
    }
    let bad = |why: &str| {
        Error::usage(format!(
            "invalid {option} '{value}': {why}; give bytes per second, optionally with a \
             K, M or G suffix (e.g. 10M), or -1 for no limit"
        ))
    };
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        Some(_) => (s, 1),
        None => return Err(bad("it is empty")),
    };
    let n: u64 = num.trim().parse().map_err(|e: ParseIntError| match e.kind() {
        IntErrorKind::PosOverflow => bad("it is too large"),
        _ => bad("it is not a whole number"),
    })?;
    match n.checked_mul(mult) {
        Some(0) => Err(bad("a limit of 0 would stop all transfers")),
        Some(rate) => Ok(Some(rate)),
        None => Err(bad("it is too large")),
    }
}

/// A token bucket: `take(n)` returns once `n` more bytes fit within the rate.
#[derive(Debug)]
pub struct RateLimit {
    rate: u64,
    burst: u64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Credit in bytes; negative while callers sleep off a debt.
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A limit of `rate` bytes per second (at least 1), starting with a full burst of credit.
    pub fn new(rate: u64) -> RateLimit {
        let rate = rate.max(1);
        let burst = (rate / 10).max(MIN_BURST);
        let state = Mutex::new(Bucket { tokens: burst as f64, last: Instant::now() });
        RateLimit { rate, burst, state }
    }

    /// `Some(Arc<RateLimit>)` for `Some(rate)`, as [`parse_rate`] returns it.
    pub fn shared(rate: Option<u64>) -> Option<Arc<RateLimit>> {
        rate.map(|r| Arc::new(RateLimit::new(r)))
    }

    /// The rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The most bytes that pass without waiting after an idle spell; streams are metered in
    /// pieces of at most this size.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Account for `bytes` and sleep as long as the rate requires. Fails only when SIGTERM or
    /// SIGINT arrives during the sleep.
    pub fn take(&self, bytes: u64) -> Result<()> {
        let wait = self.reserve(bytes);
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            interrupt::check()?;
            std::thread::sleep(left.min(SLEEP_SLICE));
        }
    }

    /// Refill by the time elapsed, take `bytes`, and say how long the debt takes to repay.
    fn reserve(&self, bytes: u64) -> Duration {
        // A panic elsewhere while holding the lock leaves a usable bucket: keep going.
        let mut b = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = now;
        let rate = self.rate as f64;
        b.tokens = (b.tokens + elapsed * rate).min(self.burst as f64) - bytes as f64;
        if b.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-b.tokens / rate) }
    }

    /// The size of the next piece of a `len`-byte buffer.
    fn piece(&self, len: usize) -> usize {
        len.min(usize::try_from(self.burst).unwrap_or(usize::MAX))
    }
}

/// A reader that delivers at most the rate of its [`RateLimit`].
pub struct LimitedReader<R> {
    inner: R,
    limit: Arc<RateLimit>,
}

impl<R> LimitedReader<R> {
    /// Meter `inner` against `limit` (which other streams may share).
    pub fn new(inner: R, limit: Arc<RateLimit>) -> LimitedReader<R> {
        LimitedReader { inner, limit }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = self.limit.piece(buf.len());
        let n = self.inner.read(&mut buf[..len])?;
        // Paid after the read: only then is the count known.
        self.limit.take(n as u64)?;
        Ok(n)
    }
}

/// A writer that accepts at most the rate of its [`RateLimit`].
pub struct LimitedWriter<W> {
    inner: W,
    limit: Arc<RateLimit>,
}

impl<W> LimitedWriter<W> {
    /// Meter `inner` against `limit` (which other streams may share).
    pub fn new(inner: W, limit: Arc<RateLimit>) -> LimitedWriter<W> {
        LimitedWriter { inner, limit }
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for LimitedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = self.limit.piece(buf.len());
        let n = self.inner.write(&buf[..len])?;
        self.limit.take(n as u64)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A storage with upload and download limits: segments and small objects written count
/// against `upload`, objects read against `download`. Listing and deleting are not metered.
pub struct Limited<S> {
    inner: S,
    upload: Option<Arc<RateLimit>>,
    download: Option<Arc<RateLimit>>,
}

impl<S> Limited<S> {
    /// Wrap `inner`; `None` leaves that direction unlimited.
    pub fn new(inner: S, upload: Option<u64>, download: Option<u64>) -> Limited<S> {
        Limited { inner, upload: RateLimit::shared(upload), download: RateLimit::shared(download) }
    }

    /// The wrapped storage.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: Storage> Storage for Limited<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(key)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let data = self.inner.get(key)?;
        if let (Some(limit), Some(data)) = (&self.download, &data) {
            limit.take(data.len() as u64)?;
        }
        Ok(data)
    }

    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>> {
        let data = self.inner.read_segment(key, segment)?;
        if let Some(limit) = &self.download {
            limit.take(data.len() as u64)?;
        }
        Ok(data)
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.inner.size(key)
    }

    fn parallel_reads(&self) -> usize {
        self.inner.parallel_reads()
    }

    fn container_exists(&self) -> Result<bool> {
        self.inner.container_exists()
    }

    fn limits(&self) -> Result<Limits> {
        self.inner.limits()
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let reader = self.inner.open(key)?;
        Ok(match &self.download {
            Some(limit) => Box::new(LimitedReader::new(reader, Arc::clone(limit))),
            None => reader,
        })
    }
}

impl<S: StorageWrite> StorageWrite for Limited<S> {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        if let Some(limit) = &self.upload {
            limit.take(data.len() as u64)?;
        }
        self.inner.put(key, data)
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        let upload = self.inner.create(key)?;
        Ok(match &self.upload {
            Some(limit) => Box::new(LimitedUpload { inner: upload, limit: Arc::clone(limit) }),
            None => upload,
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }

    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        if let Some(limit) = &self.upload {
            limit.take(data.len() as u64)?;
        }
        self.inner.create_new(key, data)
    }
}

/// Each segment is paid for before it is stored: a segment is one call, so the rate holds on
/// average over segments, not within one.
struct LimitedUpload {
    inner: Box<dyn Upload>,
    limit: Arc<RateLimit>,
}

impl Upload for LimitedUpload {
    fn put_segment(&mut self, index: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        self.limit.take(data.len() as u64)?;
        self.inner.put_segment(index, data)
    }

    fn streams(&self) -> bool {
        self.inner.streams()
    }

    fn put_part(&mut self, index: u64, data: &[u8]) -> Result<()> {
        self.limit.take(data.len() as u64)?;
        self.inner.put_part(index, data)
    }

    fn commit(self: Box<Self>) -> Result<()> {
        self.inner.commit()
    }

    fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort()
    }
}

#[cfg(test)]
mod tests;
