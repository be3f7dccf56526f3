//! Byte-for-byte comparison with GNU tar's own `-g` output, and members of 9 GiB.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, symlink};
use std::path::Path;

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Group, Uid, User};

use super::tests::{hdr, s, tar};
use super::{Header, Kind, SparseReader, TarWriter, header, sparse_map};

const GIB: u64 = 1 << 30;

/// Header of an existing file, filled from its lstat like GNU tar does.
fn header_of<'a>(name: &'a [u8], m: &fs::Metadata, names: &'a (Vec<u8>, Vec<u8>)) -> Header<'a> {
    Header {
        name,
        mode: m.mode(),
        uid: u64::from(m.uid()),
        gid: u64::from(m.gid()),
        uname: &names.0,
        gname: &names.1,
        mtime: m.mtime(),
        atime: m.atime(),
        ctime: m.ctime(),
    }
}

fn owner_names() -> (Vec<u8>, Vec<u8>) {
    let user = User::from_uid(Uid::current()).unwrap().map(|u| u.name).unwrap_or_default();
    let group = Group::from_gid(Gid::current()).unwrap().map(|g| g.name).unwrap_or_default();
    (user.into_bytes(), group.into_bytes())
}

/// Fixed mtime, and an atime in the future so that GNU tar reading the files does not
/// change it (relatime) before we stat them.
fn set_times(path: &Path) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let atime = TimeSpec::new(now.as_secs() as i64 + 7200, 0);
    let mtime = TimeSpec::new(1_500_000_000, 0);
    let dir = File::open("/").unwrap();
    utimensat(&dir, path, &atime, &mtime, UtimensatFlags::NoFollowSymlink).unwrap();
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let from = at - at % 512;
    format!(
        "lengths {} vs {}, first difference at {at} (block at {from})\nours: {:?}\ngnu:  {:?}",
        a.len(),
        b.len(),
        String::from_utf8_lossy(&a[from..(from + 512).min(a.len())]),
        String::from_utf8_lossy(&b[from..(from + 512).min(b.len())]),
    )
}

#[test]
fn same_bytes_as_gnu_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("f"), b"hello\n").unwrap();
    fs::hard_link(d.join("f"), d.join("hl")).unwrap();
    symlink("f", d.join("l")).unwrap();
    let long = [&b"x".repeat(140)[..], b"long"].concat();
    fs::write(d.join(std::ffi::OsStr::from_bytes(&long)), b"long name").unwrap();
    let many = File::create(d.join("many")).unwrap();
    for i in 0..30u64 {
        many.write_all_at(b"qqqqqqqqqq", i * 65536).unwrap();
    }
    many.set_len(30 * 65536 + 4096).unwrap();
    drop(many);
    for n in ["f", "hl", "l", "many"] {
        set_times(&d.join(n));
    }
    set_times(&d.join(std::ffi::OsStr::from_bytes(&long)));
    set_times(&d);
    tar(tmp.path(), &[s("-cSf"), s("gnu.tar"), s("-g"), s("snap"), s("d")]);
    let gnu = fs::read(tmp.path().join("gnu.tar")).unwrap();

    let names = owner_names();
    let meta = |n: &[u8]| fs::symlink_metadata(tmp.path().join(std::ffi::OsStr::from_bytes(n)));
    let mut w = TarWriter::new(Vec::new());
    let dumpdir = [b"Yf\0Yhl\0Yl\0Ymany\0Y".as_slice(), &long, b"\0\0"].concat();
    let m = meta(b"d").unwrap();
    w.append(&header_of(b"d/", &m, &names), Kind::Dumpdir { dumpdir: &dumpdir }, None).unwrap();
    let m = meta(b"d/f").unwrap();
    let kind = Kind::File { size: m.len() };
    w.append(&header_of(b"d/f", &m, &names), kind, Some(&mut &b"hello\n"[..])).unwrap();
    let m = meta(b"d/hl").unwrap();
    w.append(&header_of(b"d/hl", &m, &names), Kind::HardLink { target: b"d/f" }, None).unwrap();
    let m = meta(b"d/l").unwrap();
    w.append(&header_of(b"d/l", &m, &names), Kind::Symlink { target: b"f" }, None).unwrap();
    let m = meta(b"d/many").unwrap();
    let f = File::open(tmp.path().join("d/many")).unwrap();
    let map = sparse_map(&f, &m).unwrap().expect("d/many has holes");
    assert_eq!(map.len(), 31);
    let kind = Kind::Sparse { size: m.len(), map: &map };
    let mut data = SparseReader::new(&f, &map);
    w.append(&header_of(b"d/many", &m, &names), kind, Some(&mut data)).unwrap();
    let name = [b"d/".as_slice(), &long].concat();
    let m = meta(&name).unwrap();
    let kind = Kind::File { size: m.len() };
    w.append(&header_of(&name, &m, &names), kind, Some(&mut &b"long name"[..])).unwrap();
    let ours = w.finish().unwrap();

    assert!(ours == gnu, "{}", first_difference(&ours, &gnu));
}

#[test]
fn sparse_member_of_9_gib() {
    let tmp = tempfile::tempdir().unwrap();
    let size = 9 * GIB;
    let mut w = TarWriter::new(File::create(tmp.path().join("a.tar")).unwrap());
    let map = [(0, 10), (size - 10, 10)];
    let mut data = &b"0123456789ABCDEFGHIJ"[..];
    w.append(&hdr(b"./big"), Kind::Sparse { size, map: &map }, Some(&mut data)).unwrap();
    let map = [(8 * GIB + 5, 3)];
    w.append(&hdr(b"./hole"), Kind::Sparse { size, map: &map }, Some(&mut &b"xyz"[..])).unwrap();
    w.finish().unwrap();

    let list = String::from_utf8(tar(tmp.path(), &[s("-tvf"), s("a.tar")])).unwrap();
    assert_eq!(list.matches(" 9663676416 ").count(), 2, "{list}");
    fs::create_dir(tmp.path().join("out")).unwrap();
    tar(tmp.path(), &[s("-xf"), s("a.tar"), s("-C"), s("out")]);
    let mut buf = [0u8; 10];
    let big = File::open(tmp.path().join("out/big")).unwrap();
    let m = big.metadata().unwrap();
    assert_eq!(m.len(), size);
    assert!(m.blocks() < 1024, "extracted file should be sparse: {} blocks", m.blocks());
    big.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"0123456789");
    big.read_exact_at(&mut buf, size - 10).unwrap();
    assert_eq!(&buf, b"ABCDEFGHIJ");
    let hole = File::open(tmp.path().join("out/hole")).unwrap();
    assert_eq!(hole.metadata().unwrap().len(), size);
    hole.read_exact_at(&mut buf, 8 * GIB).unwrap();
    assert_eq!(&buf, b"\0\0\0\0\0xyz\0\0");
}

#[test]
fn file_header_of_9_gib() {
    // The data would be 9 GiB: write the header ourselves and leave the data as a hole.
    let tmp = tempfile::tempdir().unwrap();
    let size = 9 * GIB + 1;
    let h = hdr(b"./huge");
    let mut block = header::member(&h, &Kind::File { size }, size).unwrap();
    header::set_checksum(&mut block);
    assert_eq!(block[124], 0x80, "size is base-256");
    let mut f = File::create(tmp.path().join("a.tar")).unwrap();
    f.write_all(&block).unwrap();
    f.set_len(512 + size.next_multiple_of(512) + 1024).unwrap();
    let list = String::from_utf8(tar(tmp.path(), &[s("-tvf"), s("a.tar")])).unwrap();
    assert!(list.contains(" 9663676417 ") && list.contains("./huge"), "{list}");
}
