//! GNU incremental restore of a `D` member, as GNU tar's `try_purge_directory` does it: the
//! directory renames first, then the purge of every entry that was not in the directory at
//! backup time. All of it walks through [`Walker`], so it never leaves the restore directory.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat};
use nix::sys::stat::{Mode, SFlag, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::Target;
use super::walk::{
    READ_DIR, Subject, join, kind, list_names, lstat_at, make_fd_writable, remove_tree, show,
    split, split_for,
};
use crate::error::{Error, Result};
use crate::incremental::dumpdir::{Dumpdir, Flag, Rename};

impl Target {
    /// Apply the dumpdir of directory member `dir_name`: first its renames (`X`, `R`/`T`;
    /// archive-relative paths, an empty one is the temporary directory made by `X`), then
    /// delete, recursively and without following links, every entry of the directory that
    /// is not listed, is listed `D` but is not a directory, or is listed `Y` but is a
    /// directory. A directory that does not exist yet has nothing to purge.
    pub fn apply_dumpdir(&mut self, dir_name: &[u8], dumpdir: &Dumpdir) -> Result<()> {
        let comps = split(dir_name)?;
        // Renames and removals may move or delete the walker's cached directory.
        self.walker.forget();
        if self.open_existing(dir_name, &comps)?.is_none() {
            return Ok(());
        }
        let mut temp: Option<Vec<Vec<u8>>> = None;
        for rename in &dumpdir.renames {
            match rename {
                Rename::Temp(name) => temp = Some(self.make_temp(dir_name, name)?),
                Rename::Move { from, to } => {
                    let subject = Subject::Rename { dir: dir_name, from, to };
                    self.rename(subject, from, to, temp.as_deref())?;
                }
            }
        }
        self.walker.forget();
        let Some(dir) = self.open_existing(dir_name, &comps)? else {
            return Ok(());
        };
        self.purge(dir, &comps, dumpdir)
    }

    /// A readable fd of existing directory `comps`, or `None` when it is missing or not a
    /// directory (the member will create it). A symbolic link there is refused: purging
    /// would delete the entries of its target.
    fn open_existing(&mut self, name: &[u8], comps: &[&[u8]]) -> Result<Option<OwnedFd>> {
        let subject = Subject::Member(name);
        let (dir, leaf) = match comps.split_last() {
            None => (self.walker.root.as_fd(), &b"."[..]),
            Some((leaf, parent)) => match self.walker.dir(subject, parent, false)? {
                Some(dir) => (dir, *leaf),
                None => return Ok(None),
            },
        };
        match openat(dir, leaf, READ_DIR, Mode::empty()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => {
                match lstat_at(dir, leaf) {
                    Ok(Some(st)) if kind(&st) == SFlag::S_IFLNK => Err(subject
                        .refuse("it is a symbolic link here, and its target must not be purged")),
                    Ok(_) => Ok(None),
                    Err(_) => Err(io_err(&self.root, "open directory", &join(comps), e)),
                }
            }
            Err(e) => Err(io_err(&self.root, "open directory", &join(comps), e)),
        }
    }

    /// `X name`: make a fresh temporary directory inside directory `name`, to break a cycle
    /// of renames. Returns its components.
    fn make_temp(&mut self, dir_name: &[u8], name: &[u8]) -> Result<Vec<Vec<u8>>> {
        let subject = Subject::Rename { dir: dir_name, from: name, to: b"" };
        let comps = split_for(subject, name)?;
        let Some(dir) = self.open_existing(name, &comps)? else {
            return Err(io_err(&self.root, "make a temporary directory in", name, Errno::ENOENT));
        };
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let mut last = Errno::EEXIST;
        for k in 0..100u32 {
            let tmp = format!(
                "tar.{:06x}",
                (seed ^ std::process::id() ^ k.wrapping_mul(0x9e37)) & 0xffffff
            );
            match mkdirat(dir.as_fd(), tmp.as_str(), Mode::from_bits_truncate(0o700)) {
                Ok(()) => {
                    let mut out: Vec<Vec<u8>> = comps.iter().map(|c| c.to_vec()).collect();
                    out.push(tmp.into_bytes());
                    return Ok(out);
                }
                Err(Errno::EEXIST) => last = Errno::EEXIST,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(io_err(&self.root, "make a temporary directory in", name, last))
    }

    /// `R from` `T to`: rename a directory (any entry, in fact: a link is moved, never
    /// followed). The destination's parents are created as GNU tar does.
    fn rename(
        &mut self,
        subject: Subject,
        from: &[u8],
        to: &[u8],
        temp: Option<&[Vec<u8>]>,
    ) -> Result<()> {
        let src = resolve(subject, from, temp)?;
        let dst = resolve(subject, to, temp)?;
        let (Some((src_leaf, src_parent)), Some((dst_leaf, dst_parent))) =
            (src.split_last(), dst.split_last())
        else {
            return Err(subject.refuse("it would move the restore directory itself"));
        };
        let what = format!(
            "cannot rename {} to {}",
            super::display_path(&self.root, &join(&src)),
            super::display_path(&self.root, &join(&dst))
        );
        let fail = |e: io::Error| Error::io(what.clone(), e);
        // GNU tar reports a missing source and goes on; the directory's own member recreates
        // what is needed. (It happens when an inode number was reused for a new directory.)
        let missing = |problems: &mut Vec<String>| {
            let problem = format!("{what}: the source does not exist; not renamed");
            log::warn!("{problem}");
            problems.push(problem);
            Ok(())
        };
        let Some(src_dir) = self.walker.dir(subject, src_parent, false)? else {
            return missing(&mut self.problems);
        };
        let src_dir = src_dir.try_clone_to_owned().map_err(fail)?;
        if lstat_at(src_dir.as_fd(), src_leaf).map_err(|e| fail(io::Error::from(e)))?.is_none() {
            return missing(&mut self.problems);
        }
        let res = match self.walker.dir(subject, dst_parent, true)? {
            Some(dst_dir) => match renameat(src_dir.as_fd(), *src_leaf, dst_dir, *dst_leaf) {
                // An earlier level left a file where this level has the moved directory: the
                // purge would delete that file anyway (GNU tar stops here).
                Err(Errno::ENOTDIR | Errno::EEXIST)
                    if lstat_at(dst_dir, dst_leaf)
                        .is_ok_and(|st| st.is_some_and(|st| kind(&st) != SFlag::S_IFDIR)) =>
                {
                    log::debug!("{what}: removing the file in the way");
                    unlinkat(dst_dir, *dst_leaf, UnlinkatFlags::NoRemoveDir)
                        .and_then(|()| renameat(src_dir.as_fd(), *src_leaf, dst_dir, *dst_leaf))
                }
                r => r,
            },
            None => Err(Errno::ENOENT),
        };
        self.walker.forget();
        res.map_err(|e| fail(io::Error::from(e)))
    }

    /// Delete the entries of directory `dir` (member `comps`) that `dumpdir` does not keep.
    fn purge(&mut self, dir: OwnedFd, comps: &[&[u8]], dumpdir: &Dumpdir) -> Result<()> {
        let path = join(comps);
        let dev = |fd| nix::sys::stat::fstat(fd).map(|st| st.st_dev);
        let root_dev = dev(self.walker.root.as_fd());
        if root_dev.is_ok() && dev(dir.as_fd()).ok() != root_dev.ok() {
            log::warn!(
                "not purging '{}': another file system is mounted there; what the backup does \
                 not list in it stays",
                show(&path)
            );
            return Ok(());
        }
        let names =
            list_names(dir.as_fd()).map_err(|e| io_err(&self.root, "list directory", &path, e))?;
        let mut writable = false;
        for name in names {
            let mut child = path.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(&name);
            let Some(st) = lstat_at(dir.as_fd(), &name)
                .map_err(|e| io_err(&self.root, "inspect", &child, e))?
            else {
                continue;
            };
            let is_dir = kind(&st) == SFlag::S_IFDIR;
            let keep = match dumpdir.lookup(&name) {
                None => false,
                Some(Flag::Dir) => is_dir,
                Some(Flag::Dumped) => !is_dir,
                Some(Flag::Kept) => true,
            };
            if keep {
                continue;
            }
            if !writable {
                make_fd_writable(dir.as_fd());
                writable = true;
            }
            log::debug!("purging '{}' (not in the dumpdir of '{}')", show(&child), show(&path));
            remove_tree(dir.as_fd(), &name, &child)?;
        }
        Ok(())
    }
}

/// The components of rename path `p`; empty means the temporary directory of `X`.
fn resolve<'a>(
    subject: Subject,
    p: &'a [u8],
    temp: Option<&'a [Vec<u8>]>,
) -> Result<Vec<&'a [u8]>> {
    match (p.is_empty(), temp) {
        (false, _) => split_for(subject, p),
        (true, Some(t)) => Ok(t.iter().map(|c| c.as_slice()).collect()),
        (true, None) => Err(Error::corrupt(
            "malformed dumpdir: a rename uses the temporary directory before any 'X'",
        )),
    }
}

/// An I/O error of a syscall on `path` (below `root`).
fn io_err(root: &Path, what: &str, path: &[u8], e: Errno) -> Error {
    Error::io(format!("cannot {what} {}", super::display_path(root, path)), io::Error::from(e))
}
