//! Tests of the writer against the real GNU tar binary: every kind, long and non-UTF-8 names,
//! shrinking files, numbers that need base-256. Byte-for-byte comparisons are in `tests_gnu`.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Cursor, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Header, Kind, TarWriter};

/// Run GNU tar with `args` in `dir`; panic with its stderr on failure; return stdout.
pub(super) fn tar(dir: &Path, args: &[&OsStr]) -> Vec<u8> {
    let out = Command::new("tar").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "tar {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

pub(super) fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

pub(super) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub(super) fn hdr(name: &[u8]) -> Header<'_> {
    Header {
        name,
        mode: 0o644,
        uid: u64::from(nix::unistd::getuid().as_raw()),
        gid: u64::from(nix::unistd::getgid().as_raw()),
        uname: b"",
        gname: b"",
        mtime: 1_600_000_000,
        atime: 1_600_000_100,
        ctime: 1_600_000_200,
    }
}

/// Write `archive` to `dir/a.tar`, extract it into `dir/out`, return `dir/out`.
fn extract(dir: &Path, archive: &[u8], extra: &[&str]) -> PathBuf {
    fs::write(dir.join("a.tar"), archive).unwrap();
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let mut args = vec![s("-xf"), s("a.tar"), s("-C"), s("out")];
    args.extend(extra.iter().map(|x| s(x)));
    tar(dir, &args);
    out
}

fn file(w: &mut TarWriter<Vec<u8>>, h: &Header, content: &[u8]) {
    let size = content.len() as u64;
    let done = w.append(h, Kind::File { size }, Some(&mut Cursor::new(content))).unwrap();
    assert_eq!(done.short, 0);
}

fn add(w: &mut TarWriter<Vec<u8>>, h: &Header, kind: Kind) {
    w.append(h, kind, None).unwrap();
}

#[test]
fn every_kind_extracts() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = TarWriter::new(Vec::new());
    add(&mut w, &Header { mode: 0o1750, mtime: 1_000_000_000, ..hdr(b"./d/") }, Kind::Dir);
    let setid = if is_root() { 0o6751 } else { 0o751 };
    file(&mut w, &Header { mode: setid, ..hdr(b"./d/f") }, b"hello\n");
    add(&mut w, &Header { mode: 0o777, ..hdr(b"./d/link") }, Kind::Symlink { target: b"f" });
    add(&mut w, &hdr(b"./d/hard"), Kind::HardLink { target: b"./d/f" });
    add(&mut w, &Header { mode: 0o600, ..hdr(b"./d/fifo") }, Kind::Fifo);
    add(&mut w, &hdr(b"./d/chr"), Kind::Char { major: 1, minor: 3 });
    add(&mut w, &hdr(b"./d/blk"), Kind::Block { major: 7, minor: 300_000 });
    let map = [(4096, 5)];
    let kind = Kind::Sparse { size: 1 << 20, map: &map };
    w.append(&hdr(b"./d/sp"), kind, Some(&mut &b"abcde"[..])).unwrap();
    let archive = w.finish().unwrap();
    assert_eq!(archive.len() % 10240, 0);

    fs::write(dir.path().join("a.tar"), &archive).unwrap();
    let list = tar(dir.path(), &[s("-tvf"), s("a.tar")]);
    let list = String::from_utf8(list).unwrap();
    assert!(list.contains("./d/link -> f"), "{list}");
    assert!(list.contains("./d/hard link to ./d/f"), "{list}");
    assert!(list.contains(" 1,3 "), "{list}");
    assert!(list.contains(" 7,300000 "), "{list}");
    assert!(list.contains(" 1048576 "), "{list}");
    if !is_root() {
        return; // devices and set-id bits need root to extract
    }

    let out = extract(dir.path(), &archive, &[]);
    let d = out.join("d");
    let meta = |p: &str| fs::symlink_metadata(d.join(p)).unwrap();
    assert!(meta("").is_dir());
    assert_eq!(meta("").mode() & 0o7777, 0o1750);
    assert_eq!(meta("").mtime(), 1_000_000_000);
    assert_eq!(meta("f").mode() & 0o7777, 0o6751);
    assert_eq!(meta("f").mtime(), 1_600_000_000);
    assert_eq!(meta("f").nlink(), 2);
    assert_eq!(meta("f").ino(), meta("hard").ino());
    assert_eq!(fs::read(d.join("f")).unwrap(), b"hello\n");
    assert!(meta("link").file_type().is_symlink());
    assert_eq!(fs::read_link(d.join("link")).unwrap(), Path::new("f"));
    assert!(meta("fifo").file_type().is_fifo());
    assert_eq!(meta("fifo").mode() & 0o7777, 0o600);
    assert!(meta("chr").file_type().is_char_device());
    assert_eq!(meta("chr").rdev(), nix::sys::stat::makedev(1, 3));
    assert!(meta("blk").file_type().is_block_device());
    assert_eq!(meta("blk").rdev(), nix::sys::stat::makedev(7, 300_000));
    let sp = fs::read(d.join("sp")).unwrap();
    assert_eq!(sp.len(), 1 << 20);
    assert_eq!(&sp[4096..4101], b"abcde");
    assert!(sp[..4096].iter().chain(&sp[4101..]).all(|&b| b == 0));
    assert!(meta("sp").blocks() * 512 < 1 << 20, "extracted sparse file should have holes");
}

#[test]
fn long_names_and_targets() {
    let dir = tempfile::tempdir().unwrap();
    let n100 = [b"./".as_slice(), &[b'a'; 98]].concat();
    let n101 = [b"./".as_slice(), &[b'b'; 99]].concat();
    let n150 = [b"./".as_slice(), &[b'c'; 148]].concat();
    let n300 = [b"./".as_slice(), &[b'd'; 150], b"/", &[b'e'; 147]].concat();
    let t100 = vec![b't'; 100];
    let t200 = [&[b'u'; 100][..], b"/", &[b'v'; 99]].concat();
    assert_eq!((n100.len(), n101.len(), n150.len(), n300.len()), (100, 101, 150, 300));

    let mut w = TarWriter::new(Vec::new());
    file(&mut w, &hdr(&n100), b"100");
    file(&mut w, &hdr(&n101), b"101");
    file(&mut w, &hdr(&n150), b"150");
    file(&mut w, &hdr(&n300), b"300");
    add(&mut w, &hdr(b"./s100"), Kind::Symlink { target: &t100 });
    add(&mut w, &hdr(&n150[..120]), Kind::Symlink { target: &t200 });
    add(&mut w, &hdr(b"./h"), Kind::HardLink { target: &n300 });
    let n300h = [&n300[..n300.len() - 1], b"H"].concat();
    add(&mut w, &hdr(&n300h), Kind::HardLink { target: &n150 });
    let archive = w.finish().unwrap();
    // 100 bytes fit in the header, 101 do not (GNU tar 1.34 does the same).
    assert_eq!(archive.windows(13).filter(|x| x == b"././@LongLink").count(), 8);

    let out = extract(dir.path(), &archive, &[]);
    let path = |n: &[u8]| out.join(OsStr::from_bytes(n));
    for (n, c) in [(&n100, "100"), (&n101, "101"), (&n150, "150"), (&n300, "300")] {
        assert_eq!(fs::read(path(n)).unwrap(), c.as_bytes());
    }
    assert_eq!(fs::read_link(out.join("s100")).unwrap().as_os_str().as_bytes(), t100);
    assert_eq!(fs::read_link(path(&n150[..120])).unwrap().as_os_str().as_bytes(), t200);
    assert_eq!(fs::metadata(path(&n300)).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(out.join("h")).unwrap().ino(),
        fs::metadata(path(&n300)).unwrap().ino()
    );
    assert_eq!(fs::metadata(path(&n300h)).unwrap().ino(), fs::metadata(path(&n150)).unwrap().ino());
}

#[test]
fn non_utf8_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = TarWriter::new(Vec::new());
    add(&mut w, &Header { mode: 0o755, ..hdr(b"./\xff\xfe/") }, Kind::Dir);
    file(&mut w, &hdr(b"./\xff\xfe/caf\xe9"), b"latin1");
    add(&mut w, &hdr(b"./l\x80"), Kind::Symlink { target: b"\xff\xfe/caf\xe9" });
    let out = extract(dir.path(), &w.finish().unwrap(), &[]);
    let f = out.join(OsStr::from_bytes(b"\xff\xfe/caf\xe9"));
    assert_eq!(fs::read(f).unwrap(), b"latin1");
    assert_eq!(fs::read(out.join(OsStr::from_bytes(b"l\x80"))).unwrap(), b"latin1");
}

#[test]
fn dumpdir_member_lists_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = TarWriter::new(Vec::new());
    let dumpdir = b"Dsub\0Nkept\0Ynew\0\0";
    let d = Header { mode: 0o755, ..hdr(b"./d/") };
    add(&mut w, &d, Kind::Dumpdir { dumpdir });
    add(&mut w, &Header { name: b"./d/sub/", ..d }, Kind::Dumpdir { dumpdir: b"\0" });
    file(&mut w, &hdr(b"./d/new"), b"new");
    let archive = w.finish().unwrap();

    fs::write(dir.path().join("a.tar"), &archive).unwrap();
    let list = tar(dir.path(), &[s("-tvv"), s("--incremental"), s("-f"), s("a.tar")]);
    let list = String::from_utf8(list).unwrap();
    for line in ["D sub", "N kept", "Y new"] {
        assert!(list.lines().any(|l| l == line), "{line:?} missing in:\n{list}");
    }

    // Extracting as an incremental level keeps `kept` and removes what the dumpdir omits.
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("d/sub")).unwrap();
    fs::write(out.join("d/kept"), b"old").unwrap();
    fs::write(out.join("d/stale"), b"old").unwrap();
    fs::write(out.join("d/sub/stale"), b"old").unwrap();
    extract(dir.path(), &archive, &["--listed-incremental=/dev/null"]);
    assert_eq!(fs::read(out.join("d/kept")).unwrap(), b"old");
    assert_eq!(fs::read(out.join("d/new")).unwrap(), b"new");
    assert!(!out.join("d/stale").exists());
    assert!(!out.join("d/sub/stale").exists());
}

/// A reader that fails after giving some bytes.
struct Failing(usize);

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = self.0.min(buf.len());
        buf[..n].fill(b'x');
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn shrinking_file_is_padded() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = TarWriter::new(Vec::new());
    let big = vec![7u8; 600_000];
    let done = w.append(&hdr(b"./shrunk"), Kind::File { size: 1_000_000 }, Some(&mut &big[..]));
    assert_eq!(done.unwrap().short, 400_000);
    // Extra bytes beyond the size are not read.
    let mut grown = Cursor::new(vec![8u8; 1000]);
    let done = w.append(&hdr(b"./grown"), Kind::File { size: 10 }, Some(&mut grown)).unwrap();
    assert_eq!((done.short, grown.position()), (0, 10));
    let done = w.append(&hdr(b"./failed"), Kind::File { size: 300 }, Some(&mut Failing(100)));
    let done = done.unwrap();
    assert_eq!(done.short, 200);
    assert_eq!(done.read_error.unwrap().to_string(), "disk on fire");
    let map = [(0, 1024), (4096, 1024)];
    let kind = Kind::Sparse { size: 8192, map: &map };
    let done = w.append(&hdr(b"./sparse"), kind, Some(&mut &[9u8; 1500][..])).unwrap();
    assert_eq!(done.short, 548);
    file(&mut w, &hdr(b"./after"), b"after");
    let written = w.bytes_written();
    let archive = w.finish().unwrap();
    assert_eq!(written, 5 * 512 + 1_000_448 + 3 * 512 + 2048);

    let out = extract(dir.path(), &archive, &[]);
    let shrunk = fs::read(out.join("shrunk")).unwrap();
    assert_eq!(shrunk.len(), 1_000_000);
    assert!(shrunk[..600_000].iter().all(|&b| b == 7));
    assert!(shrunk[600_000..].iter().all(|&b| b == 0));
    assert_eq!(fs::read(out.join("grown")).unwrap(), vec![8u8; 10]);
    assert_eq!(fs::read(out.join("failed")).unwrap().len(), 300);
    assert_eq!(fs::read(out.join("after")).unwrap(), b"after");
    let sparse = fs::read(out.join("sparse")).unwrap();
    assert_eq!(sparse.len(), 8192);
    assert!(sparse[..1024].iter().chain(&sparse[4096..4572]).all(|&b| b == 9));
    assert!(sparse[1024..4096].iter().chain(&sparse[4572..]).all(|&b| b == 0));
}

#[test]
fn tar_crate_reads_it_back() {
    let long = [b"./".as_slice(), &[b'n'; 200]].concat();
    let mut w = TarWriter::new(Vec::new());
    add(&mut w, &Header { mode: 0o755, ..hdr(b"./d/") }, Kind::Dumpdir { dumpdir: b"Yf\0\0" });
    file(&mut w, &hdr(&long), b"long");
    let map = [(10, 5), (5000, 3)];
    let kind = Kind::Sparse { size: 6000, map: &map };
    w.append(&hdr(b"./d/f"), kind, Some(&mut &b"abcdexyz"[..])).unwrap();
    let archive = w.finish().unwrap();

    let mut ar = ::tar::Archive::new(&archive[..]);
    let mut seen = Vec::new();
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        seen.push((entry.path_bytes().into_owned(), entry.header().entry_type().as_byte(), data));
    }
    assert_eq!(seen[0], (b"./d/".to_vec(), b'D', b"Yf\0\0".to_vec()));
    assert_eq!(seen[1], (long.clone(), b'0', b"long".to_vec()));
    let (name, kind, data) = &seen[2];
    assert_eq!((&name[..], *kind, data.len()), (&b"./d/f"[..], b'S', 6000));
    assert_eq!((&data[10..15], &data[5000..5003]), (&b"abcde"[..], &b"xyz"[..]));
    assert_eq!(data.iter().filter(|&&b| b != 0).count(), 8);
}

#[test]
fn base256_ids_and_negative_times() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = TarWriter::new(Vec::new());
    let h = Header { uid: 3_000_000, gid: 4_000_000_000, mtime: -31_536_000, ..hdr(b"./old") };
    file(&mut w, &h, b"x");
    fs::write(dir.path().join("a.tar"), w.finish().unwrap()).unwrap();
    let args = [s("-tvf"), s("a.tar"), s("--numeric-owner"), s("--utc")];
    let list = String::from_utf8(tar(dir.path(), &args)).unwrap();
    assert!(list.contains("3000000/4000000000"), "{list}");
    assert!(list.contains("1969-01-01 00:00"), "{list}");
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    tar(dir.path(), &[s("-xf"), s("a.tar"), s("-C"), s("out"), s("--no-same-owner")]);
    assert_eq!(fs::metadata(out.join("old")).unwrap().mtime(), -31_536_000);
}

#[test]
fn refuses_what_tar_cannot_hold() {
    let mut w = TarWriter::new(Vec::new());
    let err = |r: io::Result<super::Appended>| r.unwrap_err().kind();
    assert_eq!(err(w.append(&hdr(b""), Kind::Dir, None)), io::ErrorKind::InvalidInput);
    assert_eq!(err(w.append(&hdr(b"a\0b"), Kind::Dir, None)), io::ErrorKind::InvalidInput);
    let h = Header { uid: 1 << 56, ..hdr(b"x") };
    assert_eq!(err(w.append(&h, Kind::Dir, None)), io::ErrorKind::InvalidInput);
    let k = Kind::Symlink { target: b"" };
    assert_eq!(err(w.append(&hdr(b"x"), k, None)), io::ErrorKind::InvalidInput);
    let k = Kind::File { size: 1 };
    assert_eq!(err(w.append(&hdr(b"x"), k, None)), io::ErrorKind::InvalidInput);
    for map in [&[(10, 5), (12, 1)][..], &[(0, 11)], &[(5, 1), (0, 1)]] {
        let k = Kind::Sparse { size: 10, map };
        assert_eq!(
            err(w.append(&hdr(b"x"), k, Some(&mut io::empty()))),
            io::ErrorKind::InvalidInput
        );
    }
    assert_eq!(w.bytes_written(), 0, "a refused member writes nothing");
}
