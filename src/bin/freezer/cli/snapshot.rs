//! Snapshot and hook options: freezer-agent's `--snapshot` and `--lvm-*`, plus
//! `--snapshot-type` and `--pre-exec`/`--post-exec`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// How the source is held still while it is read.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Snapshot")]
pub struct SnapshotFlags {
    /// Read the path from a point-in-time snapshot of its file system, removed afterwards
    /// (freezer-agent's `--snapshot VALUE` works too; False means off).
    #[arg(short = 's', long, overrides_with = "no_snapshot")]
    pub snapshot: bool,
    #[arg(long = "nosnapshot", hide = true, overrides_with = "snapshot")]
    pub no_snapshot: bool,

    /// lvm (default) or btrfs (a read-only subvolume snapshot); implies --snapshot.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub snapshot_type: Option<SnapshotType>,

    /// The logical volume to snapshot (/dev/VG/LV); default: the one mounted where the path is.
    #[arg(long, value_name = "DEVICE")]
    pub lvm_srcvol: Option<String>,

    /// Its volume group (checked against the volume's).
    #[arg(long, value_name = "VG")]
    pub lvm_volgroup: Option<String>,

    /// The snapshot's name. Default: freezer_backup_snap_<random>.
    #[arg(long, value_name = "NAME")]
    pub lvm_snapname: Option<String>,

    /// Space for blocks the origin changes during the backup (lvcreate --size); a value with
    /// % is in extents (lvcreate --extents, e.g. 20%ORIGIN).
    #[arg(long, value_name = "SIZE", default_value = "1G")]
    pub lvm_snapsize: String,

    /// ro (default) or rw.
    #[arg(long, value_enum, value_name = "PERM", default_value_t = SnapPerm::Ro)]
    pub lvm_snap_perm: SnapPerm,

    /// Where to mount the snapshot. Default: a new /var/lib/freezer/mount_<random>, removed
    /// afterwards.
    #[arg(long, value_name = "DIR")]
    pub lvm_dirmount: Option<PathBuf>,

    /// Shell command run before the backup (before the snapshot): e.g. freeze an application.
    /// If it fails, nothing is backed up.
    #[arg(long, value_name = "CMD")]
    pub pre_exec: Option<String>,

    /// Shell command run as soon as the snapshot exists (without --snapshot: after the
    /// backup), even when the backup failed: e.g. thaw the application. Its failure is
    /// reported (exit 3 when the backup succeeded).
    #[arg(long, value_name = "CMD")]
    pub post_exec: Option<String>,
}

/// What kind of snapshot.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotType {
    Lvm,
    Btrfs,
}

/// `--lvm-snap-perm`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SnapPerm {
    #[default]
    Ro,
    Rw,
}

impl SnapshotFlags {
    /// Whether a snapshot was asked for.
    pub fn wanted(&self) -> bool {
        !self.no_snapshot && (self.snapshot || self.snapshot_type.is_some())
    }

    /// The `--lvm-*` options given, which only make sense with an LVM snapshot.
    pub fn lvm_options_given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        for (set, name) in [
            (self.lvm_srcvol.is_some(), "--lvm-srcvol"),
            (self.lvm_volgroup.is_some(), "--lvm-volgroup"),
            (self.lvm_snapname.is_some(), "--lvm-snapname"),
            (self.lvm_dirmount.is_some(), "--lvm-dirmount"),
            (self.lvm_snap_perm != SnapPerm::Ro, "--lvm-snap-perm"),
            (self.lvm_snapsize != "1G", "--lvm-snapsize"),
        ] {
            if set {
                given.push(name);
            }
        }
        given
    }
}
