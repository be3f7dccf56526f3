//! Hand-made hostile archives: restore is refused with a clear error, exit code 5, and nothing
//! outside the restore directory changes.

use std::fs;
use std::path::Path;

use freezer::tar::{Header, Kind, TarWriter};

use crate::support::*;

enum M<'a> {
    File(&'a [u8], &'a [u8]),
    Dir(&'a [u8], &'a [u8]),
    Symlink(&'a [u8], &'a [u8]),
    HardLink(&'a [u8], &'a [u8]),
}

fn archive(members: &[M]) -> Vec<u8> {
    let mut w = TarWriter::new(Vec::new());
    for m in members {
        let (name, kind, data): (&[u8], Kind, &[u8]) = match m {
            M::File(n, d) => (n, Kind::File { size: d.len() as u64 }, d),
            M::Dir(n, dd) => (n, Kind::Dumpdir { dumpdir: dd }, b""),
            M::Symlink(n, t) => (n, Kind::Symlink { target: t }, b""),
            M::HardLink(n, t) => (n, Kind::HardLink { target: t }, b""),
        };
        let h = Header {
            name,
            mode: 0o644,
            uid: 0,
            gid: 0,
            uname: b"",
            gname: b"",
            mtime: 1_700_000_000,
            atime: 0,
            ctime: 0,
        };
        let mut r: &[u8] = data;
        let reader: Option<&mut dyn std::io::Read> =
            if matches!(m, M::File(..)) { Some(&mut r) } else { None };
        w.append(&h, kind, reader).unwrap();
    }
    w.finish().unwrap()
}

/// Store `tar` as level 0 of `h_evil` in an agent-style layout, uncompressed.
fn store(container: &Path, tar: &[u8]) {
    let d = container.join("data/tar/h_evil/1700000000/0_1700000000");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("data"), tar).unwrap();
    fs::write(d.join("engine_metadata"), b"GNU tar-1.34-2\n0\x000\x00").unwrap();
    let m = container.join("metadata/tar/h_evil/1700000000/0_1700000000");
    fs::create_dir_all(&m).unwrap();
    fs::write(
        m.join("metadata"),
        r#"{"engine_name": "tar", "compression": "none", "encryption": false}"#,
    )
    .unwrap();
}

fn refused(members: &[M]) {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    write(&outside.join("secret"), "do not touch");
    write(&outside.join("sub/keep"), "keep");
    let before = manifest(&outside, true);
    let container = t.path().join("c");
    store(&container, &archive(members));
    let target = t.path().join("target");
    let out = freezer([
        "restore",
        target.to_str().unwrap(),
        "-N",
        "evil",
        "--hostname",
        "h",
        "-C",
        container.to_str().unwrap(),
    ]);
    assert_code(&out, 5);
    let err = stderr(&out);
    assert!(err.contains("refus") || err.contains("outside"), "clear error: {err}");
    assert_eq!(manifest(&outside, true), before, "outside untouched");
    assert!(!t.path().join("evil").exists());
}

#[test]
fn dotdot_member_is_refused() {
    refused(&[M::Dir(b"./", b"Yx\0\0"), M::File(b"../outside/secret", b"owned")]);
}

#[test]
fn absolute_member_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let abs = t.path().join("evil");
    refused(&[M::File(abs.as_os_str().as_encoded_bytes(), b"owned")]);
    assert!(!abs.exists());
}

#[test]
fn write_through_symlinked_parent_is_refused() {
    refused(&[M::Symlink(b"./link", b"../outside"), M::File(b"./link/secret", b"owned")]);
}

#[test]
fn hard_link_to_outside_is_refused() {
    refused(&[M::HardLink(b"./hl", b"../outside/secret")]);
    refused(&[M::Symlink(b"./link", b"../outside"), M::HardLink(b"./hl", b"./link/secret")]);
}

#[test]
fn dumpdir_purge_through_symlink_is_refused() {
    // Restoring `link/` with an empty dumpdir would delete everything in the linked directory.
    refused(&[M::Symlink(b"./link", b"../outside"), M::Dir(b"./link/", b"\0")]);
}

#[test]
fn dumpdir_outside_the_target_is_refused() {
    refused(&[M::Dir(b"../outside/", b"\0")]);
}

#[test]
fn dumpdir_rename_from_outside_is_refused() {
    refused(&[M::Dir(b"./", b"Dstolen\0R../outside\0T./stolen\0\0")]);
}
