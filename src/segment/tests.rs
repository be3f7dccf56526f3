use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::*;
use crate::ErrorKind;

/// What a fake upload saw.
#[derive(Default)]
struct Seen {
    segments: Vec<Vec<u8>>,
    aborted: bool,
    /// Fail `put_segment` for this index.
    fail_at: Option<u64>,
}

/// An in-memory [`Upload`] sharing what it sees with the test.
struct FakeUpload(Arc<Mutex<Seen>>);

impl Upload for FakeUpload {
    fn put_segment(&mut self, index: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        let mut seen = self.0.lock().unwrap();
        if seen.fail_at == Some(index) {
            return Err(Error::storage(format!("segment {index} refused")));
        }
        assert_eq!(index, seen.segments.len() as u64, "segments out of order");
        seen.segments.push(data);
        Ok(Vec::new())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        Ok(())
    }

    fn abort(self: Box<Self>) -> Result<()> {
        self.0.lock().unwrap().aborted = true;
        Ok(())
    }
}

fn fake() -> (Box<dyn Upload>, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    (Box::new(FakeUpload(Arc::clone(&seen))), seen)
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Write `input` in pieces of `writes` lengths (cycled) and check everything.
fn check(input: &[u8], segment_size: usize, writes: &[usize]) {
    let (upload, seen) = fake();
    let mut seg = Segmenter::new(upload, segment_size);
    let mut rest = input;
    for &len in writes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(len.clamp(1, rest.len()));
        seg.write_all(now).unwrap();
        // Never more than one segment held.
        assert!(seg.buf.capacity() <= segment_size);
        rest = later;
    }
    seg.flush().unwrap();
    let (report, _upload) = seg.finish().unwrap();
    let seen = seen.lock().unwrap();

    assert_eq!(seen.segments.concat(), input);
    assert_eq!(report.size, input.len() as u64);
    assert_eq!(report.segments.len(), seen.segments.len());
    let expected_count = input.len().div_ceil(segment_size).max(1);
    assert_eq!(seen.segments.len(), expected_count);
    for (i, (info, stored)) in report.segments.iter().zip(&seen.segments).enumerate() {
        assert_eq!(info.size, stored.len() as u64);
        assert_eq!(info.sha256, sha(stored));
        if i + 1 < seen.segments.len() {
            assert_eq!(stored.len(), segment_size, "segment {i} short");
        } else if !input.is_empty() {
            assert!(!stored.is_empty(), "empty last segment");
        }
    }
}

#[test]
fn sizes_around_segment_boundaries() {
    let n = 1000;
    for len in [0, 1, n - 1, n, n + 1, 3 * n, 3 * n + 1] {
        check(&data(len), n, &[len.max(1)]);
        check(&data(len), n, &[1]);
        check(&data(len), n, &[333, 1000, 7, 2500]);
    }
}

#[test]
fn empty_stream_is_one_empty_segment() {
    let (upload, seen) = fake();
    let (report, _) = Segmenter::new(upload, 10).finish().unwrap();
    assert_eq!(report.segments, vec![SegmentInfo { size: 0, sha256: sha(b"") }]);
    assert_eq!(seen.lock().unwrap().segments, vec![Vec::<u8>::new()]);
}

#[test]
fn a_failed_segment_reaches_the_writer() {
    let (upload, seen) = fake();
    seen.lock().unwrap().fail_at = Some(1);
    let mut seg = Segmenter::new(upload, 4);
    seg.write_all(b"abcdefgh").unwrap();
    // Segment 1 is stored when the next byte arrives: that write fails.
    let err = seg.write(b"ij").expect_err("the storage error is lost");
    assert_eq!(Error::from(err).kind(), ErrorKind::Storage);
    assert_eq!(seen.lock().unwrap().segments.concat(), b"abcd");
}

#[test]
fn failed_finish_aborts_the_upload() {
    let (upload, seen) = fake();
    seen.lock().unwrap().fail_at = Some(0);
    let mut seg = Segmenter::new(upload, 4);
    seg.write_all(b"ab").unwrap();
    let err = seg.finish().map(drop).expect_err("the storage error is lost");
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert!(seen.lock().unwrap().aborted);
}

fn verify(stored: &[u8], expected: Option<(u64, String)>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    VerifyingReader::new(stored, expected, "backup host_etc level 0".into())
        .read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn verifying_reader_passes_good_data() {
    let input = data(10_000);
    let expected = Some((input.len() as u64, sha(&input)));
    assert_eq!(verify(&input, expected.clone()).unwrap(), input);
    assert_eq!(verify(&input, None).unwrap(), input);
    assert_eq!(verify(b"", Some((0, sha(b"")))).unwrap(), b"");
    // Upper-case hex, as another tool may have recorded it.
    let upper = Some((input.len() as u64, sha(&input).to_uppercase()));
    assert_eq!(verify(&input, upper).unwrap(), input);
}

#[test]
fn verifying_reader_detects_damage() {
    let input = data(10_000);
    let expected = Some((input.len() as u64, sha(&input)));

    let mut flipped = input.clone();
    flipped[5000] ^= 1;
    let err = Error::from(verify(&flipped, expected.clone()).unwrap_err());
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let msg = err.to_string();
    assert!(msg.contains("stored data of backup host_etc level 0 is damaged"), "{msg}");
    assert!(msg.contains("sha256 mismatch"), "{msg}");

    let err = Error::from(verify(&input[..9999], expected.clone()).unwrap_err());
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("9999 bytes read where 10000"), "{err}");

    let mut longer = input.clone();
    longer.push(0);
    let err = Error::from(verify(&longer, expected).unwrap_err());
    assert_eq!(err.kind(), ErrorKind::Corrupt);
}

#[test]
fn verifying_reader_finish_reads_the_rest() {
    let input = data(10_000);
    let mut bad = input.clone();
    bad[9000] ^= 1;
    for (stored, ok) in [(&input, true), (&bad, false)] {
        let expected = Some((input.len() as u64, sha(&input)));
        let mut reader = VerifyingReader::new(&stored[..], expected, "x".into());
        // A consumer that stops early, as a tar reader at the end-of-archive blocks.
        reader.read_exact(&mut [0; 100]).unwrap();
        assert_eq!(reader.finish().is_ok(), ok);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_segment_and_write_sizes(
        len in 0usize..5000,
        segment_size in 1usize..700,
        writes in prop::collection::vec(1usize..900, 1..8),
    ) {
        check(&data(len), segment_size, &writes);
    }
}

/// An upload that takes parts, as local files do.
struct StreamingFake(Arc<Mutex<Seen>>);

impl Upload for StreamingFake {
    fn put_segment(&mut self, _: u64, _: Vec<u8>) -> Result<Vec<u8>> {
        panic!("a streaming upload gets parts");
    }
    fn streams(&self) -> bool {
        true
    }
    fn put_part(&mut self, index: u64, data: &[u8]) -> Result<()> {
        let mut seen = self.0.lock().unwrap();
        let n = seen.segments.len() as u64;
        if index == n {
            seen.segments.push(Vec::new());
        } else {
            assert_eq!(index + 1, n, "parts out of order");
        }
        seen.segments.last_mut().unwrap().extend_from_slice(data);
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<()> {
        Ok(())
    }
    fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

#[test]
fn streaming_uploads_get_the_same_segments_and_hashes() {
    for (len, seg, w) in
        [(0usize, 10usize, 3usize), (1, 10, 1), (100, 10, 7), (101, 10, 10), (5000, 64, 100)]
    {
        let input = data(len);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut s = Segmenter::new(Box::new(StreamingFake(seen.clone())), seg);
        for piece in input.chunks(w) {
            s.write_all(piece).unwrap();
        }
        let (report, _) = s.finish().unwrap();
        let (buffered, bseen) = fake();
        let mut b = Segmenter::new(buffered, seg);
        b.write_all(&input).unwrap();
        let (breport, _) = b.finish().unwrap();
        assert_eq!(report, breport, "len {len} seg {seg}");
        assert_eq!(seen.lock().unwrap().segments, bseen.lock().unwrap().segments);
    }
}
