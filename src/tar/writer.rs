//! [`TarWriter`]: members in, a GNU tar byte stream out, through one large buffer so file
//! data moves in big chunks and is copied once.

use std::io::{self, Read, Write};

use super::header::{self, BLOCK, NAME_FIELD, SPARSE_IN_EXT, SPARSE_IN_HEADER};
use super::layout::{Piece, invalid, sparse_layout};
use super::{Header, Kind};

/// Buffer size: file data is read into it and written out in chunks of this size.
const CHUNK: usize = 256 * 1024;

/// GNU tar's default record size (20 blocks); the archive is padded to a multiple of it.
const RECORD: u64 = 10240;

/// What [`TarWriter::append`] did with the member's data.
#[derive(Debug, Default)]
pub struct Appended {
    /// Data bytes missing from the reader (the file shrank, or a read failed), written as
    /// zeros so the archive stays valid. GNU tar: "File shrank by N bytes; padding with zeros".
    pub short: u64,
    /// The error that stopped reading the data, if any; `short` bytes were padded after it.
    /// The archive is still valid; the member's content is not.
    pub read_error: Option<io::Error>,
}

/// Writes a GNU tar stream to `W`. Call [`TarWriter::finish`] at the end: dropping the
/// writer loses buffered bytes and the end-of-archive blocks. After an `Err` from `W` the
/// stream is incomplete and must be abandoned.
pub struct TarWriter<W: Write> {
    inner: W,
    buf: Box<[u8]>,
    len: usize,
    written: u64,
}

impl<W: Write> TarWriter<W> {
    /// A writer with an empty archive.
    pub fn new(inner: W) -> Self {
        TarWriter { inner, buf: vec![0u8; CHUNK].into_boxed_slice(), len: 0, written: 0 }
    }

    /// Bytes of archive produced so far (buffered ones included).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Append one member. For [`Kind::File`] and [`Kind::Sparse`] exactly the data bytes are
    /// read from `data` (the file size, or the sum of the map's lengths); if `data`
    /// ends early or fails, the rest is padded with zeros and reported in [`Appended`];
    /// bytes beyond the count are not read. `data` is ignored for other kinds.
    ///
    /// Errors: `InvalidInput` for a member GNU tar cannot represent (empty name, NUL in a
    /// name, a bad sparse map, an id ≥ 2^56, no `data` for a file), before anything is
    /// written; otherwise the errors of `W`.
    pub fn append(
        &mut self,
        h: &Header,
        kind: Kind,
        data: Option<&mut dyn Read>,
    ) -> io::Result<Appended> {
        check_name(h.name, h.name, "name")?;
        if let Kind::Symlink { target } | Kind::HardLink { target } = kind {
            check_name(h.name, target, "link target")?;
        }
        let (map, pieces) = match kind {
            Kind::Sparse { size, map } => {
                sparse_layout(size, map).map_err(|what| invalid(h.name, &what))?
            }
            Kind::File { size } => (Vec::new(), vec![Piece::Data(size)]),
            _ => (Vec::new(), Vec::new()),
        };
        let stored = match kind {
            Kind::File { size } => size,
            Kind::Sparse { .. } => map.iter().map(|&(_, len)| len).sum(),
            Kind::Dumpdir { dumpdir } => dumpdir.len() as u64,
            _ => 0,
        };
        let needs_data = matches!(kind, Kind::File { .. } | Kind::Sparse { .. }) && stored > 0;
        if needs_data && data.is_none() {
            return Err(invalid(h.name, "no data reader was given for a file member"));
        }
        // Build every header before writing, so a refused member leaves no trace.
        let mut main = header::member(h, &kind, stored)?;
        let mut ext = Vec::new();
        if let Kind::Sparse { size, .. } = kind {
            header::set_sparse(&mut main, size, &map)?;
            let rest = map.get(SPARSE_IN_HEADER..).unwrap_or_default();
            let mut chunks = rest.chunks(SPARSE_IN_EXT).peekable();
            while let Some(chunk) = chunks.next() {
                ext.push(header::sparse_ext(chunk, chunks.peek().is_some())?);
            }
        }
        header::set_checksum(&mut main);

        // GNU order: the link target's `K` member, then the name's `L` member.
        if let Kind::Symlink { target } | Kind::HardLink { target } = kind
            && target.len() > NAME_FIELD
        {
            self.long_link(b'K', target)?;
        }
        if h.name.len() > NAME_FIELD {
            self.long_link(b'L', h.name)?;
        }
        self.push(&main)?;
        for block in &ext {
            self.push(block)?;
        }

        let mut done = Appended::default();
        match (kind, data) {
            (Kind::Dumpdir { dumpdir }, _) => {
                self.push(dumpdir)?;
                self.pad_block()?;
            }
            (Kind::File { .. } | Kind::Sparse { .. }, Some(data)) => {
                for piece in pieces {
                    match piece {
                        Piece::Data(n) => self.copy(data, n, &mut done)?,
                        Piece::Zeros(n) => self.zeros(n)?,
                    }
                }
                self.pad_block()?;
            }
            _ => {}
        }
        Ok(done)
    }

    /// End the archive: two zero blocks, then zeros up to a multiple of 10240 bytes, as GNU
    /// tar does. Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.zeros(2 * BLOCK as u64)?;
        let rem = self.written % RECORD;
        if rem != 0 {
            self.zeros(RECORD - rem)?;
        }
        self.flush_buf()?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// A `././@LongLink` member carrying `name` and its NUL.
    fn long_link(&mut self, typeflag: u8, name: &[u8]) -> io::Result<()> {
        self.push(&header::long_link(typeflag, name.len() as u64 + 1)?)?;
        self.push(name)?;
        self.zeros(1)?;
        self.pad_block()
    }

    /// Copy `n` bytes from `data` straight into the buffer; pad what is missing and count it
    /// in `done`. Once `data` has ended or failed, it is not read again.
    fn copy(&mut self, data: &mut dyn Read, mut n: u64, done: &mut Appended) -> io::Result<()> {
        while n > 0 && done.short == 0 && done.read_error.is_none() {
            if self.len == self.buf.len() {
                self.flush_buf()?;
            }
            let room = (self.buf.len() - self.len).min(usize::try_from(n).unwrap_or(usize::MAX));
            match data.read(&mut self.buf[self.len..self.len + room]) {
                Ok(0) => break,
                Ok(k) => {
                    let k = k.min(room);
                    self.len += k;
                    self.written += k as u64;
                    n -= k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => done.read_error = Some(e),
            }
        }
        done.short += n;
        self.zeros(n)
    }

    /// Zeros up to the next block boundary.
    fn pad_block(&mut self) -> io::Result<()> {
        let rem = self.written % BLOCK as u64;
        if rem == 0 { Ok(()) } else { self.zeros(BLOCK as u64 - rem) }
    }

    fn push(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush_buf()?;
            }
            let k = (self.buf.len() - self.len).min(bytes.len());
            self.buf[self.len..self.len + k].copy_from_slice(&bytes[..k]);
            self.len += k;
            self.written += k as u64;
            bytes = &bytes[k..];
        }
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            if self.len == self.buf.len() {
                self.flush_buf()?;
            }
            let k = (self.buf.len() - self.len).min(usize::try_from(n).unwrap_or(usize::MAX));
            self.buf[self.len..self.len + k].fill(0);
            self.len += k;
            self.written += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.buf[..self.len])?;
        self.len = 0;
        Ok(())
    }
}

/// Names and targets are NUL-terminated in tar: an empty one or one holding a NUL cannot be
/// stored.
fn check_name(member: &[u8], s: &[u8], what: &str) -> io::Result<()> {
    if s.is_empty() {
        return Err(invalid(member, &format!("empty {what}")));
    }
    if s.contains(&0) {
        return Err(invalid(member, &format!("the {what} contains a NUL byte")));
    }
    Ok(())
}
