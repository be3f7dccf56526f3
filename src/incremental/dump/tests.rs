//! The dump opens the files the scan saw as regular relative to their directory, without
//! another status call; whatever is found there instead must still be stored as what it is.

use std::fs;
use std::io::Read;

use super::*;
use crate::incremental::scan::{ScanOptions, scan};

/// (name, type flag, data) of every member of a tar stream.
fn members(archive: &[u8]) -> Vec<(String, u8, Vec<u8>)> {
    let mut a = ::tar::Archive::new(archive);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let flag = e.header().entry_type().as_byte();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if flag == b'2' {
            data = e.link_name_bytes().unwrap().to_vec();
        }
        out.push((name, flag, data));
    }
    out
}

#[test]
fn files_that_change_type_between_scan_and_dump_are_stored_as_what_they_became() {
    let t = tempfile::tempdir().unwrap();
    for name in ["fifo", "gone", "kept", "link", "subdir"] {
        fs::write(t.path().join(name), "data").unwrap();
    }
    let plan = scan(t.path(), None, &ScanOptions::default()).unwrap();
    assert_eq!(plan.dirs[0].regular, vec![true; 5], "a level 0 takes the type from the listing");
    let p = |n: &str| t.path().join(n);
    fs::remove_file(p("fifo")).unwrap();
    nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    fs::remove_file(p("gone")).unwrap();
    fs::remove_file(p("link")).unwrap();
    std::os::unix::fs::symlink("kept", p("link")).unwrap();
    fs::remove_file(p("subdir")).unwrap();
    fs::create_dir(p("subdir")).unwrap();

    // A FIFO opened for reading would block: the dump must not wait for a writer.
    let mut out = TarWriter::new(Vec::new());
    let report = dump(&plan, &mut out, &DumpOptions::default()).unwrap();
    let got = members(&out.finish().unwrap());
    let find = |n: &str| got.iter().find(|m| m.0 == format!("./{n}"));
    assert_eq!(find("fifo").map(|m| m.1), Some(b'6'));
    assert_eq!(find("link").map(|m| (m.1, m.2.clone())), Some((b'2', b"kept".to_vec())));
    assert_eq!(find("kept").map(|m| (m.1, m.2.clone())), Some((b'0', b"data".to_vec())));
    assert!(find("gone").is_none() && find("subdir").is_none(), "{got:?}");
    assert_eq!(report.dropped, vec![(0, b"gone".to_vec())]);
    let said: Vec<_> = report.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(said.iter().any(|m| m.contains("removed before we read it")), "{said:?}");
    assert!(said.iter().any(|m| m.contains("changed into a directory")), "{said:?}");
}
