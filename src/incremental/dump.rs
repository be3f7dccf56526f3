//! Write a scanned level as a GNU incremental tar stream: every directory's `D` member first
//! (GNU tar's order: directories sorted by name), then the `Y` entries of each directory.
//!
//! Files that vanish, cannot be read, or change while being read are warnings: the member is
//! skipped or padded, the backup goes on, and the report counts them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::incremental::dumpdir::Flag;
use crate::incremental::scan::Children;
use crate::incremental::scan::{Plan, Warning};
use crate::interrupt::{self, Interruptible};
use crate::tar::{self, Header, Kind, TarWriter};

/// How members are written.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// `--dereference-symlink soft|all`: store what links point to.
    pub follow_symlinks: bool,
    /// `--dereference-symlink hard|all`: store every hard link as a separate file.
    pub hard_dereference: bool,
}

/// What the dump wrote.
#[derive(Debug, Default)]
pub struct DumpReport {
    pub members: u64,
    pub bytes_read: u64,
    pub warnings: Vec<Warning>,
    /// Files that could not be read or were found on another file system: (directory index
    /// in the plan, entry name). They are left out of the snapshot so the next level tries
    /// them again.
    pub dropped: Vec<(usize, Vec<u8>)>,
    /// How many files could not be read or changed while being read.
    pub unreadable: u64,
}

/// Write `plan` into `out`.
pub fn dump<W: Write>(
    plan: &Plan,
    out: &mut TarWriter<W>,
    opts: &DumpOptions,
) -> Result<DumpReport> {
    let mut d = Dumper {
        opts,
        out,
        names: Names::default(),
        links: HashMap::new(),
        device: None,
        report: DumpReport::default(),
    };
    for dir in &plan.dirs {
        let mut name = dir.name.clone();
        name.push(b'/');
        let dumpdir = dir.dumpdir.encode();
        let owner = d.names.owner(&dir.meta);
        let h = header(&name, &dir.meta, &owner);
        // A mount point (another file system, contents left out) is a plain directory: GNU
        // tar writes it as an empty dumpdir, and restoring that deletes whatever is mounted
        // there then. A plain directory is created, never purged.
        let kind = match dir.children {
            Children::None => Kind::Dir,
            _ => Kind::Dumpdir { dumpdir: &dumpdir },
        };
        d.write(&h, kind, None, &dir.path)?;
    }
    for (i, dir) in plan.dirs.iter().enumerate() {
        // Opened at its first regular file: those are opened relative to it.
        let mut dir_fd: Option<Option<File>> = None;
        d.device = plan.one_file_system.then(|| dir.meta.dev());
        for (j, (flag, entry)) in dir.dumpdir.entries.iter().enumerate() {
            if flag != Flag::Dumped {
                continue;
            }
            let mut name = dir.name.clone();
            name.push(b'/');
            name.extend_from_slice(entry);
            let path = dir.path.join(OsStr::from_bytes(entry));
            let fd = match dir.regular.get(j) {
                Some(true) => dir_fd.get_or_insert_with(|| open_dir(&dir.path)).as_ref(),
                _ => None,
            };
            let read = match fd {
                Some(fd) => d.regular_at(fd, entry, &name, &path)?,
                None => d.file(&name, &path)?,
            };
            if !read {
                d.report.dropped.push((i, entry.to_vec()));
            }
        }
    }
    d.device = None;
    for (name, path) in &plan.files {
        d.file(name, path)?;
    }
    Ok(d.report)
}

struct Dumper<'a, W: Write> {
    opts: &'a DumpOptions,
    out: &'a mut TarWriter<W>,
    names: Names,
    /// First archive name of each multiply-linked inode, for hard-link members.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// The device of the directory being dumped, when entries on another file system are
    /// left out (the scan did not take the status of new files; see `scan::Plan`).
    device: Option<u64>,
    report: DumpReport,
}

impl<W: Write> Dumper<'_, W> {
    fn write(
        &mut self,
        h: &Header,
        kind: Kind,
        data: Option<&mut dyn Read>,
        path: &Path,
    ) -> Result<tar::Appended> {
        self.report.members += 1;
        self.out.append(h, kind, data).map_err(|e| {
            Error::from(e)
                .context(format!("cannot write the archive member for {}", path.display()))
        })
    }

    fn warn(&mut self, path: &Path, message: String) {
        log::warn!("{}: {message}", path.display());
        self.report.warnings.push(Warning { path: path.to_path_buf(), message });
    }

    /// Dump one non-directory entry. Returns false when it could not be read.
    fn file(&mut self, name: &[u8], path: &Path) -> Result<bool> {
        interrupt::check()?;
        let stat =
            if self.opts.follow_symlinks { fs::metadata(path) } else { fs::symlink_metadata(path) };
        let meta = match stat {
            Ok(m) => m,
            Err(e) => {
                let why = if e.kind() == io::ErrorKind::NotFound {
                    "file removed before we read it".to_string()
                } else {
                    format!("cannot stat: {e}")
                };
                self.warn(path, why);
                self.report.unreadable += 1;
                return Ok(false);
            }
        };
        if self.elsewhere(&meta) {
            return Ok(false);
        }
        let ft = meta.file_type();
        if ft.is_file() {
            return self.regular(name, path, &meta);
        }
        let owner = self.names.owner(&meta);
        let h = header(name, &meta, &owner);
        if ft.is_symlink() {
            match fs::read_link(path) {
                Ok(target) => {
                    self.write(
                        &h,
                        Kind::Symlink { target: target.as_os_str().as_bytes() },
                        None,
                        path,
                    )?;
                }
                Err(e) => {
                    self.warn(path, format!("cannot read symbolic link: {e}"));
                    self.report.unreadable += 1;
                    return Ok(false);
                }
            }
        } else if ft.is_fifo() {
            self.write(&h, Kind::Fifo, None, path)?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let (major, minor) = (
                nix::sys::stat::major(meta.rdev()) as u32,
                nix::sys::stat::minor(meta.rdev()) as u32,
            );
            let kind = if ft.is_char_device() {
                Kind::Char { major, minor }
            } else {
                Kind::Block { major, minor }
            };
            self.write(&h, kind, None, path)?;
        } else if ft.is_socket() {
            self.warn(path, "socket ignored".into());
        } else if ft.is_dir() {
            // Became a directory after the scan; the next level will see it.
            self.warn(path, "changed into a directory while we read it; not dumped".into());
        }
        Ok(true)
    }

    /// A file the scan saw as regular, opened relative to its directory without another
    /// status call; anything else found there (or an open that fails) takes [`Self::file`].
    fn regular_at(&mut self, dir: &File, entry: &[u8], name: &[u8], path: &Path) -> Result<bool> {
        interrupt::check()?;
        let mut flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        if !self.opts.follow_symlinks {
            flags |= OFlag::O_NOFOLLOW;
        }
        let file = match nix::fcntl::openat(dir, entry, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(_) => return self.file(name, path),
        };
        let meta = match file.metadata() {
            Ok(m) if m.is_file() => m,
            _ => return self.file(name, path),
        };
        if self.elsewhere(&meta) {
            return Ok(false);
        }
        if self.hard_link(name, path, &meta)? {
            return Ok(true);
        }
        self.contents(name, path, &file, &meta)
    }

    fn regular(&mut self, name: &[u8], path: &Path, meta: &Metadata) -> Result<bool> {
        if self.hard_link(name, path, meta)? {
            return Ok(true);
        }
        let mut opts = fs::OpenOptions::new();
        opts.read(true);
        if !self.opts.follow_symlinks {
            opts.custom_flags(nix::libc::O_NOFOLLOW);
        }
        let file = match opts.open(path) {
            Ok(f) => f,
            Err(e) => {
                self.warn(path, format!("cannot open: {e}"));
                self.report.unreadable += 1;
                self.links.remove(&(meta.dev(), meta.ino()));
                return Ok(false);
            }
        };
        // Size and times as of opening; GNU tar also re-stats before dumping.
        let meta =
            file.metadata().map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
        self.contents(name, path, &file, &meta)
    }

    /// On another file system than its directory, where those are left out (GNU tar lists
    /// them as `N`; we leave them out of the snapshot, so each level looks again).
    fn elsewhere(&self, meta: &Metadata) -> bool {
        self.device.is_some_and(|dev| dev != meta.dev())
    }

    /// A member linking to the first name of a multiply-linked file already dumped (true),
    /// or false after noting this name as the first.
    fn hard_link(&mut self, name: &[u8], path: &Path, meta: &Metadata) -> Result<bool> {
        if meta.nlink() <= 1 || self.opts.hard_dereference {
            return Ok(false);
        }
        let key = (meta.dev(), meta.ino());
        if let Some(first) = self.links.get(&key).cloned() {
            let owner = self.names.owner(meta);
            self.write(&header(name, meta, &owner), Kind::HardLink { target: &first }, None, path)?;
            return Ok(true);
        }
        self.links.insert(key, name.to_vec());
        Ok(false)
    }

    /// The member of an open regular file whose status, as of opening, is `meta`.
    fn contents(&mut self, name: &[u8], path: &Path, file: &File, meta: &Metadata) -> Result<bool> {
        let owner = self.names.owner(meta);
        let h = header(name, meta, &owner);
        let size = meta.len();
        let map = tar::sparse_map(file, meta).unwrap_or(None);
        let appended = match &map {
            Some(map) => {
                let mut data = Interruptible(tar::SparseReader::new(file, map));
                self.write(&h, Kind::Sparse { size, map }, Some(&mut data), path)?
            }
            None => self.write(&h, Kind::File { size }, Some(&mut Interruptible(file)), path)?,
        };
        // A signal shows as a read error of the file being read; stop here.
        interrupt::check()?;
        self.report.bytes_read += size.saturating_sub(appended.short);
        crate::progress::add_files(1);
        crate::progress::add_bytes(size);
        if let Some(e) = appended.read_error {
            self.warn(path, format!("read error, rest of the file stored as zeros: {e}"));
            self.report.unreadable += 1;
            return Ok(false);
        }
        if appended.short > 0 {
            self.warn(
                path,
                format!(
                    "file shrank by {} bytes while we read it; padded with zeros",
                    appended.short
                ),
            );
            self.report.unreadable += 1;
            return Ok(false);
        }
        let changed = |after: Metadata| {
            (after.mtime(), after.mtime_nsec(), after.ctime(), after.ctime_nsec())
                != (meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec())
        };
        if file.metadata().is_ok_and(changed) {
            self.warn(path, "file changed as we read it".into());
            self.report.unreadable += 1;
            return Ok(false);
        }
        Ok(true)
    }
}

/// A directory to open its files relative to; `None` (the files then go by path) if it
/// cannot be opened now.
fn open_dir(path: &Path) -> Option<File> {
    fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_DIRECTORY).open(path).ok()
}

fn header<'a>(name: &'a [u8], meta: &Metadata, owner: &'a (Vec<u8>, Vec<u8>)) -> Header<'a> {
    Header {
        name,
        mode: meta.mode() & 0o7777,
        uid: meta.uid() as u64,
        gid: meta.gid() as u64,
        uname: &owner.0,
        gname: &owner.1,
        mtime: meta.mtime(),
        atime: meta.atime(),
        ctime: meta.ctime(),
    }
}

/// User and group names by id, looked up once each.
#[derive(Default)]
struct Names {
    users: HashMap<u32, Vec<u8>>,
    groups: HashMap<u32, Vec<u8>>,
}

impl Names {
    fn owner(&mut self, meta: &Metadata) -> (Vec<u8>, Vec<u8>) {
        let (uid, gid) = (meta.uid(), meta.gid());
        let user = self
            .users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name.into_bytes())
                    .unwrap_or_default()
            })
            .clone();
        let group = self
            .groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name.into_bytes())
                    .unwrap_or_default()
            })
            .clone();
        (user, group)
    }
}

#[cfg(test)]
mod tests;
