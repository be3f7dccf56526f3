use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::ErrorKind;
use crate::incremental::dumpdir::{Dumpdir, Flag, Rename};

/// A restore root and, next to it, an "outside" tree that must never change.
struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    before: BTreeMap<PathBuf, String>,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(outside.join("d/sub")).unwrap();
        fs::write(outside.join("file"), "secret").unwrap();
        fs::write(outside.join("d/sub/x"), "x").unwrap();
        let before = snapshot(&outside);
        Env { _tmp: tmp, root, outside, before }
    }

    fn target(&self) -> Target {
        Target::open(&self.root).unwrap()
    }

    fn out(&self, rel: &str) -> Vec<u8> {
        self.outside.join(rel).as_os_str().as_bytes().to_vec()
    }

    fn assert_outside_untouched(&self) {
        assert_eq!(snapshot(&self.outside), self.before, "the outside tree changed");
    }
}

/// Every entry below `dir` with type, mode, size, mtime, content or link target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap();
        let mut desc = format!("{:o} {} {}", md.mode(), md.len(), md.mtime());
        if md.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if md.file_type().is_symlink() {
            desc += &format!(" -> {:?}", fs::read_link(&p).unwrap());
        } else {
            desc += &format!(" {:?}", fs::read(&p).unwrap());
        }
        out.insert(p, desc);
    }
    out
}

fn meta(mode: u32, mtime: i64) -> Meta {
    Meta { mode, mtime, ..Meta::default() }
}

fn file(t: &mut Target, name: &[u8], data: &[u8]) -> Result<u64> {
    t.write_file(name, &meta(0o644, 1_000_000), &mut &data[..], false)
}

fn assert_unsafe<T: std::fmt::Debug>(r: Result<T>) -> String {
    let e = r.expect_err("a hostile member was accepted");
    assert_eq!(e.kind(), ErrorKind::Unsafe, "wrong kind: {e}");
    e.to_string()
}

fn dumpdir(entries: &[(Flag, &str)], renames: Vec<Rename>) -> Dumpdir {
    let mut entries: crate::incremental::dumpdir::Entries =
        entries.iter().map(|(f, n)| (*f, n.as_bytes())).collect();
    entries.sort();
    Dumpdir { entries, renames }
}

fn mv(from: &str, to: &str) -> Rename {
    Rename::Move { from: from.as_bytes().to_vec(), to: to.as_bytes().to_vec() }
}

#[test]
fn refuses_absolute_names() {
    let env = Env::new();
    let mut t = env.target();
    let m = meta(0o644, 0);
    assert_unsafe(file(&mut t, &env.out("file"), b"pwned"));
    assert_unsafe(file(&mut t, &env.out("new"), b"pwned"));
    assert_unsafe(t.create_dir(&env.out("newdir"), &m));
    assert_unsafe(t.symlink(&env.out("l"), b"x", &m));
    assert_unsafe(t.special(&env.out("fifo"), Special::Fifo, &m));
    assert_unsafe(t.hard_link(&env.out("h"), b"x"));
    t.finish_level().unwrap();
    env.assert_outside_untouched();
}

#[test]
fn refuses_dotdot() {
    let env = Env::new();
    let mut t = env.target();
    let m = meta(0o644, 0);
    let msg = assert_unsafe(file(&mut t, b"../x", b"pwned"));
    assert_eq!(msg, "refusing archive member '../x': path leaves the restore directory");
    assert_unsafe(file(&mut t, b"../outside/file", b"pwned"));
    assert_unsafe(file(&mut t, b"./a/../../outside/file", b"pwned"));
    assert_unsafe(t.create_dir(b"../outside/d2/", &m));
    assert_unsafe(t.symlink(b"../outside/l", b"x", &m));
    assert_unsafe(t.special(b"a/../../outside/f", Special::Fifo, &m));
    assert_unsafe(t.apply_dumpdir(b"../outside", &Dumpdir::default()));
    t.finish_level().unwrap();
    env.assert_outside_untouched();
    assert!(!env.root.join("a").exists(), "nothing was created for a refused member");
}

#[test]
fn refuses_parent_symlink() {
    let env = Env::new();
    let mut t = env.target();
    let m = meta(0o755, 0);
    t.symlink(b"./a", &env.out(""), &m).unwrap();
    t.symlink(b"./rel", b"../outside", &m).unwrap();
    t.create_dir(b"./inner", &m).unwrap();
    t.symlink(b"./inside", b"inner", &m).unwrap();
    let msg = assert_unsafe(file(&mut t, b"a/file", b"pwned"));
    assert!(msg.contains("'a' is a symbolic link"), "{msg}");
    assert_unsafe(file(&mut t, b"./rel/new", b"pwned"));
    assert_unsafe(file(&mut t, b"a/d/sub/x", b"pwned"));
    assert_unsafe(t.create_dir(b"a/newdir/", &m));
    assert_unsafe(t.symlink(b"rel/l", b"x", &m));
    assert_unsafe(t.special(b"a/fifo", Special::Fifo, &m));
    // Even a link that stays inside is never walked through.
    assert_unsafe(file(&mut t, b"inside/f", b"x"));
    t.finish_level().unwrap();
    env.assert_outside_untouched();
}

#[test]
fn refuses_hostile_hard_links() {
    let env = Env::new();
    let mut t = env.target();
    let m = meta(0o755, 0);
    let msg = assert_unsafe(t.hard_link(b"h", b"../outside/file"));
    assert!(msg.starts_with("refusing archive member 'h' (a hard link to '../outside/file')"));
    assert_unsafe(t.hard_link(b"h", &env.out("file")));
    t.symlink(b"lnk", &env.out(""), &m).unwrap();
    assert_unsafe(t.hard_link(b"h", b"lnk/file"));
    assert_unsafe(t.hard_link(b"lnk/h", b"x"));
    // A link to a symlink links the symlink itself; writing the name later replaces it.
    t.symlink(b"s", &env.out("file"), &m).unwrap();
    t.hard_link(b"h", b"s").unwrap();
    assert!(fs::symlink_metadata(env.root.join("h")).unwrap().file_type().is_symlink());
    file(&mut t, b"h", b"new").unwrap();
    assert_eq!(fs::read(env.root.join("h")).unwrap(), b"new");
    env.assert_outside_untouched();
}

#[test]
fn refuses_hostile_renames() {
    let env = Env::new();
    let mut t = env.target();
    let m = meta(0o755, 0);
    t.create_dir(b"./", &m).unwrap();
    t.create_dir(b"./x", &m).unwrap();
    t.symlink(b"./lnk", &env.out(""), &m).unwrap();
    let cases = [
        mv("../outside/d", "./y"),
        mv("./x", "../outside/y"),
        mv("./lnk/d", "./y"),
        mv("./x", "./lnk/y"),
        mv("./x", &String::from_utf8(env.out("y")).unwrap()),
        mv("./x", "./"),
    ];
    for r in cases {
        let msg = assert_unsafe(t.apply_dumpdir(b"./", &dumpdir(&[], vec![r])));
        assert!(msg.contains("rename"), "{msg}");
    }
    assert_unsafe(
        t.apply_dumpdir(b"./", &dumpdir(&[], vec![Rename::Temp(b"../outside".to_vec())])),
    );
    env.assert_outside_untouched();
    assert!(env.root.join("x").is_dir());
}

#[test]
fn refuses_dumpdir_through_symlink() {
    let env = Env::new();
    let mut t = env.target();
    let m = meta(0o755, 0);
    t.symlink(b"lnk", &env.out(""), &m).unwrap();
    t.symlink(b"dlnk", &env.out("d"), &m).unwrap();
    let empty = Dumpdir::default();
    assert_unsafe(t.apply_dumpdir(b"./lnk", &empty));
    assert_unsafe(t.apply_dumpdir(b"./lnk/d", &empty));
    assert_unsafe(t.apply_dumpdir(b"./dlnk/", &empty));
    env.assert_outside_untouched();
}

#[test]
fn replaces_symlinks_instead_of_writing_through() {
    let env = Env::new();
    let mut t = env.target();
    let m = meta(0o755, 0);
    t.symlink(b"f", &env.out("file"), &m).unwrap();
    t.symlink(b"d", &env.out("d"), &m).unwrap();
    t.symlink(b"p", &env.out("fifo"), &m).unwrap();
    t.symlink(b"s", &env.out("file"), &m).unwrap();
    file(&mut t, b"f", b"new").unwrap();
    t.create_dir(b"d", &m).unwrap();
    t.special(b"p", Special::Fifo, &meta(0o600, 0)).unwrap();
    t.symlink(b"s", b"elsewhere", &m).unwrap();
    t.finish_level().unwrap();
    assert_eq!(fs::read(env.root.join("f")).unwrap(), b"new");
    assert!(fs::symlink_metadata(env.root.join("d")).unwrap().is_dir());
    assert!(fs::symlink_metadata(env.root.join("p")).unwrap().file_type().is_fifo());
    assert_eq!(fs::read_link(env.root.join("s")).unwrap(), Path::new("elsewhere"));
    env.assert_outside_untouched();
}

#[test]
fn restores_tree_with_metadata() {
    let env = Env::new();
    let mut t = env.target();
    assert!(t.is_empty().unwrap());
    t.create_dir(b"./", &meta(0o750, 1_000)).unwrap();
    t.create_dir(b"./ro/", &meta(0o555, 2_000)).unwrap();
    let m = Meta { mode: 0o640, mtime: 3_000, mtime_nsec: 123_456_789, ..Meta::default() };
    assert_eq!(t.write_file(b"./ro/f", &m, &mut &b"hello"[..], false).unwrap(), 5);
    t.write_file(b"./a/b/c/deep", &meta(0o600, 4_000), &mut &b"deep"[..], false).unwrap();
    t.write_file(b"./x", &meta(0o4755, 5_000), &mut &b""[..], false).unwrap();
    t.symlink(b"./ro/l", b"f", &meta(0o777, 6_000)).unwrap();
    t.hard_link(b"./hl", b"./ro/f").unwrap();
    t.special(b"./fifo", Special::Fifo, &meta(0o620, 7_000)).unwrap();
    assert!(!t.is_empty().unwrap());
    t.finish_level().unwrap();

    let r = &env.root;
    let md = |p: &str| fs::symlink_metadata(r.join(p)).unwrap();
    assert_eq!(md("").mode() & 0o7777, 0o750);
    assert_eq!(md("").mtime(), 1_000);
    assert_eq!(md("ro").mode() & 0o7777, 0o555);
    assert_eq!(md("ro").mtime(), 2_000, "dir mtime is set after its children");
    assert_eq!(md("ro/f").mode() & 0o7777, 0o640);
    assert_eq!((md("ro/f").mtime(), md("ro/f").mtime_nsec()), (3_000, 123_456_789));
    assert_eq!(fs::read(r.join("a/b/c/deep")).unwrap(), b"deep");
    assert_eq!(md("a/b").mode() & 0o777, 0o700, "missing parents are made 0700");
    let setuid = if nix::unistd::geteuid().is_root() { 0o4755 } else { 0o755 };
    assert_eq!(md("x").mode() & 0o7777, setuid);
    assert_eq!(fs::read_link(r.join("ro/l")).unwrap(), Path::new("f"));
    assert_eq!(md("ro/l").mtime(), 6_000);
    assert_eq!(md("hl").ino(), md("ro/f").ino());
    assert!(md("fifo").file_type().is_fifo());
    assert_eq!(md("fifo").mode() & 0o7777, 0o620);
    assert_eq!(md("fifo").mtime(), 7_000);

    // A second level can still fill the read-only directory.
    let mut t = env.target();
    t.create_dir(b"./ro/", &meta(0o555, 2_000)).unwrap();
    file(&mut t, b"./ro/g", b"g").unwrap();
    t.finish_level().unwrap();
    assert_eq!(md("ro").mode() & 0o7777, 0o555);
    fs::set_permissions(r.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn replaces_directory_with_file_and_keeps_directory() {
    let env = Env::new();
    let mut t = env.target();
    file(&mut t, b"d/inner/f", b"1").unwrap();
    file(&mut t, b"d", b"now a file").unwrap();
    assert_eq!(fs::read(env.root.join("d")).unwrap(), b"now a file");
    file(&mut t, b"k/f", b"1").unwrap();
    t.create_dir(b"k/", &meta(0o755, 0)).unwrap();
    assert_eq!(fs::read(env.root.join("k/f")).unwrap(), b"1");
    t.hard_link(b"k/f", b"k/f").unwrap();
}

#[test]
fn sparse_file_has_holes() {
    let env = Env::new();
    let mut t = env.target();
    let mut data = vec![0u8; 1 << 20];
    data.extend_from_slice(b"middle");
    data.resize(data.len() + (3 << 20) + 100, 0);
    let m = meta(0o644, 0);
    assert_eq!(t.write_file(b"sparse", &m, &mut &data[..], true).unwrap(), data.len() as u64);
    t.write_file(b"dense", &m, &mut &data[..], false).unwrap();
    let md = fs::metadata(env.root.join("sparse")).unwrap();
    assert_eq!(md.len(), data.len() as u64);
    assert!(md.blocks() * 512 < md.len(), "{} blocks for {} bytes", md.blocks(), md.len());
    assert_eq!(fs::read(env.root.join("sparse")).unwrap(), data);
    assert_eq!(fs::read(env.root.join("dense")).unwrap(), data);
    // All zeros, and data in odd-sized reads.
    t.write_file(b"zeros", &m, &mut &vec![0u8; 10_000][..], true).unwrap();
    assert_eq!(fs::read(env.root.join("zeros")).unwrap(), vec![0u8; 10_000]);
    let mut odd: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
    odd[5000..20000].fill(0);
    let mut reader = std::io::BufReader::with_capacity(333, &odd[..]);
    t.write_file(b"odd", &m, &mut reader, true).unwrap();
    assert_eq!(fs::read(env.root.join("odd")).unwrap(), odd);
}

#[test]
fn purge_deletes_what_the_dumpdir_does_not_keep() {
    let env = Env::new();
    let mut t = env.target();
    let m = meta(0o755, 0);
    for f in ["d/y_file", "d/n_kept", "d/gone", "d/y_now_dir/x", "d/d_now_file", "d/d_dir/keep"] {
        file(&mut t, f.as_bytes(), b"1").unwrap();
    }
    file(&mut t, b"d/tree/a/b/c", b"1").unwrap();
    t.create_dir(b"d/tree/ro", &meta(0o555, 0)).unwrap();
    file(&mut t, b"d/tree/ro/f", b"1").unwrap();
    t.symlink(b"d/lnk", &env.out("d"), &m).unwrap();
    t.finish_level().unwrap();
    let dd = dumpdir(
        &[
            (Flag::Dumped, "y_file"),
            (Flag::Kept, "n_kept"),
            (Flag::Dumped, "y_now_dir"),
            (Flag::Dir, "d_now_file"),
            (Flag::Dir, "d_dir"),
            (Flag::Dir, "missing"),
        ],
        vec![],
    );
    t.apply_dumpdir(b"./d/", &dd).unwrap();
    let mut left: Vec<_> = fs::read_dir(env.root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["d_dir", "n_kept", "y_file"]);
    assert!(env.root.join("d/d_dir/keep").exists());
    env.assert_outside_untouched();
    // A directory that does not exist yet: nothing to do.
    t.apply_dumpdir(b"./nope/", &dd).unwrap();
}

#[test]
fn purge_forgets_cached_directories() {
    let env = Env::new();
    let mut t = env.target();
    file(&mut t, b"a/b/f1", b"1").unwrap();
    t.apply_dumpdir(b"./a", &Dumpdir::default()).unwrap();
    file(&mut t, b"a/b/f2", b"2").unwrap();
    assert_eq!(fs::read(env.root.join("a/b/f2")).unwrap(), b"2");
    assert!(!env.root.join("a/b/f1").exists());
}

#[test]
fn renames_then_purges() {
    let env = Env::new();
    let mut t = env.target();
    file(&mut t, b"a/fa", b"a").unwrap();
    file(&mut t, b"b/fb", b"b").unwrap();
    file(&mut t, b"c/fc", b"c").unwrap();
    file(&mut t, b"junk", b"j").unwrap();
    // Swap a and b through a temporary directory, move c to new/c2.
    let renames = vec![
        Rename::Temp(b".".to_vec()),
        mv("./a", ""),
        mv("./b", "./a"),
        mv("", "./b"),
        mv("./c", "./new/c2"),
    ];
    let dd = dumpdir(&[(Flag::Dir, "a"), (Flag::Dir, "b"), (Flag::Dir, "new")], renames);
    t.apply_dumpdir(b"./", &dd).unwrap();
    let mut left: Vec<_> = fs::read_dir(&env.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["a", "b", "new"], "junk and the temporary directory are purged");
    assert_eq!(fs::read(env.root.join("a/fb")).unwrap(), b"b");
    assert_eq!(fs::read(env.root.join("b/fa")).unwrap(), b"a");
    assert_eq!(fs::read(env.root.join("new/c2/fc")).unwrap(), b"c");
    // A rename whose source is gone is skipped with a warning, as GNU tar does, and the
    // purge still runs.
    let keep = [(Flag::Dir, "a"), (Flag::Dir, "b")];
    t.apply_dumpdir(b"./", &dumpdir(&keep, vec![mv("./zz", "./yy")])).unwrap();
    assert!(!env.root.join("yy").exists());
    assert_eq!(t.problems().len(), 1, "reported, so the restore says it is incomplete");
    assert!(t.problems()[0].contains("zz") && t.problems()[0].contains("not renamed"));
    assert!(!env.root.join("new").exists(), "purged");
    assert!(env.root.join("a/fb").exists());
}

#[test]
fn non_utf8_names() {
    let env = Env::new();
    let mut t = env.target();
    t.create_dir(b"./d\xff/", &meta(0o755, 0)).unwrap();
    file(&mut t, b"./d\xff/f\xfe\x01", b"bytes").unwrap();
    t.symlink(b"./l\x80", b"d\xff", &meta(0o777, 0)).unwrap();
    t.finish_level().unwrap();
    let p = env.root.join(OsStr::from_bytes(b"d\xff/f\xfe\x01"));
    assert_eq!(fs::read(p).unwrap(), b"bytes");
    let msg = assert_unsafe(file(&mut t, b"l\x80/x\x1b", b""));
    assert!(msg.contains("l\u{fffd}/x\\u{1b}"), "{msg}");
    t.apply_dumpdir(b"./", &dumpdir(&[(Flag::Dir, "d\u{fffd}")], vec![])).unwrap();
    assert!(!env.root.join(OsStr::from_bytes(b"d\xff")).exists());
}

#[test]
fn many_files_in_one_directory() {
    let env = Env::new();
    let mut t = env.target();
    for i in 0..2000 {
        file(&mut t, format!("./big/dir/f{i}").as_bytes(), b"x").unwrap();
    }
    assert_eq!(fs::read_dir(env.root.join("big/dir")).unwrap().count(), 2000);
}

#[test]
fn ownership_and_devices() {
    let env = Env::new();
    let mut t = env.target();
    let root = nix::unistd::geteuid().is_root();
    let by_name = Meta {
        mode: 0o644,
        uid: 1234,
        gid: 1234,
        uname: Some(b"root".to_vec()),
        gname: Some(b"no-such-group-here".to_vec()),
        ..Meta::default()
    };
    t.write_file(b"named", &by_name, &mut &b""[..], false).unwrap();
    let by_id = Meta { uname: Some(b"no-such-user-here".to_vec()), ..by_name.clone() };
    t.symlink(b"numeric", b"named", &by_id).unwrap();
    let dev = Special::Char { major: 1, minor: 3 };
    t.special(b"null", dev, &meta(0o640, 9)).unwrap();
    let md = |p: &str| fs::symlink_metadata(env.root.join(p)).unwrap();
    if root {
        assert_eq!((md("named").uid(), md("named").gid()), (0, 1234));
        assert_eq!((md("numeric").uid(), md("numeric").gid()), (1234, 1234));
        assert!(md("null").file_type().is_char_device());
        assert_eq!(md("null").rdev(), nix::sys::stat::makedev(1, 3));
        assert_eq!((md("null").mode() & 0o7777, md("null").mtime()), (0o640, 9));
    } else {
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(md("named").uid(), me);
        assert!(!env.root.join("null").exists(), "devices are skipped when not root");
    }
}

/// A file system mounted inside the restore directory is not emptied by a purge (GNU tar
/// would delete its contents), nor by replacing the directory with a file.
#[test]
fn purges_stop_at_mount_points() {
    let env = Env::new();
    let mut t = env.target();
    file(&mut t, b"keep/f", b"k").unwrap();
    fs::create_dir_all(env.root.join("mnt")).unwrap();
    let mnt = env.root.join("mnt");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "freezer-test"])
        .arg(&mnt)
        .status()
        .expect("run mount");
    assert!(mounted.success(), "this test mounts a tmpfs: it needs root");
    fs::write(mnt.join("precious"), b"on another file system").unwrap();
    fs::create_dir(mnt.join("sub")).unwrap();
    let purge = t.apply_dumpdir(b"./", &dumpdir(&[(Flag::Dir, "keep")], vec![]));
    let file_over = file(&mut t, b"mnt", b"a file where the mount is");
    let still = fs::read(mnt.join("precious"));
    std::process::Command::new("umount").arg(&mnt).status().unwrap();
    purge.unwrap();
    assert_eq!(still.unwrap(), b"on another file system");
    assert!(file_over.is_err(), "the mount point is not replaced");
    assert!(env.root.join("keep/f").exists());
}
