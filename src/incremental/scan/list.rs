//! Listing one directory for the scan: names sorted bytewise (as GNU tar sorts dumpdirs), each
//! with its `DirEntry`, whose type comes from the directory itself and whose status is taken
//! relative to the directory's descriptor, so an entry never costs a walk of its whole path.

use std::fs::{self, DirEntry, FileType, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One entry of a listed directory.
pub(super) struct Listed {
    pub name: Vec<u8>,
    entry: DirEntry,
}

impl Listed {
    /// The entry's status; `follow` follows a symbolic link (through its path, the rare case).
    pub fn stat(&self, follow: bool, path: impl FnOnce() -> PathBuf) -> io::Result<Metadata> {
        let meta = self.entry.metadata()?;
        if follow && meta.file_type().is_symlink() { fs::metadata(path()) } else { Ok(meta) }
    }

    /// The entry's type as the directory gives it (a status call where the file system does
    /// not); `None` if it vanished.
    pub fn file_type(&self) -> Option<FileType> {
        self.entry.file_type().ok()
    }
}

/// The entries of the directory at `path`, sorted by name.
pub(super) fn list_dir(path: &Path) -> io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        out.push(Listed { name: entry.file_name().as_bytes().to_vec(), entry });
    }
    out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
