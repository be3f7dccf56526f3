//! What holds the source still while a backup reads it: hooks (`--pre-exec`/`--post-exec`),
//! then a point-in-time snapshot (LVM or btrfs) that the backup reads instead of the origin.
//!
//! The order, released on every path (success, error, SIGTERM — interrupts arrive as errors):
//! pre-exec → sync → database mode prepared ([`crate::mode`]) → snapshot → mode released →
//! post-exec → scan and store → snapshot removed. Without a snapshot, the mode is released and
//! post-exec runs after the backup. The archive's names are relative to the path to
//! back up either way, so a restore never needs to know a snapshot was used.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::catalog::DatabaseMeta;
use crate::error::{Error, Result};
use crate::mode::{self, ModeOptions, Quiesced};

mod btrfs;
mod hook;
mod lvm;
mod mounts;
mod tool;

pub use hook::exec;
pub use lvm::LvmOptions;

/// Which snapshot to take of the file system holding the path to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOptions {
    /// An LVM snapshot of the logical volume, mounted (freezer-agent's `--snapshot`).
    Lvm(LvmOptions),
    /// A read-only btrfs snapshot of the subvolume.
    Btrfs,
}

/// How to hold the source still.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreezeOptions {
    /// Read from a snapshot instead of the live tree.
    pub snapshot: Option<SnapshotOptions>,
    /// A shell command run first; its failure aborts the backup before anything is stored.
    pub pre_exec: Option<String>,
    /// A shell command run as soon as the snapshot exists (without one: after the backup),
    /// always, even when the backup failed.
    pub post_exec: Option<String>,
    /// `sync(2)` before the snapshot (or the scan), so the origin's writes are on disk.
    pub sync: bool,
    /// The database to hold still while the snapshot is created (`--mode`).
    pub mode: ModeOptions,
}

/// A point-in-time copy of the file system that holds the path to back up.
trait PointInTime {
    /// Where the path to back up is read in the copy.
    fn read_path(&self) -> &Path;
    /// A name inside the path to back up that the copy itself put there (left out).
    fn own_entry(&self) -> Option<&Path> {
        None
    }
    /// Fails when the copy is no longer a point in time (an LVM snapshot that filled up).
    fn check(&self) -> Result<()>;
    /// Remove the copy; on failure the error says what is left and how to remove it.
    fn remove(&mut self) -> Result<()>;
}

/// The source of one backup, held still until [`Held::release`] (or drop).
pub(crate) struct Held {
    path: PathBuf,
    snapshot: Option<Box<dyn PointInTime>>,
    /// The database held still, until the snapshot exists (without one: the backup's end);
    /// kept after its release for what it recorded.
    db: Option<Box<dyn Quiesced>>,
    /// `(snapshot's device, origin's device)`: the scan records the origin's.
    dev_alias: Option<(u64, u64)>,
    /// The post-exec hook still to run.
    post: Option<String>,
    /// What failed around the backup so far (a post-exec hook), reported by `release`.
    problems: Vec<Error>,
    released: bool,
}

/// Run the pre-exec hook, sync, take the snapshot, run the post-exec hook if there is one.
/// On failure everything done so far is undone (the post-exec hook still runs).
pub(crate) fn hold(opts: &FreezeOptions, path: &Path, dry_run: bool) -> Result<Held> {
    let mut held = Held {
        path: path.to_path_buf(),
        snapshot: None,
        db: None,
        dev_alias: None,
        post: opts.post_exec.clone(),
        problems: Vec::new(),
        released: false,
    };
    if let Some(cmd) = &opts.pre_exec {
        hook::run("pre-exec", cmd, path, None)
            .map_err(|e| e.context("the backup did not start: nothing was stored"))?;
    }
    // As freezer-agent: sync before the lock, which is then held only for the snapshot.
    if opts.sync && !dry_run {
        nix::unistd::sync();
    }
    held.db = mode::prepare(&opts.mode, opts.snapshot.is_some())?;
    if let Some(kind) = &opts.snapshot {
        crate::interrupt::check()?;
        let snap: Box<dyn PointInTime> = match kind {
            SnapshotOptions::Lvm(o) => Box::new(lvm::Lvm::create(o, path)?),
            SnapshotOptions::Btrfs => Box::new(btrfs::Btrfs::create(path)?),
        };
        held.dev_alias = dev_alias(path, snap.read_path());
        held.snapshot = Some(snap);
        // The lock is held only while the snapshot is created.
        if let Some(e) = held.release_db() {
            held.problems.push(e);
        }
        // The application may go on as soon as the snapshot exists; a failing post-exec
        // does not make the snapshot less consistent, so the backup goes on too.
        if let Err(e) = held.run_post() {
            held.problems.push(e);
        }
    }
    Ok(held)
}

impl Held {
    /// Where the backup reads the tree.
    pub fn read_root(&self) -> &Path {
        self.snapshot.as_ref().map_or(&self.path, |s| s.read_path())
    }

    /// See [`crate::incremental::scan::ScanOptions::dev_alias`].
    pub fn dev_alias(&self) -> Option<(u64, u64)> {
        self.dev_alias
    }

    /// A name relative to the path to back up that must be left out (the snapshot's own).
    pub fn own_entry(&self) -> Option<&Path> {
        self.snapshot.as_ref().and_then(|s| s.own_entry())
    }

    /// What the database mode recorded (`--mode mysql|mongo`), for the metadata.
    pub fn database(&self) -> Option<&DatabaseMeta> {
        self.db.as_ref().map(|d| d.recorded())
    }

    /// Before the backup becomes visible: is what it read still a point in time?
    pub fn check(&self) -> Result<()> {
        self.snapshot.as_ref().map_or(Ok(()), |s| s.check())
    }

    /// Undo everything; what failed doing so (the backup itself may be complete).
    pub fn release(mut self) -> Vec<Error> {
        self.release_all()
    }

    fn run_post(&mut self) -> Result<()> {
        let Some(cmd) = self.post.take() else { return Ok(()) };
        hook::run("post-exec", &cmd, &self.path, self.snapshot.as_ref().map(|s| s.read_path()))
    }

    fn release_db(&mut self) -> Option<Error> {
        self.db.as_mut().and_then(|d| d.release().err())
    }

    fn release_all(&mut self) -> Vec<Error> {
        if std::mem::replace(&mut self.released, true) {
            return Vec::new();
        }
        let _cleanup = crate::interrupt::shield();
        let mut problems = std::mem::take(&mut self.problems);
        problems.extend(self.release_db());
        if let Err(e) = self.run_post() {
            problems.push(e);
        }
        if let Some(mut s) = self.snapshot.take()
            && let Err(e) = s.remove()
        {
            problems.push(e);
        }
        problems
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for e in self.release_all() {
            log::error!("{e}");
        }
    }
}

/// `(the copy's device, the origin's)` when they differ.
fn dev_alias(origin: &Path, copy: &Path) -> Option<(u64, u64)> {
    let (o, c) = (std::fs::metadata(origin).ok()?, std::fs::metadata(copy).ok()?);
    (o.dev() != c.dev()).then_some((c.dev(), o.dev()))
}
