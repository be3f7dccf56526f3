//! Compression stage of the backup stream: tar → **compress** → encrypt → segment → storage.
//!
//! [`Compression::encoder`] wraps a writer; [`Encoder::finish`] ends the stream and hands the
//! writer back. [`Compression::decoder`] wraps a reader for restore. Every format is what the
//! matching CLI (`zstd`, `gzip`, `bzip2`, `xz`) writes and reads, so freezer-agent's backups
//! (tar `-z/-j/-J`) restore here and ours restore with plain tools. Decoders accept
//! concatenated streams: parallel gzip writes one member per block (and reads those members
//! on several threads).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

mod pgzip;
#[cfg(test)]
mod tests;

/// Bytes per zstd multithreading job.
const ZSTD_JOB_SIZE: u32 = 4 << 20;

/// zstd level: about gzip -6's ratio at many times its speed.
const ZSTD_LEVEL: i32 = 3;
/// gzip level, as `gzip` and tar -z.
const GZIP_LEVEL: u32 = 6;
/// bzip2 block size (×100 kB), as `bzip2` and tar -j.
const BZIP2_LEVEL: u32 = 9;
/// xz preset, as `xz` and tar -J.
const XZ_PRESET: u32 = 6;

/// A compression format of the backup stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
    Bzip2,
    Xz,
    None,
}

impl Compression {
    /// Every format, in the order shown to users.
    pub const ALL: [Compression; 5] = [
        Compression::Zstd,
        Compression::Gzip,
        Compression::Bzip2,
        Compression::Xz,
        Compression::None,
    ];

    /// The name used on the command line and in backup metadata (freezer-agent writes
    /// "gzip", "bzip2", "xz").
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::None => "none",
        }
    }

    /// Parse a name written by [`Compression::name`].
    pub fn parse(s: &str) -> Result<Self> {
        Compression::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Compression::ALL.iter().map(|c| c.name()).collect();
            Error::usage(format!("unknown compression {s:?}: use one of {}", names.join(", ")))
        })
    }

    /// The format whose magic number starts `magic`, or `None` for uncompressed or unknown
    /// data (or fewer bytes than the magic). Six bytes are enough for every format.
    pub fn detect(magic: &[u8]) -> Option<Compression> {
        const MAGICS: [(&[u8], Compression); 4] = [
            (&[0x1f, 0x8b], Compression::Gzip),
            (b"BZh", Compression::Bzip2),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Compression::Xz),
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
        ];
        MAGICS.iter().find(|(m, _)| magic.starts_with(m)).map(|&(_, c)| c)
    }

    /// Start compressing into `inner`, using up to `threads` cores (zstd and gzip only).
    pub fn encoder<W: Write + Send + 'static>(
        self,
        inner: W,
        threads: usize,
    ) -> io::Result<Encoder<W>> {
        let threads = threads.max(1);
        let codec = match self {
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(inner, ZSTD_LEVEL)?;
                // The zstd CLI writes a checksum too; it catches damage inside a frame.
                enc.include_checksum(true)?;
                if threads > 1 {
                    enc.multithread(u32::try_from(threads).unwrap_or(u32::MAX))?;
                    // The default job (8 MiB at level 3) puts peak memory at ~128 MiB with
                    // 32 MiB segments; 4 MiB jobs: ~92 MiB, as fast (2 MiB: 75 MiB, 20 % slower).
                    enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                }
                Codec::Zstd(enc)
            }
            Compression::Gzip if threads > 1 => {
                Codec::ParallelGzip(pgzip::Encoder::new(inner, GZIP_LEVEL, threads)?)
            }
            Compression::Gzip => Codec::Gzip(flate2::write::GzEncoder::new(
                inner,
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Compression::Bzip2 => Codec::Bzip2(bzip2::write::BzEncoder::new(
                inner,
                bzip2::Compression::new(BZIP2_LEVEL),
            )),
            Compression::Xz => Codec::Xz(liblzma::write::XzEncoder::new(inner, XZ_PRESET)),
            Compression::None => Codec::None(inner),
        };
        Ok(Encoder { codec })
    }

    /// Decompress `inner`, the gzip members we write on up to `threads` cores. Damaged or
    /// truncated data reads as an error of kind [`crate::ErrorKind::Corrupt`]; errors of
    /// `inner` itself come through unchanged.
    pub fn decoder<'a, R: Read + Send + 'a>(
        self,
        inner: R,
        threads: usize,
    ) -> io::Result<Box<dyn Read + Send + 'a>> {
        let inner_failed = Arc::new(AtomicBool::new(false));
        let tap = Tap { inner, failed: Arc::clone(&inner_failed) };
        let decoded: Box<dyn Read + Send + 'a> = match self {
            // Both read concatenated frames/members until the end of the input.
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(tap)?),
            Compression::Gzip if threads > 1 => Box::new(pgzip::Decoder::new(tap, threads)),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(tap)),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(tap)),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(tap)),
            Compression::None => return Ok(Box::new(tap.inner)),
        };
        Ok(Box::new(Decoder { decoded, inner_failed, name: self.name() }))
    }
}

/// A compressing writer made by [`Compression::encoder`].
pub struct Encoder<W: Write> {
    codec: Codec<W>,
}

enum Codec<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
    ParallelGzip(pgzip::Encoder<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
    None(W),
}

impl<W: Write> Encoder<W> {
    /// Write the end of the stream, flush, and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        let mut inner = match self.codec {
            Codec::Zstd(e) => e.finish()?,
            Codec::Gzip(e) => e.finish()?,
            Codec::ParallelGzip(e) => e.finish()?,
            Codec::Bzip2(e) => e.finish()?,
            Codec::Xz(e) => e.finish()?,
            Codec::None(w) => w,
        };
        inner.flush()?;
        Ok(inner)
    }

    fn writer(&mut self) -> &mut dyn Write {
        match &mut self.codec {
            Codec::Zstd(e) => e,
            Codec::Gzip(e) => e,
            Codec::ParallelGzip(e) => e,
            Codec::Bzip2(e) => e,
            Codec::Xz(e) => e,
            Codec::None(w) => w,
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer().flush()
    }
}

/// Records whether the last error came from the wrapped reader, so [`Decoder`] can tell a
/// storage failure from damaged data.
struct Tap<R> {
    inner: R,
    failed: Arc<AtomicBool>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        self.failed.store(result.is_err(), Ordering::Relaxed);
        result
    }
}

/// Turns the codec's own errors into [`Error::corrupt`].
struct Decoder<'a> {
    decoded: Box<dyn Read + Send + 'a>,
    inner_failed: Arc<AtomicBool>,
    name: &'static str,
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner_failed.store(false, Ordering::Relaxed);
        match self.decoded.read(buf) {
            Err(e)
                if !self.inner_failed.load(Ordering::Relaxed)
                    && e.kind() != io::ErrorKind::Interrupted =>
            {
                let name = self.name;
                Err(Error::corrupt(format!("the {name} data is damaged or truncated"))
                    .with_source(e)
                    .into())
            }
            other => other,
        }
    }
}
