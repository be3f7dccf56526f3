//! A `Write` stage that runs the next stage on its own thread, like a shell pipe between two
//! processes: the walk and tar formatting, the compressor's input side, and the hashing and
//! storing of segments then overlap instead of taking turns on one core.
//!
//! [`ReadAhead`] is the same for a `Read` stage: a restore reads, checks, decrypts and
//! decompresses on one thread while tar extraction writes files on another.
//!
//! Memory stays bounded: at most `depth` chunks of `chunk` bytes are in flight.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{JoinHandle, Scope};

/// The writing end; the wrapped writer lives on the pipe's thread until [`Pipe::finish`].
pub struct Pipe<W: Write + Send + 'static> {
    buf: Vec<u8>,
    chunk: usize,
    tx: Option<SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> Pipe<W> {
    /// Start a thread that writes everything sent through the pipe into `inner`.
    pub fn new(inner: W, chunk: usize, depth: usize) -> io::Result<Pipe<W>> {
        let (tx, rx) = sync_channel::<Vec<u8>>(depth.max(1));
        let worker = std::thread::Builder::new()
            .name("freezer-pipe".into())
            .spawn(move || drain(rx, inner))?;
        Ok(Pipe {
            buf: Vec::with_capacity(chunk),
            chunk: chunk.max(1),
            tx: Some(tx),
            worker: Some(worker),
        })
    }

    /// Send what is buffered, wait for the thread to write it all, and return the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let sent = self.send();
        self.tx = None; // closing the channel ends the thread's loop
        let joined = match self.worker.take() {
            Some(w) => {
                w.join().map_err(|_| io::Error::other("a pipeline thread stopped unexpectedly"))?
            }
            None => Err(io::Error::other("pipeline already finished")),
        };
        // The thread's own error explains a failed send better than "channel closed".
        let inner = joined?;
        sent?;
        Ok(inner)
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        match &self.tx {
            Some(tx) => tx.send(full).map_err(|_| self.failure()),
            None => Err(io::Error::other("pipeline already finished")),
        }
    }

    /// The thread has stopped: collect its error.
    fn failure(&mut self) -> io::Error {
        self.tx = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("a pipeline thread stopped unexpectedly"),
            _ => io::Error::other("a pipeline thread stopped early"),
        }
    }
}

impl<W: Write + Send + 'static> Drop for Pipe<W> {
    /// On failure paths: let the thread finish and drop the writer (an unfinished upload
    /// removes its temporary data) before the caller goes on.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn drain<W: Write>(rx: Receiver<Vec<u8>>, mut inner: W) -> io::Result<W> {
    for chunk in rx {
        inner.write_all(&chunk)?;
    }
    inner.flush()?;
    Ok(inner)
}

impl<W: Write + Send + 'static> Write for Pipe<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.chunk {
            self.send()?;
        }
        Ok(n)
    }

    /// Buffered data is sent on; the thread writes it in its own time.
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A reader whose input is read ahead on a thread of a scope, in chunks.
pub struct ReadAhead {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl ReadAhead {
    /// Start reading `inner` on a thread of `scope`. If the reader is dropped early, the
    /// thread stops at its next chunk.
    pub fn start<'scope, R: Read + Send + 'scope>(
        scope: &'scope Scope<'scope, '_>,
        mut inner: R,
        chunk: usize,
        depth: usize,
    ) -> ReadAhead {
        let (tx, rx) = sync_channel(depth.max(1));
        let chunk = chunk.max(1);
        scope.spawn(move || {
            loop {
                let mut buf = vec![0u8; chunk];
                let (n, failed) = fill(&mut inner, &mut buf);
                buf.truncate(n);
                let end = n < chunk;
                if n > 0 && tx.send(Ok(buf)).is_err() {
                    return;
                }
                if let Some(e) = failed {
                    let _ = tx.send(Err(e));
                    return;
                }
                if end {
                    let _ = tx.send(Ok(Vec::new()));
                    return;
                }
            }
        });
        ReadAhead { rx, chunk: Vec::new(), pos: 0, ended: false }
    }
}

/// Read into `buf` until it is full or at the end of the input; the bytes read.
pub(crate) fn read_full(inner: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    match fill(inner, buf) {
        (_, Some(e)) => Err(e),
        (n, None) => Ok(n),
    }
}

/// Read until `buf` is full or the input ends: the count read, and the error that stopped it.
fn fill(inner: &mut (impl Read + ?Sized), buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match inner.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            // An empty chunk marks the end; a closed channel without it is a lost thread.
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.ended = chunk.is_empty();
                    (self.chunk, self.pos) = (chunk, 0);
                }
                Ok(Err(e)) => {
                    self.ended = true;
                    return Err(e);
                }
                Err(_) => return Err(io::Error::other("a read-ahead thread stopped unexpectedly")),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_arrives_in_order() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        let mut p = Pipe::new(Vec::new(), 4096, 2).unwrap();
        for piece in data.chunks(777) {
            p.write_all(piece).unwrap();
        }
        assert_eq!(p.finish().unwrap(), data);
    }

    #[derive(Debug)]
    struct Failing(usize);

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 < buf.len() {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_threads_error_reaches_the_writer() {
        let mut p = Pipe::new(Failing(10_000), 1024, 1).unwrap();
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = p.write_all(&[0u8; 1024]) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.unwrap_or_else(|| p.finish().err().unwrap());
        assert_eq!(e.kind(), io::ErrorKind::StorageFull, "{e}");
    }

    #[test]
    fn read_ahead_delivers_everything_then_the_end() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 253) as u8).collect();
        std::thread::scope(|scope| {
            let mut r = ReadAhead::start(scope, &data[..], 4096, 2);
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            assert_eq!(got, data);
            assert_eq!(r.read(&mut [0u8; 8]).unwrap(), 0);
        });
    }

    #[test]
    fn read_ahead_passes_the_error_on_and_stops_when_dropped() {
        let failing = (&[7u8; 10_000][..]).chain(FailingReader);
        std::thread::scope(|scope| {
            let mut r = ReadAhead::start(scope, failing, 1024, 1);
            let mut got = Vec::new();
            let e = r.read_to_end(&mut got).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            assert_eq!(got, vec![7u8; 10_000]);
            // Dropped with an endless input unread: the scope still ends.
            drop(ReadAhead::start(scope, io::repeat(1), 1024, 1));
        });
    }

    struct FailingReader;

    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::InvalidData, "bad segment"))
        }
    }

    #[test]
    fn error_at_finish() {
        let mut p = Pipe::new(Failing(10), 1024, 4).unwrap();
        p.write_all(&[0u8; 100]).unwrap();
        assert_eq!(p.finish().unwrap_err().kind(), io::ErrorKind::StorageFull);
    }
}
