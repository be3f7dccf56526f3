use std::io::{self, Read, Write};
use std::process::{Command, Stdio};

use super::*;
use crate::ErrorKind;

const MIB: usize = 1 << 20;
const BLOCK: usize = pgzip::BLOCK_SIZE;

/// Deterministic noise (xorshift), incompressible.
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Repetitive text, very compressible.
fn text(len: usize) -> Vec<u8> {
    let line = b"usr/share/doc/freezer/changelog.gz 0644 root root 1700000000\n";
    line.iter().copied().cycle().take(len).collect()
}

fn compress(c: Compression, data: &[u8], threads: usize) -> Vec<u8> {
    let mut enc = c.encoder(Vec::new(), threads).unwrap();
    // Odd-sized writes, as a tar writer makes.
    for chunk in data.chunks(100_003) {
        enc.write_all(chunk).unwrap();
    }
    enc.finish().unwrap()
}

fn decompress(c: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    c.decoder(data, 2)?.read_to_end(&mut out)?;
    Ok(out)
}

/// Thread counts worth testing: only zstd and gzip use threads.
fn thread_counts(c: Compression) -> &'static [usize] {
    match c {
        Compression::Zstd | Compression::Gzip => &[1, 2],
        _ => &[1],
    }
}

/// Run `cmd args` with `input` on stdin; its stdout.
fn cli(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in");
    std::fs::write(&path, input).unwrap();
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::from(std::fs::File::open(&path).unwrap()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn cli_name(c: Compression) -> &'static str {
    match c {
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
        Compression::Bzip2 => "bzip2",
        Compression::Xz => "xz",
        Compression::None => unreachable!(),
    }
}

const CODECS: [Compression; 4] =
    [Compression::Zstd, Compression::Gzip, Compression::Bzip2, Compression::Xz];

#[test]
fn names_parse_back() {
    for c in Compression::ALL {
        assert_eq!(Compression::parse(c.name()).unwrap(), c);
    }
    let err = Compression::parse("lz4").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains("zstd, gzip, bzip2, xz, none"), "{err}");
}

#[test]
fn detect_reads_each_magic() {
    for c in CODECS {
        for threads in [1, 2] {
            assert_eq!(Compression::detect(&compress(c, b"x", threads)), Some(c), "{c:?}");
        }
    }
    assert_eq!(Compression::detect(b""), None);
    assert_eq!(Compression::detect(&[0x1f]), None);
    assert_eq!(Compression::detect(b"ustar\0"), None);
}

#[test]
fn round_trip_every_codec_and_size() {
    let sizes = [0, 1, 1000, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345];
    for c in Compression::ALL {
        for &threads in thread_counts(c) {
            for &size in &sizes {
                for data in [random(size, size as u64), text(size)] {
                    let packed = compress(c, &data, threads);
                    let unpacked = decompress(c, &packed).unwrap();
                    assert!(unpacked == data, "{c:?} threads={threads} size={size}");
                }
            }
        }
    }
}

#[test]
fn cli_reads_ours() {
    for c in CODECS {
        for &threads in thread_counts(c) {
            for data in [Vec::new(), random(BLOCK + 1, 7), text(3 * BLOCK + 5)] {
                let packed = compress(c, &data, threads);
                let unpacked = cli(cli_name(c), &["-dc"], &packed);
                assert!(unpacked == data, "{c:?} threads={threads} size={}", data.len());
            }
        }
    }
}

#[test]
fn we_read_the_cli() {
    for c in CODECS {
        for data in [Vec::new(), random(1000, 3), text(2 * MIB + 3)] {
            let packed = cli(cli_name(c), &["-c"], &data);
            assert!(decompress(c, &packed).unwrap() == data, "{c:?} size={}", data.len());
        }
    }
}

#[test]
fn parallel_gzip_writes_several_members() {
    let data = random(3 * BLOCK, 11);
    let packed = compress(Compression::Gzip, &data, 2);
    // One member per block; a single-member reader stops after the first.
    let mut first = Vec::new();
    flate2::read::GzDecoder::new(&packed[..]).read_to_end(&mut first).unwrap();
    assert_eq!(first.len(), BLOCK);
}

#[test]
fn parallel_gzip_flush_and_small_blocks() {
    let data = text(10_000);
    let mut enc = pgzip::Encoder::with_block_size(Vec::new(), 6, 3, 7).unwrap();
    for chunk in data.chunks(13) {
        enc.write_all(chunk).unwrap();
    }
    enc.flush().unwrap();
    enc.write_all(b"tail").unwrap();
    let packed = enc.finish().unwrap();
    let mut expected = data.clone();
    expected.extend_from_slice(b"tail");
    assert!(decompress(Compression::Gzip, &packed).unwrap() == expected);
    assert!(cli("gzip", &["-dc"], &packed) == expected);
}

#[test]
fn parallel_gzip_dropped_unfinished_does_not_hang() {
    let mut enc = Compression::Gzip.encoder(Vec::new(), 2).unwrap();
    enc.write_all(&random(5 * BLOCK, 5)).unwrap();
    drop(enc);
}

/// A writer that fails once it has taken `limit` bytes.
struct FailingWriter {
    taken: usize,
    limit: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.limit - self.taken);
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::other("disk full"));
        }
        self.taken += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn inner_write_error_surfaces() {
    for c in Compression::ALL {
        for threads in [1, 2] {
            let mut enc = c.encoder(FailingWriter { taken: 0, limit: 1000 }, threads).unwrap();
            let data = random(4 * BLOCK, 9);
            let result = enc.write_all(&data).and_then(|()| enc.finish().map(drop));
            let err = result.expect_err("the write error is lost");
            assert!(err.to_string().contains("disk full"), "{c:?}: {err}");
        }
    }
}

#[test]
fn concatenated_streams_decode_whole() {
    for c in CODECS {
        let mut packed = compress(c, b"first ", 1);
        packed.extend(compress(c, b"second", 1));
        assert_eq!(decompress(c, &packed).unwrap(), b"first second", "{c:?}");
    }
}

#[test]
fn damaged_data_is_corrupt() {
    let data = random(100_000, 1);
    for c in CODECS {
        let packed = compress(c, &data, 1);
        let truncated = &packed[..packed.len() / 2];
        let err = decompress(c, truncated).expect_err("truncation not seen");
        assert_eq!(Error::from(err).kind(), ErrorKind::Corrupt, "{c:?} truncated");

        let mut flipped = packed.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x40;
        let err = decompress(c, &flipped).expect_err("flipped byte not seen");
        let err = Error::from(err);
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{c:?} flipped");
        assert!(err.to_string().contains(c.name()), "{err}");
    }
}

/// Reads `data`, then fails with a storage error.
struct BrokenStorage<'a>(&'a [u8]);

impl Read for BrokenStorage<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(Error::storage("connection reset by the storage").into());
        }
        self.0.read(buf)
    }
}

#[test]
fn storage_errors_pass_through() {
    let data = random(100_000, 2);
    for c in Compression::ALL {
        let packed = compress(c, &data, 1);
        let mut out = Vec::new();
        let err = c
            .decoder(BrokenStorage(&packed[..packed.len() / 2]), 2)
            .unwrap()
            .read_to_end(&mut out)
            .expect_err("the storage error is lost");
        let err = Error::from(err);
        assert_eq!(err.kind(), ErrorKind::Storage, "{c:?}: {err}");
    }
}

#[test]
fn parallel_gzip_worker_failure_is_an_error() {
    // An invalid level makes every worker panic: the writer reports it rather than hanging.
    let mut enc = pgzip::Encoder::with_block_size(Vec::new(), 99, 2, 7).unwrap();
    let result = enc.write_all(&text(1000)).and_then(|()| enc.finish().map(drop));
    let err = result.expect_err("the worker failure is lost");
    assert!(err.to_string().contains("gzip thread stopped"), "{err}");
}

/// The members of a parallel gzip stream, split by the length each records.
fn members(packed: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = packed;
    while !rest.is_empty() {
        assert_eq!(&rest[..4], &[0x1f, 0x8b, 8, 4], "a member without FEXTRA");
        assert_eq!(&rest[12..14], b"FZ");
        let len = u32::from_le_bytes(rest[16..20].try_into().unwrap()) as usize;
        let (member, tail) = rest.split_at(len);
        out.push(member);
        rest = tail;
    }
    out
}

#[test]
fn parallel_gzip_members_record_their_length() {
    let data = random(3 * BLOCK + 10, 4);
    let packed = compress(Compression::Gzip, &data, 2);
    let found = members(&packed);
    assert_eq!(found.len(), 4);
    // Each member alone is a gzip stream of its block.
    let mut first = Vec::new();
    flate2::read::GzDecoder::new(found[1]).read_to_end(&mut first).unwrap();
    assert!(first == data[BLOCK..2 * BLOCK]);
}

#[test]
fn parallel_gunzip_goes_on_sequentially_from_a_foreign_member() {
    let ours = text(2 * BLOCK + 7);
    let mut packed = compress(Compression::Gzip, &ours, 2);
    packed.extend(compress(Compression::Gzip, b" foreign ", 1));
    packed.extend(compress(Compression::Gzip, b"ours again", 2));
    let mut expected = ours.clone();
    expected.extend_from_slice(b" foreign ours again");
    assert!(decompress(Compression::Gzip, &packed).unwrap() == expected);
    assert!(cli("gzip", &["-dc"], &packed) == expected);
}

#[test]
fn parallel_gunzip_sees_damage_in_any_member() {
    let data = random(3 * BLOCK, 9);
    let packed = compress(Compression::Gzip, &data, 2);
    // Where the second member starts.
    let second = members(&packed)[0].len();
    let corrupt = |what: &str, bytes: &[u8]| {
        let err = decompress(Compression::Gzip, bytes).expect_err(what);
        let err = Error::from(err);
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
        assert!(err.to_string().contains("gzip"), "{what}: {err}");
    };
    let mut flipped = packed.clone();
    flipped[second + 5000] ^= 0x10;
    corrupt("a flipped byte in the second member", &flipped);
    let mut crc = packed.clone();
    crc[second - 8] ^= 1;
    corrupt("a wrong CRC in the first member", &crc);
    let mut length = packed.clone();
    length[second + 16..second + 20].copy_from_slice(&9u32.to_le_bytes());
    corrupt("an impossible recorded length", &length);
    corrupt("a stream cut inside a member", &packed[..second + 100]);
    corrupt("a stream cut inside a header", &packed[..second + 12]);
}
