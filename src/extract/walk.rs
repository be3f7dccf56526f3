//! Resolving archive member names inside the restore directory: names are split into plain
//! components (no absolute path, no `..`), then walked one component at a time from an fd of
//! the root with `O_NOFOLLOW`, so the kernel never resolves a path string and no symbolic
//! link is ever followed.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::error::{Error, Result};

/// Flags to open a directory we only walk through. `O_PATH` needs only search permission,
/// so a restored `0311` directory can still be walked by its (non-root) owner.
#[cfg(any(target_os = "linux", target_os = "android"))]
const WALK: OFlag =
    OFlag::O_PATH.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const WALK: OFlag =
    OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// Flags to open a directory we read or change (list, fchmod, futimens).
pub(super) const READ_DIR: OFlag =
    OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// Split a raw member name into its components. `./a//b/` gives `[a, b]`; `./` gives `[]`
/// (the root itself). Absolute names and `..` components are refused.
pub(super) fn split(name: &[u8]) -> Result<Vec<&[u8]>> {
    split_for(Subject::Member(name), name)
}

/// [`split`] of `name`, with refusals about `subject`.
pub(super) fn split_for<'a>(subject: Subject, name: &'a [u8]) -> Result<Vec<&'a [u8]>> {
    if name.first() == Some(&b'/') {
        return Err(subject.refuse("absolute path, it would leave the restore directory"));
    }
    if name.contains(&0) {
        return Err(subject.refuse("the name contains a NUL byte"));
    }
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(subject.refuse("path leaves the restore directory")),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// The refusal error for member `name`.
pub(super) fn refuse(name: &[u8], why: &str) -> Error {
    Subject::Member(name).refuse(why)
}

/// What a refusal is about, for its message.
#[derive(Clone, Copy)]
pub(super) enum Subject<'a> {
    /// An archive member, by name.
    Member(&'a [u8]),
    /// Hard link member `name` to the earlier member `target`.
    Link { name: &'a [u8], target: &'a [u8] },
    /// A directory rename listed in the dumpdir of directory `dir`.
    Rename { dir: &'a [u8], from: &'a [u8], to: &'a [u8] },
}

impl Subject<'_> {
    /// The refusal error: nothing was done for the subject.
    pub fn refuse(self, why: &str) -> Error {
        let what = match self {
            Subject::Member(name) => format!("archive member '{}'", show(name)),
            Subject::Link { name, target } => {
                format!("archive member '{}' (a hard link to '{}')", show(name), show(target))
            }
            Subject::Rename { dir, from, to } => format!(
                "the rename of '{}' to '{}' in the dumpdir of '{}'",
                show(from),
                show(to),
                show(dir)
            ),
        };
        Error::unsafe_path(format!("refusing {what}: {why}"))
    }
}

/// A member name for messages: lossy UTF-8 with control characters escaped, so a hostile name
/// cannot rewrite the terminal.
pub(super) fn show(name: &[u8]) -> String {
    let mut s = String::new();
    for ch in String::from_utf8_lossy(name).chars() {
        if ch.is_control() {
            s.extend(ch.escape_default());
        } else {
            s.push(ch);
        }
    }
    s
}

/// Components joined back with `/`, for messages.
pub(super) fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub(super) fn lstat_at(dir: BorrowedFd, name: &[u8]) -> nix::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// File type bits of a stat.
pub(super) fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Names in directory `dir` (without `.` and `..`), read through a fresh open of the directory
/// so the walk fd's offset is never shared.
pub(super) fn list_names(dir: BorrowedFd) -> nix::Result<Vec<Vec<u8>>> {
    let fd = openat(dir, ".", READ_DIR, Mode::empty())?;
    let mut d = Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for entry in d.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            out.push(name);
        }
    }
    Ok(out)
}

/// Give the owner write and search permission on directory `fd` if it lacks them (see
/// [`make_writable`]).
pub(super) fn make_fd_writable(fd: BorrowedFd) {
    let Ok(st) = nix::sys::stat::fstat(fd) else {
        return;
    };
    if st.st_mode & 0o300 == 0o300 || st.st_uid != nix::unistd::geteuid().as_raw() {
        return;
    }
    let mode = Mode::from_bits_truncate((st.st_mode & 0o7777) | 0o700);
    if let Err(e) = nix::sys::stat::fchmod(fd, mode) {
        log::debug!("cannot make a directory writable: {e}");
    }
}

/// Give the owner write and search permission on directory `name` in `parent` if it lacks
/// them, so a read-only directory from an earlier level can still be filled or purged. The
/// final mode is set again by the deferred metadata. Best effort: root does not need it.
pub(super) fn make_writable(parent: BorrowedFd, name: &[u8], st: &FileStat) {
    if st.st_mode & 0o300 == 0o300 || st.st_uid != nix::unistd::geteuid().as_raw() {
        return;
    }
    let mode = Mode::from_bits_truncate((st.st_mode & 0o7777) | 0o700);
    let res = nix::sys::stat::fchmodat(
        parent,
        name,
        mode,
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    );
    if let Err(e) = res {
        log::debug!("cannot make directory '{}' writable: {e}", show(name));
    }
}

/// Remove `name` in `parent`, recursively if it is a directory, never following symbolic
/// links. `path` is its name for messages. One fd is open per level of depth.
pub(super) fn remove_tree(parent: BorrowedFd, name: &[u8], path: &[u8]) -> Result<()> {
    let fail = |what: &str, e: Errno| {
        Error::io(format!("cannot {what} '{}'", show(path)), io::Error::from(e))
    };
    let Some(st) = lstat_at(parent, name).map_err(|e| fail("inspect", e))? else {
        return Ok(());
    };
    // Never across a mount point: GNU tar would empty the mounted file system here.
    let here = nix::sys::stat::fstat(parent).map_err(|e| fail("inspect the directory of", e))?;
    if st.st_dev != here.st_dev {
        log::warn!(
            "not removing '{}': another file system is mounted there (the backup does not \
             have it); unmount it first if it must go",
            show(path)
        );
        return Ok(());
    }
    if kind(&st) != SFlag::S_IFDIR {
        return unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(|e| fail("remove", e));
    }
    make_writable(parent, name, &st);
    let dir = openat(parent, name, READ_DIR, Mode::empty()).map_err(|e| fail("open", e))?;
    for child in list_names(dir.as_fd()).map_err(|e| fail("list", e))? {
        let mut child_path = path.to_vec();
        child_path.push(b'/');
        child_path.extend_from_slice(&child);
        remove_tree(dir.as_fd(), &child, &child_path)?;
    }
    drop(dir);
    unlinkat(parent, name, UnlinkatFlags::RemoveDir).map_err(|e| fail("remove directory", e))
}

/// Why one step of a walk failed.
enum StepError {
    Symlink,
    NotDir,
    Sys(Errno),
}

/// Open directory `comp` in `base` without following it; create it (mode 0700) when missing
/// and `create`. `Ok(None)`: missing and not created.
fn step(base: BorrowedFd, comp: &[u8], create: bool) -> Result<Option<OwnedFd>, StepError> {
    let mut made = false;
    loop {
        match openat(base, comp, WALK, Mode::empty()) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::ENOENT) if create && !made => {
                match mkdirat(base, comp, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => made = true,
                    Err(e) => return Err(StepError::Sys(e)),
                }
            }
            Err(Errno::ENOENT) => return Ok(None),
            Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => {
                return match lstat_at(base, comp) {
                    Ok(Some(st)) if kind(&st) == SFlag::S_IFLNK => Err(StepError::Symlink),
                    Ok(Some(_)) => Err(StepError::NotDir),
                    _ => Err(StepError::Sys(e)),
                };
            }
            Err(e) => return Err(StepError::Sys(e)),
        }
    }
}

/// The root fd and a cache of the last directory walked to.
///
/// The cache holds one fd, so open fds stay bounded. It stays correct because every
/// directory removal either happens inside the cached directory (replacing a member of it)
/// or is preceded by [`Walker::forget`] (purges and renames).
pub(super) struct Walker {
    pub root: OwnedFd,
    pub root_path: PathBuf,
    cache: Option<(Vec<Vec<u8>>, OwnedFd)>,
}

impl Walker {
    pub fn new(root: OwnedFd, root_path: PathBuf) -> Walker {
        Walker { root, root_path, cache: None }
    }

    /// Drop the cached directory fd (call before anything that may move or delete it).
    pub fn forget(&mut self) {
        self.cache = None;
    }

    /// `path` under the root, for messages.
    pub fn display(&self, path: &[u8]) -> String {
        super::display_path(&self.root_path, path)
    }

    /// An fd of directory `dir` (components below the root), walked for `subject`. Missing
    /// directories are created when `create`, else `Ok(None)`. A symbolic link on the way is
    /// refused as unsafe.
    pub fn dir(
        &mut self,
        subject: Subject,
        dir: &[&[u8]],
        create: bool,
    ) -> Result<Option<BorrowedFd<'_>>> {
        if dir.is_empty() {
            return Ok(Some(self.root.as_fd()));
        }
        let start = match &self.cache {
            Some((p, _)) if p.len() <= dir.len() && p.iter().zip(dir).all(|(a, b)| a == b) => {
                p.len()
            }
            _ => 0,
        };
        let mut cur: Option<OwnedFd> = None;
        for i in start..dir.len() {
            let base = match (&cur, &self.cache) {
                (Some(fd), _) => fd.as_fd(),
                (None, Some((_, fd))) if start > 0 => fd.as_fd(),
                _ => self.root.as_fd(),
            };
            let here = join(&dir[..=i]);
            match step(base, dir[i], create) {
                Ok(Some(fd)) => cur = Some(fd),
                Ok(None) => return Ok(None),
                Err(StepError::Symlink) => {
                    return Err(subject.refuse(&format!(
                        "'{}' is a symbolic link and members are never written through \
                             one (it could lead outside the restore directory)",
                        show(&here)
                    )));
                }
                Err(StepError::NotDir) => {
                    return Err(Error::io(
                        format!("cannot walk to {}: not a directory", self.display(&here)),
                        io::Error::from(Errno::ENOTDIR),
                    ));
                }
                Err(StepError::Sys(e)) => {
                    return Err(Error::io(
                        format!("cannot open directory {}", self.display(&here)),
                        io::Error::from(e),
                    ));
                }
            }
        }
        if let Some(fd) = cur {
            self.cache = Some((dir.iter().map(|c| c.to_vec()).collect(), fd));
        }
        Ok(self.cache.as_ref().map(|(_, fd)| fd.as_fd()))
    }
}
