//! Decide what one level dumps, by GNU tar's `--listed-incremental` rules (`incremen.c`:
//! `procdir`, `makedumpdir`, `scan_directory`), given the previous level's snapshot.
//!
//! Per directory: found under its old name with the same inode → only changed children; found
//! by (dev, ino) under another name → renamed (an `R`/`T` pair in the top dumpdir), changed
//! children; otherwise new → all children. Per entry: `D` for a subdirectory, `Y` when new or
//! when mtime or ctime is not older than the previous dump's start, else `N`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::exclude::Excludes;
use crate::incremental::dumpdir::{Dumpdir, Entries, Flag, Rename};
use crate::incremental::snapshot::{DirRecord, Encoder, Snapshot, Timespec};

/// How the walk treats the tree.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Do not descend into directories on another file system (freezer-agent always does this).
    pub one_file_system: bool,
    /// Compare device numbers too when matching a directory with its snapshot record. The agent
    /// passes `--no-check-device` (LVM snapshots get a new device each time), so this is false.
    pub check_device: bool,
    /// Follow symbolic links (`--dereference-symlink soft|all`).
    pub follow_symlinks: bool,
    pub excludes: Excludes,
    /// `(device read, device recorded)`: a snapshot is read under a device number of its own,
    /// and the snapshot file records the origin's instead, so renames are still found and a
    /// chain may mix snapshot and plain backups of the same path.
    pub dev_alias: Option<(u64, u64)>,
}

/// What to dump under a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Children {
    None,
    Changed,
    All,
}

/// A directory of this dump, in archive order.
#[derive(Debug)]
pub struct Dir {
    /// Archive name without trailing slash: `.` or `./a/b`.
    pub name: Vec<u8>,
    pub path: PathBuf,
    pub meta: Metadata,
    pub children: Children,
    /// What goes into its `D` member (and, without the renames, into the snapshot).
    pub dumpdir: Dumpdir,
    /// Per entry of `dumpdir`: the scan saw a regular file, so the dump may open it without
    /// another status call (it checks the type of what it opened).
    pub regular: Vec<bool>,
    /// The device number recorded for it (see [`ScanOptions::dev_alias`]).
    pub dev: u64,
    /// False when the directory could not be listed: it is left out of the new snapshot so the
    /// next level dumps it whole.
    pub listed: bool,
}

/// Counts of what the scan decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanStats {
    pub dirs: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub excluded: u64,
}

/// A problem that does not stop the backup.
#[derive(Debug)]
pub struct Warning {
    pub path: PathBuf,
    pub message: String,
}

/// The result of a scan.
#[derive(Debug)]
pub struct Plan {
    pub dirs: Vec<Dir>,
    /// Individual files given as the path to back up (archived by base name, always dumped).
    pub files: Vec<(Vec<u8>, PathBuf)>,
    pub stats: ScanStats,
    pub warnings: Vec<Warning>,
    /// [`ScanOptions::one_file_system`], for the new files whose status the scan left to the
    /// dump: a file on another file system is left out there.
    pub one_file_system: bool,
}

impl Plan {
    /// The snapshot file to store with this dump, encoded; `start` is when this dump began,
    /// `dropped` lists (directory index, entry name) of files that could not be read, left out
    /// so that the next level tries them again.
    pub fn encode_snapshot(&self, start: Timespec, dropped: &[(usize, Vec<u8>)]) -> Vec<u8> {
        let dropped: HashSet<(usize, &[u8])> =
            dropped.iter().map(|(i, n)| (*i, n.as_slice())).collect();
        let mut enc = Encoder::new(start);
        for (i, d) in self.dirs.iter().enumerate() {
            if !d.listed {
                continue;
            }
            let head = DirRecord {
                nfs: is_nfs(d.dev),
                mtime: Timespec { sec: d.meta.mtime(), nsec: d.meta.mtime_nsec() as u32 },
                dev: d.dev,
                ino: d.meta.ino(),
                name: d.name.clone(),
                entries: None,
            };
            let entries = d.dumpdir.entries.iter();
            enc.dir(&head, entries.filter(|(_, n)| !dropped.contains(&(i, *n))));
        }
        enc.finish()
    }
}

// GNU tar's test on systems without st_fstype: NFS device numbers have the top bit set.
fn is_nfs(dev: u64) -> bool {
    dev & (1 << 63) != 0
}

/// What the scan decided for one entry of a directory.
struct Decided {
    flag: Flag,
    regular: bool,
    /// A subdirectory to scan next: its archive name, path, status and what to dump under it.
    sub: Option<(Vec<u8>, PathBuf, Metadata, Children)>,
}

impl Decided {
    fn kept() -> Decided {
        Decided { flag: Flag::Kept, regular: false, sub: None }
    }
}

/// A directory known to this run, from the old snapshot or found now (GNU's `struct directory`).
struct Rec {
    /// Current name; rewritten when an ancestor turns out to be renamed.
    name: Vec<u8>,
    dev: u64,
    ino: u64,
    nfs: bool,
    old_entries: Option<Entries>,
    inited: bool,
    orig: Option<usize>,
    renamed: bool,
}

struct Scanner<'a> {
    opts: &'a ScanOptions,
    newer: Timespec,
    recs: Vec<Rec>,
    by_name: HashMap<Vec<u8>, usize>,
    by_meta: HashMap<(u64, u64), usize>,
    rename_order: Vec<usize>,
    dirs: Vec<Dir>,
    stats: ScanStats,
    warnings: Vec<Warning>,
}

/// Scan the tree at `root` (archived as `.`) against `old` (the parent level's snapshot).
pub fn scan(root: &Path, old: Option<Snapshot>, opts: &ScanOptions) -> io::Result<Plan> {
    let mut s = Scanner {
        opts,
        newer: old.as_ref().map(|o| o.start).unwrap_or_default(),
        recs: Vec::new(),
        by_name: HashMap::new(),
        by_meta: HashMap::new(),
        rename_order: Vec::new(),
        dirs: Vec::new(),
        stats: ScanStats::default(),
        warnings: Vec::new(),
    };
    // Moved, not copied: the old entries of a million files are the scan's largest input.
    for d in old.map(|o| o.dirs).unwrap_or_default() {
        let i = s.recs.len();
        s.by_name.entry(d.name.clone()).or_insert(i);
        s.by_meta.entry((d.dev, d.ino)).or_insert(i);
        s.recs.push(Rec {
            name: d.name,
            dev: d.dev,
            ino: d.ino,
            nfs: d.nfs,
            old_entries: d.entries,
            inited: false,
            orig: None,
            renamed: false,
        });
    }
    let meta = fs::metadata(root)?;
    if !meta.is_dir() {
        // A single file is archived by its base name, as freezer-agent does (`cd dirname; tar
        // file`); GNU tar dumps command-line files at every level.
        let name = root.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
        let stats = ScanStats { files_changed: 1, ..Default::default() };
        return Ok(Plan {
            dirs: Vec::new(),
            files: vec![(name, root.to_path_buf())],
            stats,
            warnings: Vec::new(),
            one_file_system: false,
        });
    }
    let (rec, _) = s.procdir(b".", &meta, None, false);
    let mut children = Children::All;
    if let Some(r) = rec {
        children = r;
    }
    s.scan_dir(b".".to_vec(), root.to_path_buf(), meta, children);
    let renames = s.renames();
    if let Some(top) = s.dirs.first_mut() {
        top.dumpdir.renames = renames;
    }
    s.dirs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Plan {
        dirs: s.dirs,
        files: Vec::new(),
        stats: s.stats,
        warnings: s.warnings,
        one_file_system: opts.one_file_system,
    })
}

impl Scanner<'_> {
    /// GNU `procdir`: match a directory with its record; returns what to dump under it, or
    /// `None` when the parent must list it as `N` (already seen in this run).
    fn procdir(
        &mut self,
        name: &[u8],
        meta: &Metadata,
        parent_dev: Option<u64>,
        force_all: bool,
    ) -> (Option<Children>, usize) {
        let dev = self.dev(meta);
        let (ino, nfs) = (meta.ino(), is_nfs(dev));
        let mut children;
        let i = match self.by_name.get(name).copied() {
            Some(i) => {
                if self.recs[i].inited || self.recs[i].name != name {
                    return (None, i);
                }
                let r = &self.recs[i];
                let same_dev = !self.opts.check_device || (r.nfs && nfs) || r.dev == dev;
                if same_dev && r.ino == ino {
                    children = Children::Changed;
                } else {
                    match self.renamed_from(meta).filter(|&d| d != i) {
                        Some(d) => {
                            self.note_rename(i, d, name);
                            children = Children::Changed;
                        }
                        None => {
                            children = Children::All;
                            self.recs[i].dev = dev;
                            self.recs[i].ino = ino;
                        }
                    }
                    self.recs[i].nfs |= nfs;
                }
                i
            }
            None => {
                let found = self.renamed_from(meta);
                let i = self.recs.len();
                self.recs.push(Rec {
                    name: name.to_vec(),
                    dev,
                    ino,
                    nfs,
                    old_entries: None,
                    inited: false,
                    orig: None,
                    renamed: false,
                });
                self.by_name.insert(name.to_vec(), i);
                self.by_meta.entry((dev, ino)).or_insert(i);
                match found {
                    Some(d) => {
                        self.note_rename(i, d, name);
                        children = Children::Changed;
                    }
                    None => children = Children::All,
                }
                i
            }
        };
        if self.opts.one_file_system && parent_dev.is_some_and(|p| p != meta.dev()) {
            self.warnings.push(Warning {
                path: PathBuf::from(OsStr::from_bytes(name)),
                message: "directory is on a different file system; not dumped".into(),
            });
            children = Children::None;
        } else if force_all {
            children = Children::All;
        }
        self.recs[i].inited = true;
        (Some(children), i)
    }

    /// The old directory this one may have been renamed from: the record with its (dev, ino).
    /// GNU tar stops there; we also require that the directory existed before the previous
    /// dump started (its birth time, where the file system records one), because a new
    /// directory often reuses the inode number of one deleted since, and a false rename can
    /// make the restore move a directory under a path that is not a directory there.
    fn renamed_from(&self, meta: &Metadata) -> Option<usize> {
        let d = self.by_meta.get(&(self.dev(meta), meta.ino())).copied()?;
        let born = meta.created().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        match born {
            Some(b)
                if Timespec { sec: b.as_secs() as i64, nsec: b.subsec_nanos() } >= self.newer =>
            {
                None
            }
            _ => Some(d),
        }
    }

    /// Directory `i` (now called `name`) is the old directory `d` renamed.
    fn note_rename(&mut self, i: usize, d: usize, name: &[u8]) {
        if self.recs[d].name == name {
            return;
        }
        self.recs[i].orig = Some(d);
        self.recs[i].renamed = true;
        self.recs[d].renamed = false;
        self.rename_order.push(i);
        // Old subdirectories of `d` now live under `name`: found there, they are not renames.
        let mut prefix = self.recs[d].name.clone();
        prefix.push(b'/');
        for r in &mut self.recs {
            if r.name.len() > prefix.len() && r.name.starts_with(&prefix) {
                let mut new = name.to_vec();
                new.extend_from_slice(&r.name[prefix.len() - 1..]);
                r.name = new;
            }
        }
    }

    /// GNU `scan_directory` + `makedumpdir`, then the same for each subdirectory.
    fn scan_dir(&mut self, name: Vec<u8>, path: PathBuf, meta: Metadata, children: Children) {
        let rec = self.by_name.get(&name).copied();
        let old: Option<&Entries> = match (children, rec) {
            (Children::All, _) | (_, None) => None,
            (_, Some(i)) => match self.recs[i].orig {
                Some(o) => self.recs[o].old_entries.as_ref(),
                None => self.recs[i].old_entries.as_ref(),
            },
        };
        let old = old.cloned();
        self.stats.dirs += 1;
        let mut entries = Entries::default();
        let mut regular = Vec::new();
        let mut subdirs = Vec::new();
        let mut listed = true;
        if children != Children::None {
            match list::list_dir(&path) {
                Ok(listing) => {
                    for entry in &listing {
                        let known = old.as_ref().is_some_and(|o| o.lookup(&entry.name).is_some());
                        let Some(d) = self.classify(&name, &path, &meta, entry, known, children)
                        else {
                            continue;
                        };
                        if let Some(sub) = d.sub {
                            subdirs.push(sub);
                        }
                        entries.push(d.flag, &entry.name);
                        regular.push(d.regular);
                    }
                }
                Err(e) => {
                    listed = false;
                    self.warnings.push(Warning {
                        path: path.clone(),
                        message: format!(
                            "cannot list directory, its contents are kept as they were: {e}"
                        ),
                    });
                    // Keep what earlier levels restored here: list the old entries as unchanged.
                    entries = old
                        .iter()
                        .flat_map(|o| o.iter())
                        .map(|(f, n)| (if f == Flag::Dir { Flag::Dir } else { Flag::Kept }, n))
                        .collect();
                }
            }
        }
        self.dirs.push(Dir {
            name: name.clone(),
            path,
            dev: self.dev(&meta),
            meta,
            children,
            dumpdir: Dumpdir { entries, renames: Vec::new() },
            regular,
            listed,
        });
        for (sub_name, sub_path, sub_meta, sub_children) in subdirs {
            self.scan_dir(sub_name, sub_path, sub_meta, sub_children);
        }
    }

    /// Decide one entry of directory `dir`; `None` drops the entry (vanished).
    fn classify(
        &mut self,
        dir: &[u8],
        dir_path: &Path,
        dir_meta: &Metadata,
        entry: &list::Listed,
        known: bool,
        children: Children,
    ) -> Option<Decided> {
        let mut full = dir.to_vec();
        full.push(b'/');
        full.extend_from_slice(&entry.name);
        if self.opts.excludes.is_excluded(&full) {
            self.stats.excluded += 1;
            return Some(Decided::kept());
        }
        crate::progress::add_files(1);
        // A new entry that is not a directory is dumped whatever its status says: the dump
        // takes that from the open file (and GNU tar's one-file-system test with it), which
        // saves a status call per file of a level 0.
        let follow = self.opts.follow_symlinks;
        let new_file =
            entry.file_type().filter(|t| !(known || t.is_dir() || t.is_symlink() && follow));
        if let Some(t) = new_file {
            self.stats.files_new += 1;
            return Some(Decided { flag: Flag::Dumped, regular: t.is_file(), sub: None });
        }
        let path = || dir_path.join(OsStr::from_bytes(&entry.name));
        let meta = match entry.stat(self.opts.follow_symlinks, path) {
            Ok(m) => m,
            Err(e) => {
                let path = path();
                // GNU tar lists it as `N`; it is gone, so we leave it out of the dumpdir.
                if e.kind() != io::ErrorKind::NotFound {
                    self.warnings.push(Warning { path, message: format!("cannot stat: {e}") });
                    return Some(Decided::kept());
                }
                self.warnings
                    .push(Warning { path, message: "file removed before we read it".into() });
                return None;
            }
        };
        if meta.is_dir() {
            if self.opts.follow_symlinks && self.is_ancestor(&meta) {
                let path = path();
                self.warnings
                    .push(Warning { path, message: "symbolic link loop; not dumped".into() });
                return Some(Decided::kept());
            }
            let force_all = children == Children::All;
            let (sub, _) = self.procdir(&full, &meta, Some(dir_meta.dev()), force_all);
            return Some(match sub {
                Some(c) => {
                    Decided { flag: Flag::Dir, regular: false, sub: Some((full, path(), meta, c)) }
                }
                None => Decided::kept(),
            });
        }
        if self.opts.one_file_system && meta.dev() != dir_meta.dev() {
            return Some(Decided::kept());
        }
        let older = |sec: i64, nsec: i64| Timespec { sec, nsec: nsec as u32 } < self.newer;
        let flag = if !known {
            self.stats.files_new += 1;
            Flag::Dumped
        } else if older(meta.mtime(), meta.mtime_nsec()) && older(meta.ctime(), meta.ctime_nsec()) {
            self.stats.files_unchanged += 1;
            Flag::Kept
        } else {
            self.stats.files_changed += 1;
            Flag::Dumped
        };
        Some(Decided { flag, regular: meta.is_file(), sub: None })
    }

    /// The device number to record for `meta`.
    fn dev(&self, meta: &Metadata) -> u64 {
        match self.opts.dev_alias {
            Some((read, recorded)) if meta.dev() == read => recorded,
            _ => meta.dev(),
        }
    }

    fn is_ancestor(&self, meta: &Metadata) -> bool {
        self.dirs.iter().any(|d| d.meta.dev() == meta.dev() && d.meta.ino() == meta.ino())
    }

    /// GNU `append_incremental_renames` / `store_rename`: encode each chain of renames, breaking
    /// cycles through a temporary directory.
    fn renames(&self) -> Vec<Rename> {
        let chains: Vec<Vec<Rename>> =
            self.rename_order.iter().map(|&d| self.rename_chain(d)).collect();
        order_chains(chains).into_iter().flatten().collect()
    }

    fn rename_chain(&self, dir: usize) -> Vec<Rename> {
        let mut out = Vec::new();
        if !self.recs[dir].renamed {
            return out;
        }
        let mv = |from: usize, to: usize| Rename::Move {
            from: self.recs[from].name.clone(),
            to: self.recs[to].name.clone(),
        };
        // Find a cycle: `prev` ends as the directory `dir` was renamed from, if any.
        let mut prev = Some(dir);
        let mut steps = 0;
        while let Some(p) = prev {
            if self.recs[p].orig == Some(dir) || steps > self.recs.len() {
                break;
            }
            prev = self.recs[p].orig;
            steps += 1;
        }
        match prev {
            None => {
                let mut p = dir;
                while let Some(o) = self.recs[p].orig {
                    out.push(mv(o, p));
                    p = o;
                }
            }
            Some(prev) => {
                let name = &self.recs[dir].name;
                let parent = match name.iter().rposition(|&b| b == b'/') {
                    Some(i) => name[..i].to_vec(),
                    None => b".".to_vec(),
                };
                out.push(Rename::Temp(parent));
                out.push(Rename::Move { from: name.clone(), to: Vec::new() });
                let mut p = dir;
                while p != prev {
                    let Some(o) = self.recs[p].orig else { break };
                    out.push(mv(o, p));
                    p = o;
                }
                out.push(Rename::Move { from: Vec::new(), to: self.recs[prev].name.clone() });
            }
        }
        out
    }
}

/// Names are written as they are after every rename of this level, so a chain that moves a
/// directory under a renamed ancestor must come after the ancestor's chain (GNU tar writes them
/// in table order and can fail the restore of such a level).
fn order_chains(mut chains: Vec<Vec<Rename>>) -> Vec<Vec<Rename>> {
    let targets = |c: &Vec<Rename>| -> Vec<Vec<u8>> {
        c.iter()
            .filter_map(|r| match r {
                Rename::Move { to, .. } if !to.is_empty() => Some(to.clone()),
                _ => None,
            })
            .collect()
    };
    let under = |path: &[u8], dir: &[u8]| {
        path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
    };
    let needs = |c: &Vec<Rename>, t: &[u8]| {
        c.iter().any(|r| matches!(r, Rename::Move { from, .. } if under(from, t)))
    };
    let mut out = Vec::with_capacity(chains.len());
    while !chains.is_empty() {
        // The first chain that no remaining chain must precede; in a cycle, just the first.
        let ready = (0..chains.len())
            .find(|&i| {
                !chains
                    .iter()
                    .enumerate()
                    .any(|(j, other)| j != i && targets(other).iter().any(|t| needs(&chains[i], t)))
            })
            .unwrap_or(0);
        out.push(chains.remove(ready));
    }
    out
}

mod list;
#[cfg(test)]
mod tests;
