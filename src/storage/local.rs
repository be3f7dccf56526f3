//! Local directory storage: the `--container` directory holds the keys as files.
//!
//! Unlike freezer-agent (which writes `data` in place, without fsync), every object is written
//! under a temporary name in its final directory, fsynced, renamed into place and the directory
//! fsynced, so a crash leaves either the whole object or nothing under its key. Temporary names
//! (`.<name>.tmp-<pid>-<n>`) are never listed, so a half-written backup stays invisible.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::storage::{SegmentRef, Storage, StorageWrite, Upload};

/// A container that is a directory on a local (or mounted) file system.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// Storage rooted at `root`. The directory is created by the first write, not here, so
    /// that listing or restoring from a mistyped path does not leave an empty directory behind.
    pub fn new(root: &Path) -> Result<LocalStorage> {
        if root.as_os_str().is_empty() {
            return Err(Error::usage("the container directory is empty; give a directory path"));
        }
        Ok(LocalStorage { root: root.to_path_buf() })
    }

    /// The directory this storage lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file system path of `key`, after checking the key cannot leave the root.
    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// The path of a "directory" key; the empty prefix is the root itself.
    fn dir_path(&self, prefix: &str) -> Result<PathBuf> {
        if prefix.is_empty() { Ok(self.root.clone()) } else { self.path(prefix) }
    }
}

/// Keys are relative `/`-separated paths with no empty, `.` or `..` component.
pub(crate) fn check_key(key: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::storage(format!("invalid storage key {key:?}: {why} (this is a bug in freezer)"))
    };
    if key.is_empty() {
        return Err(bad("it is empty"));
    }
    if key.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    for part in key.split('/') {
        match part {
            "" => return Err(bad("it has an empty component or is absolute")),
            "." | ".." => return Err(bad("it has a '.' or '..' component")),
            _ if is_temp_name(part) => return Err(bad("it uses a temporary file name")),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `name` is one of our temporary names (`.<name>.tmp-<pid>-<n>`).
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// A fresh temporary path next to `path`; unique per process, call and clock tick.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let temp = format!(".{name}.tmp-{}-{n}{nanos:09}", std::process::id());
    path.with_file_name(temp)
}

/// The directory holding `path`, created if missing.
fn make_parent(path: &Path) -> Result<&Path> {
    let parent = path.parent().ok_or_else(|| {
        Error::storage(format!("storage path {} has no parent directory", path.display()))
    })?;
    fs::create_dir_all(parent)
        .map_err(|e| Error::io(format!("cannot create directory {}", parent.display()), e))?;
    Ok(parent)
}

/// Flush a directory entry change (create, rename) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot fsync directory {}", dir.display()), e))
}

/// Create a new temporary file next to `path`.
fn create_temp(path: &Path) -> Result<(File, PathBuf)> {
    let temp = temp_path(path);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| Error::io(format!("cannot create {}", temp.display()), e))?;
    Ok((file, temp))
}

/// fsync `file`, rename `temp` to `path`, fsync the directory.
fn finish(file: File, temp: &Path, path: &Path) -> Result<()> {
    file.sync_all().map_err(|e| Error::io(format!("cannot fsync {}", temp.display()), e))?;
    drop(file);
    fs::rename(temp, path).map_err(|e| {
        Error::io(format!("cannot rename {} to {}", temp.display(), path.display()), e)
    })?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Not there: the path or one of its parents is missing (or a parent is a file).
fn absent(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// Reads a file from an offset with `pread`, so several segments can be read at once.
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Whether `dir` holds a file (not a temporary one) at any depth; the way an object store sees
/// a "directory": empty directories left by a failed backup do not count.
fn has_file(dir: &Path) -> io::Result<bool> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(is_temp_name) {
            continue;
        }
        let kind = entry.file_type()?;
        if !kind.is_dir() || has_file(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Storage for LocalStorage {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.dir_path(prefix)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("cannot list {}", dir.display()), e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
            match entry.file_name().into_string() {
                Ok(name) if is_temp_name(&name) => {}
                Ok(name) => names.push(name),
                Err(name) => log::warn!(
                    "skipping {}: the name is not UTF-8, so it cannot be a freezer key",
                    dir.join(name).display()
                ),
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        let fail = |e| Error::io(format!("cannot check {}", path.display()), e);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => has_file(&path).map_err(fail),
            Ok(_) => Ok(true),
            Err(e) if absent(&e) => Ok(false),
            Err(e) => Err(fail(e)),
        }
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
        }
    }

    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        let fail = |e| Error::io(format!("cannot read {}", path.display()), e);
        let file = File::open(&path).map_err(fail)?;
        let mut data = Vec::new();
        let want = usize::try_from(segment.size).map_err(|_| {
            Error::corrupt(format!("segment {} of {key} is too large", segment.index))
        })?;
        data.try_reserve_exact(want).map_err(|_| {
            Error::storage(format!("no memory for a {want}-byte segment of {}", path.display()))
        })?;
        let mut reader = ReadAt { file: &file, at: segment.offset }.take(segment.size);
        reader.read_to_end(&mut data).map_err(fail)?;
        Ok(data)
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.path(key)?;
        let file = File::open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        Ok(Box::new(file))
    }

    fn container_exists(&self) -> Result<bool> {
        Ok(self.root.is_dir())
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(Error::io(format!("cannot stat {}", path.display()), e)),
        }
    }
}

impl StorageWrite for LocalStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        make_parent(&path)?;
        let (mut file, temp) = create_temp(&path)?;
        let written = file
            .write_all(data)
            .map_err(|e| Error::io(format!("cannot write {}", temp.display()), e))
            .and_then(|()| finish(file, &temp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        let path = self.path(key)?;
        make_parent(&path)?;
        let (file, temp) = create_temp(&path)?;
        Ok(Box::new(LocalUpload { file: Some(file), temp, path, next: 0 }))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        let fail = |e| Error::io(format!("cannot delete {}", path.display()), e);
        // symlink_metadata: a symlink is removed itself, never followed.
        let removed = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => Ok(()),
            Err(e) if absent(&e) => Ok(()),
            Err(e) => Err(fail(e)),
        }
    }

    /// Atomic: the object is written whole under a temporary name, then hard-linked to its
    /// key, which fails if the key exists (`link(2)` is atomic, also on NFS, unlike O_EXCL on
    /// old NFS); readers never see it half written.
    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        let path = self.path(key)?;
        let dir = make_parent(&path)?.to_path_buf();
        let (mut file, temp) = create_temp(&path)?;
        let created = file
            .write_all(data)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(format!("cannot write {}", temp.display()), e))
            .and_then(|()| match fs::hard_link(&temp, &path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(Error::io(
                    format!(
                        "cannot create {} (by a hard link from {}; the file system must \
                         support hard links)",
                        path.display(),
                        temp.display()
                    ),
                    e,
                )),
            });
        drop(file);
        let _ = fs::remove_file(&temp);
        if created? {
            sync_dir(&dir)?;
            return Ok(true);
        }
        Ok(false)
    }
}

/// A data object being appended to a temporary file next to its key.
struct LocalUpload {
    /// `None` once committed or aborted, so `Drop` knows there is nothing to clean.
    file: Option<File>,
    temp: PathBuf,
    path: PathBuf,
    next: u64,
}

impl LocalUpload {
    /// Append to the temporary file; `index` must be `next`, or `next - 1` when `part_of_open`.
    fn append(&mut self, index: u64, data: &[u8], part_of_open: bool) -> Result<()> {
        if index != self.next && !(part_of_open && index + 1 == self.next) {
            return Err(Error::storage(format!(
                "segment {index} of {} arrived out of order (expected {}; this is a bug in freezer)",
                self.path.display(),
                self.next
            )));
        }
        let file = self.file.as_mut().ok_or_else(|| {
            Error::storage(format!("upload of {} is already finished", self.path.display()))
        })?;
        file.write_all(data)
            .map_err(|e| Error::io(format!("cannot write {}", self.temp.display()), e))?;
        self.next = index + 1;
        Ok(())
    }
}

impl Upload for LocalUpload {
    fn put_segment(&mut self, index: u64, mut data: Vec<u8>) -> Result<Vec<u8>> {
        self.append(index, &data, false)?;
        data.clear();
        Ok(data)
    }

    fn streams(&self) -> bool {
        true
    }

    /// Parts of the segment begun last, or the first part of the next one.
    fn put_part(&mut self, index: u64, data: &[u8]) -> Result<()> {
        self.append(index, data, true)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        let file = self.file.take().ok_or_else(|| {
            Error::storage(format!("upload of {} is already finished", self.path.display()))
        })?;
        let done = finish(file, &self.temp, &self.path);
        if done.is_err() {
            let _ = fs::remove_file(&self.temp);
        }
        done
    }

    fn abort(mut self: Box<Self>) -> Result<()> {
        drop(self.file.take());
        match fs::remove_file(&self.temp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("cannot remove {}", self.temp.display()), e)),
        }
        // The backup's directory, if nothing else is in it (as on an object store, where a
        // "directory" is only its objects); another writer's file there keeps it.
        if let Some(dir) = self.path.parent() {
            let _ = fs::remove_dir(dir);
        }
        Ok(())
    }
}

impl Drop for LocalUpload {
    /// An upload dropped without commit or abort (a panic) still leaves no temp file: here
    /// that is one cheap unlink.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            log::warn!("an upload of {} was neither committed nor aborted", self.path.display());
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests;
