//! Differential tests: our scan must decide exactly what GNU tar 1.34 decides.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::*;

fn gnu_dump(src: &Path, snap: &Path, out: &Path) {
    let st = Command::new("tar")
        .arg("-C")
        .arg(src)
        .arg("--listed-incremental")
        .arg(snap)
        .arg("--no-check-device")
        .arg("--one-file-system")
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

/// Dumpdirs of the `D` members of a GNU archive, by directory name without trailing slash.
fn gnu_dumpdirs(archive: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut a = tar::Archive::new(fs::File::open(archive).unwrap());
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().as_byte() == b'D' {
            let mut name = e.path_bytes().to_vec();
            if name.len() > 1 && name.ends_with(b"/") {
                name.pop();
            }
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            out.insert(name, data);
        }
    }
    out
}

fn ours(src: &Path, snap: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let old = Snapshot::parse(snap).unwrap();
    let opts = ScanOptions { one_file_system: true, ..Default::default() };
    let plan = scan(src, Some(old), &opts).unwrap();
    plan.dirs.iter().map(|d| (d.name.clone(), d.dumpdir.encode())).collect()
}

fn show(m: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    m.iter()
        .map(|(k, v)| {
            format!(
                "{} => {}\n",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v).replace('\0', "|")
            )
        })
        .collect()
}

/// Level 0 by GNU tar, `mutate`, then level 1 by both from the same level-0 snapshot.
fn differential(setup: impl Fn(&Path), mutate: impl Fn(&Path)) {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    setup(&src);
    let snap = t.path().join("snap");
    gnu_dump(&src, &snap, &t.path().join("l0.tar"));
    let snap0 = fs::read(&snap).unwrap();
    // Changes must be newer than the level-0 start time at GNU's nanosecond resolution.
    std::thread::sleep(std::time::Duration::from_millis(20));
    mutate(&src);
    let ours = ours(&src, &snap0);
    gnu_dump(&src, &snap, &t.path().join("l1.tar"));
    let gnu = gnu_dumpdirs(&t.path().join("l1.tar"));
    assert_eq!(show(&ours), show(&gnu));
}

fn write(p: &Path, s: &str) {
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(p, s).unwrap();
}

fn base(src: &Path) {
    write(&src.join("a/b/f"), "1");
    write(&src.join("a/b/c/g"), "2");
    write(&src.join("a/keep"), "k");
    write(&src.join("top"), "t");
    write(&src.join("d-x/h"), "h");
    fs::create_dir_all(src.join("empty")).unwrap();
    std::os::unix::fs::symlink("a", src.join("lnk")).unwrap();
}

#[test]
fn level0_matches_gnu() {
    differential(|_| {}, base);
}

#[test]
fn changes_and_deletions_match_gnu() {
    differential(base, |src| {
        write(&src.join("a/b/f"), "changed");
        fs::remove_file(src.join("top")).unwrap();
        write(&src.join("new/deep/n"), "n");
        fs::remove_dir_all(src.join("d-x")).unwrap();
        fs::set_permissions(
            src.join("a/keep"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    });
}

#[test]
fn directory_rename_matches_gnu() {
    differential(base, |src| {
        fs::rename(src.join("a"), src.join("z")).unwrap();
    });
}

#[test]
fn nested_and_chained_renames_match_gnu() {
    differential(base, |src| {
        fs::rename(src.join("a/b"), src.join("a/bb")).unwrap();
        fs::rename(src.join("d-x"), src.join("a/moved")).unwrap();
    });
}

#[test]
fn swapped_directories_match_gnu() {
    differential(base, |src| {
        fs::rename(src.join("a"), src.join("tmpname")).unwrap();
        fs::rename(src.join("d-x"), src.join("a")).unwrap();
        fs::rename(src.join("tmpname"), src.join("d-x")).unwrap();
    });
}

#[test]
fn file_replaced_by_directory_matches_gnu() {
    differential(base, |src| {
        fs::remove_file(src.join("top")).unwrap();
        write(&src.join("top/inner"), "i");
        fs::remove_dir_all(src.join("empty")).unwrap();
        write(&src.join("empty"), "now a file");
    });
}

#[test]
fn excludes_are_listed_as_unchanged() {
    let t = tempfile::tempdir().unwrap();
    base(t.path());
    write(&t.path().join("a/x.log"), "l");
    let opts = ScanOptions {
        excludes: crate::exclude::Excludes::new(&["*.log".to_string(), "d-x".to_string()]).unwrap(),
        ..Default::default()
    };
    let plan = scan(t.path(), None, &opts).unwrap();
    let a = plan.dirs.iter().find(|d| d.name == b"./a").unwrap();
    assert_eq!(a.dumpdir.lookup(b"x.log"), Some(Flag::Kept));
    assert!(plan.dirs.iter().all(|d| d.name != b"./d-x"));
    assert_eq!(plan.stats.excluded, 2);
}
