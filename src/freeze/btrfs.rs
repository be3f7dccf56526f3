//! A read-only btrfs snapshot of the subvolume holding the path to back up, kept in
//! `<subvolume>/.freezer-snapshots/` (a snapshot must live on the same file system) and
//! deleted after the backup.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{PointInTime, tool};
use crate::error::{Error, Result};

/// Where snapshots go, at the top of the subvolume.
const DIR: &str = ".freezer-snapshots";
/// The inode number of every btrfs subvolume's root directory.
const SUBVOLUME_ROOT_INO: u64 = 256;

pub(super) struct Btrfs {
    snapshot: PathBuf,
    read: PathBuf,
    own: Option<PathBuf>,
}

impl Btrfs {
    pub fn create(path: &Path) -> Result<Btrfs> {
        let path = path
            .canonicalize()
            .map_err(|e| Error::io(format!("cannot resolve {}", path.display()), e))?;
        check_btrfs(&path)?;
        let top = subvolume_of(&path)?;
        let dir = top.join(DIR);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .or_else(|e| if dir.is_dir() { Ok(()) } else { Err(e) })
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let snapshot = dir.join(super::lvm::unique_name());
        tool::run(
            "btrfs",
            [
                "subvolume".as_ref(),
                "snapshot".as_ref(),
                "-r".as_ref(),
                top.as_os_str(),
                snapshot.as_os_str(),
            ],
        )
        .map_err(|e| e.context("cannot take a btrfs snapshot"))?;
        log::info!("btrfs snapshot {} of {}", snapshot.display(), top.display());
        let rel = path.strip_prefix(&top).unwrap_or(Path::new(""));
        let own = dir.strip_prefix(&path).ok().map(Path::to_path_buf);
        Ok(Btrfs { read: snapshot.join(rel), snapshot, own })
    }
}

impl PointInTime for Btrfs {
    fn read_path(&self) -> &Path {
        &self.read
    }

    fn own_entry(&self) -> Option<&Path> {
        self.own.as_deref()
    }

    fn check(&self) -> Result<()> {
        // Copy-on-write: a btrfs snapshot cannot fill up, only the file system can, and
        // then writes to the origin fail, not reads from the snapshot.
        Ok(())
    }

    fn remove(&mut self) -> Result<()> {
        tool::run("btrfs", ["subvolume".as_ref(), "delete".as_ref(), self.snapshot.as_os_str()])
            .map_err(|e| {
                e.context(format!(
                    "the btrfs snapshot {0} is left; remove it with: btrfs subvolume delete {0}",
                    self.snapshot.display()
                ))
            })?;
        // Only when empty: another run's snapshot may be in it.
        if let Some(dir) = self.snapshot.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }
}

fn check_btrfs(path: &Path) -> Result<()> {
    use nix::sys::statfs::{BTRFS_SUPER_MAGIC, statfs};
    let fs = statfs(path)
        .map_err(|e| Error::io(format!("cannot statfs {}", path.display()), e.into()))?;
    if fs.filesystem_type() != BTRFS_SUPER_MAGIC {
        return Err(Error::usage(format!(
            "--snapshot-type btrfs: {} is not on a btrfs file system; use --snapshot-type lvm \
             for a path on an LVM logical volume",
            path.display()
        )));
    }
    Ok(())
}

/// The root of the subvolume holding `path`: its highest ancestor on the same device (each
/// subvolume has a device number of its own).
fn subvolume_of(path: &Path) -> Result<PathBuf> {
    let stat = |p: &Path| {
        std::fs::metadata(p).map_err(|e| Error::io(format!("cannot stat {}", p.display()), e))
    };
    let start = if stat(path)?.is_dir() { path } else { path.parent().unwrap_or(path) };
    let dev = stat(start)?.dev();
    let mut top = start;
    while let Some(up) = top.parent() {
        if stat(up)?.dev() != dev {
            break;
        }
        top = up;
    }
    if stat(top)?.ino() != SUBVOLUME_ROOT_INO {
        return Err(Error::usage(format!(
            "cannot find the btrfs subvolume holding {} (stopped at {}, which is not a \
             subvolume's root)",
            path.display(),
            top.display()
        )));
    }
    Ok(top.to_path_buf())
}
