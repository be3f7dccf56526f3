//! The restore target: materialises archive members inside one directory and refuses
//! anything that would touch a file outside it.
//!
//! Every operation works on file descriptors: a member name is split into plain components
//! (absolute names and `..` are refused), then walked from an fd of the root with
//! `O_NOFOLLOW`, and the last component is handled with `*at` syscalls that do not follow
//! symbolic links either. A symbolic link in a member's parent path is refused, and an
//! existing entry at a member's name is unlinked before the member is created, so nothing is
//! ever written through a link. Directory metadata is deferred to [`Target::finish_level`], so
//! read-only directories still receive their files and mtimes survive their children.

mod purge;
mod walk;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, futimens, mkdirat,
    mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Group, Uid, UnlinkatFlags, User, fchown, fchownat, linkat, mkfifoat};
use nix::unistd::{symlinkat, unlinkat};

use crate::error::{Error, Result};
use walk::{
    READ_DIR, Subject, Walker, join, kind, lstat_at, make_writable, refuse, remove_tree, show,
};

/// Metadata of a member, as read from its tar header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (type bits, if any, are ignored).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Owner name; when running as root and it exists here, it wins over `uid`.
    pub uname: Option<Vec<u8>>,
    /// Group name; when running as root and it exists here, it wins over `gid`.
    pub gname: Option<Vec<u8>>,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    pub mtime_nsec: u32,
}

/// A special file member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Fifo,
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
}

/// The restore directory. See the module documentation for the safety rules.
pub struct Target {
    walker: Walker,
    root: PathBuf,
    /// Directory metadata waiting for [`Target::finish_level`]: components and metadata.
    pending: Vec<(Vec<Vec<u8>>, Meta)>,
    is_root: bool,
    users: HashMap<Vec<u8>, Option<u32>>,
    groups: HashMap<Vec<u8>, Option<u32>>,
    /// What could not be restored as the archive says, though the restore went on.
    problems: Vec<String>,
}

/// What to do with an existing directory where a member goes.
#[derive(PartialEq)]
enum OnDir {
    Keep,
    Remove,
}

/// Metadata ready to apply: owner (root only), permission bits, atime = mtime.
struct Attrs {
    owner: Option<(Uid, Gid)>,
    mode: Mode,
    time: TimeSpec,
}

impl Target {
    /// Open (create with parents if missing) the restore directory.
    pub fn open(root: &Path) -> Result<Target> {
        std::fs::create_dir_all(root).map_err(|e| {
            Error::io(format!("cannot create the restore directory {}", root.display()), e)
        })?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(root, flags, Mode::empty()).map_err(|e| {
            Error::io(
                format!("cannot open the restore directory {}", root.display()),
                io::Error::from(e),
            )
        })?;
        Ok(Target {
            walker: Walker::new(fd, root.to_path_buf()),
            root: root.to_path_buf(),
            pending: Vec::new(),
            is_root: nix::unistd::geteuid().is_root(),
            users: HashMap::new(),
            groups: HashMap::new(),
            problems: Vec::new(),
        })
    }

    /// Whether `name` (an archive member name) exists in the target, without following a
    /// symbolic link at its end.
    pub fn exists(&mut self, name: &[u8]) -> Result<bool> {
        let comps = walk::split(name)?;
        let Some((leaf, parent)) = comps.split_last() else { return Ok(true) };
        let subject = walk::Subject::Member(name);
        let Some(dir) = self.walker.dir(subject, parent, false)? else { return Ok(false) };
        let found = walk::lstat_at(dir, leaf).map_err(|e| {
            Error::io(format!("cannot inspect {}", self.walker.display(name)), io::Error::from(e))
        })?;
        Ok(found.is_some())
    }

    /// Note an entry the archive says is there but is not.
    pub fn missing(&mut self, problem: String) {
        log::warn!("{problem}");
        self.problems.push(problem);
    }

    /// What could not be restored as the archive says (each also logged as a warning): the
    /// restore is then incomplete and says so with its exit code.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// True when the directory has no entries (restore refuses a non-empty dir w/o --overwrite).
    pub fn is_empty(&self) -> Result<bool> {
        let names = walk::list_names(self.walker.root.as_fd()).map_err(|e| {
            Error::io(format!("cannot list {}", self.root.display()), io::Error::from(e))
        })?;
        Ok(names.is_empty())
    }

    /// Create directory member `name` (`./a/b/`, `a/b`; `./` is the root itself) or keep the
    /// existing one; its metadata is applied by [`Target::finish_level`].
    pub fn create_dir(&mut self, name: &[u8], meta: &Meta) -> Result<()> {
        let comps = walk::split(name)?;
        if let Some((leaf, parent)) = comps.split_last() {
            let dir = parent_fd(&mut self.walker, name, parent)?;
            match prepare(&self.root, dir, leaf, &comps, OnDir::Keep)? {
                Some(st) => make_writable(dir, leaf, &st),
                None => mkdirat(dir, *leaf, Mode::from_bits_truncate(0o700))
                    .map_err(|e| sys_err(&self.root, "create directory", &comps, e))?,
            }
        } else {
            walk::make_fd_writable(self.walker.root.as_fd());
        }
        self.pending.push((comps.iter().map(|c| c.to_vec()).collect(), meta.clone()));
        Ok(())
    }

    /// Create (replace) regular file `name` with the contents of `data`, read to EOF. With
    /// `sparse`, all-zero 4 KiB blocks become holes. Returns the file size.
    pub fn write_file(
        &mut self,
        name: &[u8],
        meta: &Meta,
        data: &mut dyn Read,
        sparse: bool,
    ) -> Result<u64> {
        let comps = walk::split(name)?;
        let attrs = self.attrs(meta);
        let (leaf, dir) = leaf_parent(&mut self.walker, &self.root, name, &comps)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(dir, leaf, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| sys_err(&self.root, "create", &comps, e))?;
        let mut file = File::from(fd);
        let size = copy(data, &mut file, sparse).map_err(|e| match e {
            CopyError::Read(e) => read_error(name, e),
            CopyError::Write(e) => {
                Error::io(format!("cannot write {}", display(&self.root, &comps)), e)
            }
        })?;
        set_meta(file.as_fd(), &attrs, name)
            .map_err(|e| sys_err(&self.root, "set metadata of", &comps, e))?;
        Ok(size)
    }

    /// Create symbolic link `name` pointing to `link_target` (any text: it is never followed).
    pub fn symlink(&mut self, name: &[u8], link_target: &[u8], meta: &Meta) -> Result<()> {
        let comps = walk::split(name)?;
        if link_target.contains(&0) {
            return Err(refuse(name, "the link target contains a NUL byte"));
        }
        let attrs = self.attrs(meta);
        let (leaf, dir) = leaf_parent(&mut self.walker, &self.root, name, &comps)?;
        let res = (|| {
            symlinkat(link_target, dir, leaf)?;
            if let Some((uid, gid)) = attrs.owner {
                let res = fchownat(dir, leaf, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW);
                soft_chown(res, name, uid, gid);
            }
            utimensat(dir, leaf, &attrs.time, &attrs.time, UtimensatFlags::NoFollowSymlink)
        })();
        res.map_err(|e| sys_err(&self.root, "create symlink", &comps, e))
    }

    /// Hard link `name` to the already-restored member `existing` (also an archive name).
    pub fn hard_link(&mut self, name: &[u8], existing: &[u8]) -> Result<()> {
        let comps = walk::split(name)?;
        let subject = Subject::Link { name, target: existing };
        let old = walk::split_for(subject, existing)?;
        if comps == old {
            return Ok(());
        }
        let Some((old_leaf, old_parent)) = old.split_last() else {
            return Err(refuse(name, "a hard link to the restore directory itself"));
        };
        let fail = |e: io::Error| {
            Error::io(
                format!("cannot hard link {} to '{}'", display(&self.root, &comps), show(existing)),
                e,
            )
        };
        // Held as its own fd: the walker's cache moves on to the new name's parent.
        let old_dir = self
            .walker
            .dir(subject, old_parent, false)?
            .ok_or_else(|| fail(io::Error::from(Errno::ENOENT)))?
            .try_clone_to_owned()
            .map_err(fail)?;
        let (leaf, dir) = leaf_parent(&mut self.walker, &self.root, name, &comps)?;
        // No AT_SYMLINK_FOLLOW: a symlink is linked itself, never its target.
        linkat(old_dir.as_fd(), *old_leaf, dir, leaf, AtFlags::empty())
            .map_err(|e| fail(io::Error::from(e)))
    }

    /// Create a fifo, or a device node when running as root (skipped with a warning otherwise).
    pub fn special(&mut self, name: &[u8], kind: Special, meta: &Meta) -> Result<()> {
        let comps = walk::split(name)?;
        let (sflag, major, minor) = match kind {
            Special::Fifo => (SFlag::S_IFIFO, 0, 0),
            Special::Char { major, minor } => (SFlag::S_IFCHR, major, minor),
            Special::Block { major, minor } => (SFlag::S_IFBLK, major, minor),
        };
        if sflag != SFlag::S_IFIFO && !self.is_root {
            log::warn!("{}: device node not restored: only root can create one", show(name));
            return Ok(());
        }
        let attrs = self.attrs(meta);
        let (leaf, dir) = leaf_parent(&mut self.walker, &self.root, name, &comps)?;
        let perm = Mode::from_bits_truncate(0o600);
        let res = if sflag == SFlag::S_IFIFO {
            (|| {
                mkfifoat(dir, leaf, perm)?;
                // Opening a fifo for reading with O_NONBLOCK does not wait for a writer.
                let flags =
                    OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = openat(dir, leaf, flags, Mode::empty())?;
                set_meta(fd.as_fd(), &attrs, name)
            })()
        } else {
            (|| {
                let dev = nix::sys::stat::makedev(major.into(), minor.into());
                mknodat(dir, leaf, sflag, perm, dev)?;
                // Opening a device may have side effects, so metadata goes by name. The node
                // was just made in a directory we hold and only root writes there.
                if let Some((uid, gid)) = attrs.owner {
                    let res =
                        fchownat(dir, leaf, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW);
                    soft_chown(res, name, uid, gid);
                }
                fchmodat(dir, leaf, attrs.mode, FchmodatFlags::FollowSymlink)?;
                utimensat(dir, leaf, &attrs.time, &attrs.time, UtimensatFlags::NoFollowSymlink)
            })()
        };
        res.map_err(|e| sys_err(&self.root, "create special file", &comps, e))
    }

    /// Apply deferred directory metadata, deepest first. Call at the end of each level.
    pub fn finish_level(&mut self) -> Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        // Deepest first, so a parent's mode and mtime are set after its children's.
        pending.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        for (path, meta) in pending {
            let attrs = self.attrs(&meta);
            let comps: Vec<&[u8]> = path.iter().map(|c| c.as_slice()).collect();
            let fd = match comps.split_last() {
                None => openat(self.walker.root.as_fd(), ".", READ_DIR, Mode::empty()),
                Some((leaf, parent)) => {
                    match self.walker.dir(Subject::Member(&path.join(&b'/')), parent, false) {
                        Ok(Some(dir)) => openat(dir, *leaf, READ_DIR, Mode::empty()),
                        // Removed or replaced later in the level: nothing to set.
                        Ok(None) | Err(_) => continue,
                    }
                }
            };
            let fd = match fd {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => continue,
                Err(e) => return Err(sys_err(&self.root, "open directory", &comps, e)),
            };
            set_meta(fd.as_fd(), &attrs, &path.join(&b'/'))
                .map_err(|e| sys_err(&self.root, "set metadata of", &comps, e))?;
        }
        Ok(())
    }

    /// The metadata of `meta` as this process can apply it.
    fn attrs(&mut self, meta: &Meta) -> Attrs {
        // setuid/setgid only when running as root, as GNU tar does.
        let mask = if self.is_root { 0o7777 } else { 0o1777 };
        Attrs {
            owner: self.owner(meta),
            mode: Mode::from_bits_truncate(meta.mode & mask),
            time: TimeSpec::new(meta.mtime as _, meta.mtime_nsec.min(999_999_999) as _),
        }
    }

    /// Owner to set, when running as root: names that exist here win over numeric ids
    /// (GNU tar's rule). Lookups are cached: a restore asks for the same few names often.
    fn owner(&mut self, meta: &Meta) -> Option<(Uid, Gid)> {
        if !self.is_root {
            return None;
        }
        let uid = lookup(&mut self.users, &meta.uname, |s| {
            User::from_name(s).ok().flatten().map(|u| u.uid.as_raw())
        })
        .or_else(|| u32::try_from(meta.uid).ok())?;
        let gid = lookup(&mut self.groups, &meta.gname, |s| {
            Group::from_name(s).ok().flatten().map(|g| g.gid.as_raw())
        })
        .or_else(|| u32::try_from(meta.gid).ok())?;
        Some((Uid::from_raw(uid), Gid::from_raw(gid)))
    }
}

/// A user or group id by name, through `cache`.
fn lookup(
    cache: &mut HashMap<Vec<u8>, Option<u32>>,
    name: &Option<Vec<u8>>,
    find: impl FnOnce(&str) -> Option<u32>,
) -> Option<u32> {
    let name = name.as_ref().filter(|n| !n.is_empty())?;
    *cache.entry(name.clone()).or_insert_with(|| std::str::from_utf8(name).ok().and_then(find))
}

/// Parent fd of a member, creating missing parents.
fn parent_fd<'w>(walker: &'w mut Walker, name: &[u8], parent: &[&[u8]]) -> Result<BorrowedFd<'w>> {
    // With `create`, a missing directory is made, so `None` does not happen.
    walker.dir(Subject::Member(name), parent, true)?.ok_or_else(|| {
        Error::io(
            format!("cannot create the parents of '{}'", show(name)),
            io::Error::from(Errno::ENOENT),
        )
    })
}

/// Leaf name and parent fd of a non-directory member, with whatever was at the name removed.
fn leaf_parent<'a, 'w>(
    walker: &'w mut Walker,
    root: &Path,
    name: &[u8],
    comps: &[&'a [u8]],
) -> Result<(&'a [u8], BorrowedFd<'w>)> {
    let Some((leaf, parent)) = comps.split_last() else {
        return Err(refuse(name, "it names the restore directory itself"));
    };
    let dir = parent_fd(walker, name, parent)?;
    prepare(root, dir, leaf, comps, OnDir::Remove)?;
    Ok((leaf, dir))
}

/// Clear the way for member `comps` whose last component is `leaf` in `dir`: unlink a
/// non-directory (so nothing is written through a link), remove a directory unless `on_dir`
/// keeps it. Returns the stat of a kept directory.
fn prepare(
    root: &Path,
    dir: BorrowedFd,
    leaf: &[u8],
    comps: &[&[u8]],
    on_dir: OnDir,
) -> Result<Option<FileStat>> {
    let Some(st) = lstat_at(dir, leaf).map_err(|e| sys_err(root, "inspect", comps, e))? else {
        return Ok(None);
    };
    if kind(&st) == SFlag::S_IFDIR {
        if on_dir == OnDir::Keep {
            return Ok(Some(st));
        }
        // Inside the walker's cached directory (the parent), so its cache stays valid.
        remove_tree(dir, leaf, &join(comps))?;
    } else {
        unlinkat(dir, leaf, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| sys_err(root, "remove", comps, e))?;
    }
    Ok(None)
}

/// Set owner, mode and mtime through an fd.
fn set_meta(fd: BorrowedFd, attrs: &Attrs, name: &[u8]) -> nix::Result<()> {
    // chown first: it clears setuid/setgid bits that chmod then sets.
    if let Some((uid, gid)) = attrs.owner {
        soft_chown(fchown(fd, Some(uid), Some(gid)), name, uid, gid);
    }
    fchmod(fd, attrs.mode)?;
    futimens(fd, &attrs.time, &attrs.time)
}

/// A failed chown (an id unknown to this system or to a user namespace, root squashed on
/// NFS) leaves the file with our ownership: warn and go on, as GNU tar does.
fn soft_chown(res: nix::Result<()>, name: &[u8], uid: Uid, gid: Gid) {
    if let Err(e) = res {
        log::warn!("{}: cannot set owner {uid}:{gid}: {e}", show(name));
    }
}

/// Member `comps` under `root`, for messages.
fn display(root: &Path, comps: &[&[u8]]) -> String {
    display_path(root, &join(comps))
}

/// `path` (below `root`) for messages.
fn display_path(root: &Path, path: &[u8]) -> String {
    if path.is_empty() {
        return root.display().to_string();
    }
    format!("{}/{}", root.display(), show(path))
}

/// An I/O error of a syscall on member `comps`.
fn sys_err(root: &Path, what: &str, comps: &[&[u8]], e: Errno) -> Error {
    Error::io(format!("cannot {what} {}", display(root, comps)), io::Error::from(e))
}

/// A read error: ours (e.g. a corrupt stream) passes through, others get context.
fn read_error(name: &[u8], e: io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Error::from(e);
    }
    Error::io(format!("cannot read the data of archive member '{}'", show(name)), e)
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Hole granularity: the usual filesystem block size.
const BLOCK: usize = 4096;

/// Copy `data` to `file`; with `sparse`, seek over all-zero blocks and fix the length at the
/// end so a trailing hole counts.
fn copy(data: &mut dyn Read, file: &mut File, sparse: bool) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 64 * BLOCK];
    let mut size: u64 = 0; // bytes of data so far
    let mut offset: u64 = 0; // the file's write position
    loop {
        let n = crate::pipe::read_full(data, &mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            break;
        }
        if !sparse {
            file.write_all(&buf[..n]).map_err(CopyError::Write)?;
            size += n as u64;
            continue;
        }
        // The buffer is whole blocks (but at EOF), so holes fall on block boundaries. Write
        // each run of non-zero blocks at once.
        let is_zero = |i: usize| buf[i..n.min(i + BLOCK)].iter().all(|&b| b == 0);
        let mut i = 0;
        while i < n {
            let zero = is_zero(i);
            let mut end = (i + BLOCK).min(n);
            while end < n && is_zero(end) == zero {
                end = (end + BLOCK).min(n);
            }
            let at = size + i as u64;
            if !zero {
                if offset != at {
                    file.seek(SeekFrom::Start(at)).map_err(CopyError::Write)?;
                }
                file.write_all(&buf[i..end]).map_err(CopyError::Write)?;
                offset = size + end as u64;
            }
            i = end;
        }
        size += n as u64;
    }
    if sparse && offset != size {
        file.set_len(size).map_err(CopyError::Write)?;
    }
    Ok(size)
}
