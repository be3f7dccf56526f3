//! Test helpers: temp dirs, running the binary, building trees and comparing them.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_freezer"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `freezer` with args; returns the output (does not assert success).
pub fn freezer<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(bin()).args(args).output().expect("run freezer")
}

/// Run and require exit code `code`, printing output on mismatch.
pub fn freezer_ok<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = freezer(args);
    assert_code(&out, 0);
    out
}

pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run a shell command, require success, return stdout.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash").arg("-ec").arg(cmd).output().expect("run bash");
    assert!(
        out.status.success(),
        "command failed: {cmd}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write(p: &Path, data: impl AsRef<[u8]>) {
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(p, data).unwrap();
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A comparable description of a tree: per relative path, type, mode, content or link target,
/// and the hard-link group; file mtimes when `mtimes`.
pub fn manifest(root: &Path, mtimes: bool) -> String {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    walk(root, root, &mut entries, &mut inodes, mtimes);
    let mut out = String::new();
    for (k, v) in entries {
        out.push_str(&format!("{} {}\n", String::from_utf8_lossy(&k).escape_debug(), v));
    }
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<Vec<u8>, String>,
    inodes: &mut BTreeMap<(u64, u64), Vec<u8>>,
    mtimes: bool,
) {
    let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for p in names {
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let m = fs::symlink_metadata(&p).unwrap();
        let mode = m.mode() & 0o7777;
        let desc = if m.file_type().is_symlink() {
            format!("link -> {}", fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            walk(root, &p, out, inodes, mtimes);
            format!("dir {mode:o}")
        } else if m.is_file() {
            let data = fs::read(&p).unwrap();
            let sum = data
                .iter()
                .fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3));
            let mut d = format!("file {mode:o} {} {sum:x}", data.len());
            if m.nlink() > 1 {
                let first = inodes.entry((m.dev(), m.ino())).or_insert_with(|| rel.clone());
                d.push_str(&format!(" link-group {}", String::from_utf8_lossy(first)));
            }
            if mtimes {
                d.push_str(&format!(" mtime {}", m.mtime()));
            }
            d
        } else {
            format!("special {:o} {mode:o} rdev {:x}", m.mode() & 0o170000, m.rdev())
        };
        out.insert(rel, desc);
    }
}

/// A small tree with the interesting kinds of entries.
pub fn sample_tree(root: &Path) {
    write(&root.join("a/b/c/deep.txt"), "deep");
    write(&root.join("a/file with space"), "space");
    write(&root.join("top.txt"), "top\n".repeat(1000));
    write(&root.join("zeros.bin"), vec![0u8; 100_000]);
    write(&root.join("empty"), "");
    fs::create_dir_all(root.join("emptydir")).unwrap();
    write(&root.join("ünï/cødé"), "utf8");
    write(&root.join(OsStr::from_bytes(b"raw\xffname")), "not utf8");
    let long = "l".repeat(120);
    write(&root.join(format!("{long}/{long}/file-{long}")), "long");
    std::os::unix::fs::symlink("a/b", root.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink(format!("{long}/{long}"), root.join("long-link")).unwrap();
    fs::hard_link(root.join("top.txt"), root.join("a/hardlink")).unwrap();
    chmod(&root.join("a/b/c/deep.txt"), 0o600);
    chmod(&root.join("a/b"), 0o750);
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640))
        .unwrap();
    if nix::unistd::geteuid().is_root() {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        let mode = Mode::from_bits_truncate(0o620);
        mknod(&root.join("char-dev"), SFlag::S_IFCHR, mode, makedev(1, 3)).unwrap();
    }
}

/// A level's data object decompressed by the real CLI tools, as a path to a plain tar file.
pub fn decompress_with_cli(data: &Path, compression: &str, out: &Path) {
    let tool = match compression {
        "zstd" => "zstd -dc",
        "gzip" => "gzip -dc",
        "bzip2" => "bzip2 -dc",
        "xz" => "xz -dc",
        _ => "cat",
    };
    sh(&format!("{tool} < '{}' > '{}'", data.display(), out.display()));
}

/// The data dirs of a backup name in a local container, oldest first: (L_T dir path, level).
pub fn level_dirs(container: &Path, host_backup: &str) -> Vec<PathBuf> {
    let base = container.join("data/tar").join(host_backup);
    let mut out = Vec::new();
    let mut chains: Vec<_> = fs::read_dir(&base).unwrap().map(|e| e.unwrap().path()).collect();
    chains.sort();
    for c in chains {
        let mut levels: Vec<(i64, PathBuf)> = fs::read_dir(&c)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|p| {
                let n = p.file_name()?.to_str()?.to_string();
                let (_, ts) = n.split_once('_')?;
                Some((ts.parse().ok()?, p))
            })
            .collect();
        levels.sort();
        out.extend(levels.into_iter().map(|(_, p)| p));
    }
    out
}

/// The RFC 3339 date of a backup from its `<L>_<T>` data dir, for `--restore-from-date`.
pub fn level_date(dir: &Path) -> String {
    let name = dir.file_name().unwrap().to_str().unwrap();
    let ts: i64 = name.split_once('_').unwrap().1.parse().unwrap();
    jiff::Timestamp::from_second(ts).unwrap().to_string()
}

/// Copy a tree with `cp -a` (keeps links, modes, times).
pub fn copy_tree(from: &Path, to: &Path) {
    sh(&format!("cp -a '{}' '{}'", from.display(), to.display()));
}

/// Sleep so that the next change is strictly newer than the last backup's start.
pub fn tick() {
    std::thread::sleep(std::time::Duration::from_millis(1100));
}
