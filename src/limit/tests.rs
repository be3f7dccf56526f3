use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::error::ErrorKind;
use crate::storage::local::LocalStorage;

const MIB: u64 = 1 << 20;

#[test]
fn parse_rate_values() {
    let ok = |s: &str| parse_rate("--upload-limit", s).unwrap();
    assert_eq!(ok("-1"), None);
    assert_eq!(ok(" -1 "), None);
    assert_eq!(ok("1"), Some(1));
    assert_eq!(ok("1000"), Some(1000));
    assert_eq!(ok("10k"), Some(10 << 10));
    assert_eq!(ok("10K"), Some(10 << 10));
    assert_eq!(ok("10M"), Some(10 << 20));
    assert_eq!(ok("2g"), Some(2 << 30));
    assert_eq!(ok("3 M"), Some(3 << 20));
}

#[test]
fn parse_rate_junk_names_the_option() {
    for junk in ["", "0", "0M", "-2", "fast", "1.5M", "10T", "M", "99999999999999999999G"] {
        let e = parse_rate("--download-limit", junk).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{junk:?}");
        let msg = e.to_string();
        assert!(msg.contains("--download-limit") && msg.contains(junk), "{msg}");
    }
}

#[test]
fn burst_is_a_tenth_of_the_rate_or_64k() {
    assert_eq!(RateLimit::new(10 * MIB).burst(), MIB);
    assert_eq!(RateLimit::new(100_000).burst(), 64 << 10);
    assert_eq!(RateLimit::new(0).rate(), 1);
}

/// Seconds to push `total` bytes through `limit` in `piece`-byte takes.
fn time_takes(limit: &RateLimit, total: u64, piece: u64) -> f64 {
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        let n = piece.min(total - done);
        limit.take(n).unwrap();
        done += n;
    }
    start.elapsed().as_secs_f64()
}

#[test]
fn take_holds_the_rate() {
    let limit = RateLimit::new(MIB);
    limit.take(limit.burst()).unwrap(); // the free start-up credit
    let secs = time_takes(&limit, MIB / 2, 16 << 10);
    assert!((0.45..0.65).contains(&secs), "{secs} s for 0.5 MiB at 1 MiB/s");
}

#[test]
fn one_large_take_sleeps_off_its_debt() {
    let limit = RateLimit::new(4 * MIB);
    let start = Instant::now();
    limit.take(2 * MIB + limit.burst()).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!((0.48..0.65).contains(&secs), "{secs} s");
}

#[test]
fn threads_share_one_limit() {
    let limit = Arc::new(RateLimit::new(2 * MIB));
    limit.take(limit.burst()).unwrap();
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let limit = Arc::clone(&limit);
            std::thread::spawn(move || time_takes(&limit, MIB / 4, 32 << 10))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // 1 MiB in all at 2 MiB/s.
    let secs = start.elapsed().as_secs_f64();
    assert!((0.45..0.7).contains(&secs), "{secs} s");
}

#[test]
fn reader_and_writer_pass_data_unchanged() {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let limit = Arc::new(RateLimit::new(100 * MIB));
    let mut back = Vec::new();
    LimitedReader::new(&data[..], Arc::clone(&limit)).read_to_end(&mut back).unwrap();
    assert_eq!(back, data);

    let mut w = LimitedWriter::new(Vec::new(), limit);
    w.write_all(&data).unwrap();
    w.flush().unwrap();
    assert_eq!(w.into_inner(), data);
}

#[test]
fn reads_and_writes_are_metered_in_burst_pieces() {
    let limit = Arc::new(RateLimit::new(MIB));
    let big = vec![7u8; MIB as usize];
    let mut w = LimitedWriter::new(Vec::new(), Arc::clone(&limit));
    assert_eq!(w.write(&big).unwrap() as u64, limit.burst());
    let mut r = LimitedReader::new(&big[..], Arc::clone(&limit));
    let mut buf = vec![0u8; MIB as usize];
    assert_eq!(r.read(&mut buf).unwrap() as u64, limit.burst());
}

#[test]
fn limited_storage_passes_everything_through() {
    let dir = tempfile::tempdir().unwrap();
    let store = Limited::new(LocalStorage::new(dir.path()).unwrap(), Some(64 * MIB), Some(MIB));
    store.put("a/metadata", b"{}").unwrap();
    assert_eq!(store.get("a/metadata").unwrap().unwrap(), b"{}");
    assert_eq!(store.list("a").unwrap(), ["metadata"]);
    assert!(store.exists("a/metadata").unwrap());

    let mut up = store.create("a/data").unwrap();
    up.put_segment(0, b"hello ".to_vec()).unwrap();
    up.put_segment(1, b"world".to_vec()).unwrap();
    up.commit().unwrap();
    let mut back = String::new();
    store.open("a/data").unwrap().read_to_string(&mut back).unwrap();
    assert_eq!(back, "hello world");

    store.delete("a").unwrap();
    assert!(!store.exists("a/metadata").unwrap());
    assert!(store.describe().contains(&dir.path().display().to_string()));
}

/// The requirement: over a 30 s transfer the measured rate is within 10 % of the limit.
const RATE: u64 = 2 * MIB;
const SECONDS: u64 = 30;

fn assert_near_rate(bytes: u64, elapsed: Duration) {
    let measured = bytes as f64 / elapsed.as_secs_f64();
    let off = (measured - RATE as f64).abs() / RATE as f64;
    eprintln!("measured {measured:.0} B/s over {elapsed:?}, limit {RATE} B/s");
    assert!(
        off < 0.10,
        "measured {measured:.0} B/s over {elapsed:?} for a limit of {RATE} B/s ({:.1} % off)",
        off * 100.0
    );
}

#[test]
fn upload_rate_30s() {
    let dir = tempfile::tempdir().unwrap();
    let store = Limited::new(LocalStorage::new(dir.path()).unwrap(), Some(RATE), None);
    let segment = vec![0x5au8; MIB as usize];
    let segments = RATE * SECONDS / MIB;
    let start = Instant::now();
    let mut up = store.create("data/stream").unwrap();
    for i in 0..segments {
        up.put_segment(i, segment.clone()).unwrap();
    }
    up.commit().unwrap();
    assert_near_rate(segments * MIB, start.elapsed());
    let size = std::fs::metadata(dir.path().join("data/stream")).unwrap().len();
    assert_eq!(size, segments * MIB);
}

#[test]
fn download_rate_30s() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStorage::new(dir.path()).unwrap();
    let segment = vec![0xa5u8; MIB as usize];
    let segments = RATE * SECONDS / MIB;
    let mut up = local.create("data/stream").unwrap();
    for i in 0..segments {
        up.put_segment(i, segment.clone()).unwrap();
    }
    up.commit().unwrap();

    let store = Limited::new(local, None, Some(RATE));
    let start = Instant::now();
    let read = io::copy(&mut store.open("data/stream").unwrap(), &mut io::sink()).unwrap();
    assert_eq!(read, segments * MIB);
    assert_near_rate(read, start.elapsed());
}
