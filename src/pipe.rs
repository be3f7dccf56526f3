//! A `Write` stage that runs the next stage on its own thread, like a shell pipe between two
//! processes: the walk and tar formatting, the compressor's input side, and the hashing and
//! storing of segments then overlap instead of taking turns on one core.
//!
//! Memory stays bounded: at most `depth` chunks of `chunk` bytes are in flight.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

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
    fn error_at_finish() {
        let mut p = Pipe::new(Failing(10), 1024, 4).unwrap();
        p.write_all(&[0u8; 100]).unwrap();
        assert_eq!(p.finish().unwrap_err().kind(), io::ErrorKind::StorageFull);
    }
}
