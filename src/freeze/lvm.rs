//! An LVM snapshot of the logical volume holding the path to back up, mounted read-only,
//! with freezer-agent's options (`--lvm-srcvol`, `--lvm-snapname`, …) and its defaults.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{PointInTime, mounts, tool};
use crate::error::{Error, ErrorKind, Result};

/// freezer-agent's `--lvm-*` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvmOptions {
    /// The logical volume (`/dev/vg/lv` or `vg/lv`); found from the path's mount when `None`.
    pub srcvol: Option<String>,
    /// Its volume group; only checked, the volume names its group.
    pub volgroup: Option<String>,
    /// The snapshot's name; default `freezer_backup_snap_<random>`.
    pub snapname: Option<String>,
    /// `lvcreate --size` (`1G`), or `--extents` when it holds a `%` (`20%ORIGIN`).
    pub snapsize: String,
    /// Create and mount it read-write (`--lvm-snap-perm rw`; XFS may need it for its log).
    pub read_write: bool,
    /// Where to mount it; default a new `/var/lib/freezer/mount_<random>`, removed after.
    pub dirmount: Option<PathBuf>,
}

impl Default for LvmOptions {
    fn default() -> LvmOptions {
        LvmOptions {
            srcvol: None,
            volgroup: None,
            snapname: None,
            snapsize: "1G".into(),
            read_write: false,
            dirmount: None,
        }
    }
}

pub(super) struct Lvm {
    /// `vg/name`.
    lv: String,
    mount: PathBuf,
    mounted: bool,
    created_dir: bool,
    /// The snapshot exists (not removed yet).
    live: bool,
    read: PathBuf,
}

struct Origin {
    vg: String,
    lv: String,
    mount: mounts::Mount,
}

impl Lvm {
    pub fn create(opts: &LvmOptions, path: &Path) -> Result<Lvm> {
        let path = path
            .canonicalize()
            .map_err(|e| Error::io(format!("cannot resolve {}", path.display()), e))?;
        let origin = origin(opts, &path)?;
        let name = opts.snapname.clone().unwrap_or_else(unique_name);
        let lv = format!("{}/{name}", origin.vg);
        let size = if opts.snapsize.contains('%') { "--extents" } else { "--size" };
        let perm = if opts.read_write { "rw" } else { "r" };
        let source = format!("{}/{}", origin.vg, origin.lv);
        tool::run(
            "lvcreate",
            [
                "--yes",
                "--snapshot",
                size,
                &opts.snapsize,
                "--permission",
                perm,
                "--name",
                &name,
                &source,
            ],
        )
        .map_err(|e| e.context(format!("cannot create the LVM snapshot {lv} of {source}")))?;
        log::info!("LVM snapshot {lv} of {source} ({} {})", size, opts.snapsize);
        let mut snap = Lvm {
            lv,
            mount: PathBuf::new(),
            mounted: false,
            created_dir: false,
            live: true,
            read: PathBuf::new(),
        };
        // From here on, dropping `snap` on an error removes what exists.
        snap.mount_it(opts, &origin.mount)?;
        snap.read = snap.mount.join(origin.mount.inside(&path));
        Ok(snap)
    }

    fn mount_it(&mut self, opts: &LvmOptions, origin: &mounts::Mount) -> Result<()> {
        let dir = opts.dirmount.clone().unwrap_or_else(|| {
            PathBuf::from("/var/lib/freezer").join(format!("mount_{}", random_hex()))
        });
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| {
                Error::io(format!("cannot create --lvm-dirmount {}", dir.display()), e)
            })?;
            self.created_dir = true;
        }
        self.mount = dir;
        let mut options = vec![if opts.read_write { "rw" } else { "ro" }];
        if origin.fstype == "xfs" {
            // The snapshot has the origin's UUID; its log is replayed by nobody (read-only).
            options.extend(["nouuid", "norecovery"]);
        }
        let dev = format!("/dev/{}", self.lv);
        tool::run(
            "mount",
            ["-t", &origin.fstype, "-o", &options.join(","), &dev, &self.mount.to_string_lossy()],
        )
        .map_err(|e| e.context(format!("cannot mount the LVM snapshot {}", self.lv)))?;
        self.mounted = true;
        Ok(())
    }
}

impl PointInTime for Lvm {
    fn read_path(&self) -> &Path {
        &self.read
    }

    fn check(&self) -> Result<()> {
        let out = tool::run(
            "lvs",
            ["--noheadings", "--separator", "|", "-o", "lv_attr,snap_percent", &self.lv],
        )?;
        let (attr, percent) = out.trim().split_once('|').unwrap_or((out.trim(), ""));
        let full = percent.trim().parse::<f64>().is_ok_and(|p| p >= 100.0);
        if attr.chars().nth(4) == Some('I') || full {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "the LVM snapshot {} filled up during the backup, so what was read is not a \
                     point in time; nothing was stored. Give a larger --lvm-snapsize (it must \
                     hold every block the origin changes while the backup runs)",
                    self.lv
                ),
            ));
        }
        Ok(())
    }

    fn remove(&mut self) -> Result<()> {
        // One attempt (with retries) only: what is left is then reported, not retried on drop.
        self.live = false;
        let mount = self.mount.to_string_lossy().into_owned();
        if self.mounted {
            retry(|| tool::run("umount", [&mount])).map_err(|e| {
                e.context(format!(
                    "the LVM snapshot {0} is left, mounted at {mount}; remove it with: umount \
                     {mount} && lvremove -f {0}",
                    self.lv
                ))
            })?;
            self.mounted = false;
        }
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.mount);
            self.created_dir = false;
        }
        retry(|| tool::run("lvremove", ["-f", &self.lv])).map_err(|e| {
            e.context(format!(
                "the LVM snapshot {0} is left; remove it with: lvremove -f {0}",
                self.lv
            ))
        })?;
        log::info!("LVM snapshot {} removed", self.lv);
        Ok(())
    }
}

impl Drop for Lvm {
    fn drop(&mut self) {
        // Only left live here when creating it failed half-way (mounting it).
        if self.live {
            let _cleanup = crate::interrupt::shield();
            if let Err(e) = self.remove() {
                log::error!("{e}");
            }
            self.live = false;
        }
    }
}

/// A busy device (a process still closing a file, udev probing it) is released within
/// seconds: try a few times before leaving it to the operator.
fn retry(mut f: impl FnMut() -> Result<String>) -> Result<String> {
    let mut last = None;
    for attempt in 0..8 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(250 << attempt.min(3)));
        }
        match f() {
            Ok(out) => return Ok(out),
            Err(e) => {
                log::debug!("{e}; retrying");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::new(ErrorKind::Io, "not attempted")))
}

/// The volume to snapshot: `--lvm-srcvol`, else the one mounted where `path` is, checked
/// against the mount either way (a snapshot of another volume would not hold the path).
fn origin(opts: &LvmOptions, path: &Path) -> Result<Origin> {
    let mount = mounts::mount_of(path)?;
    let mut args = vec![
        "--noheadings",
        "--separator",
        "|",
        "-o",
        "vg_name,lv_name,lv_kernel_major,lv_kernel_minor",
    ];
    if let Some(v) = &opts.srcvol {
        args.push(v);
    }
    let out = tool::run("lvs", &args).map_err(|e| match &opts.srcvol {
        Some(v) => Error::usage(format!(
            "--lvm-srcvol {v}: no such logical volume ({e}); give it as VG/LV or /dev/VG/LV, \
             as `lvs` lists them, or leave it out to use the volume holding {}",
            path.display()
        )),
        None => e.context("cannot list the LVM volumes"),
    })?;
    let dev = mount.dev;
    let found = out.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().split('|').collect();
        let kernel = (f.get(2)?.trim().parse().ok()?, f.get(3)?.trim().parse().ok()?);
        (kernel == dev).then(|| (f[0].trim().to_string(), f[1].trim().to_string()))
    });
    let Some((vg, lv)) = found else {
        return Err(Error::usage(match &opts.srcvol {
            Some(v) => format!(
                "--lvm-srcvol {v} is not the volume holding {}: that is {} ({}, mounted at {})",
                path.display(),
                mount.source,
                mount.fstype,
                mount.point.display()
            ),
            None => format!(
                "--snapshot: {} is on {} ({}, mounted at {}), which is not an LVM logical \
                 volume; back it up without --snapshot, or use --snapshot-type btrfs on btrfs",
                path.display(),
                mount.source,
                mount.fstype,
                mount.point.display()
            ),
        }));
    };
    if let Some(g) = opts.volgroup.as_ref().filter(|g| **g != vg) {
        return Err(Error::usage(format!(
            "--lvm-volgroup {g} does not match the volume holding {}: {vg}/{lv}",
            path.display()
        )));
    }
    Ok(Origin { vg, lv, mount })
}

/// freezer-agent's default snapshot name: `freezer_backup_snap_<32 hex digits>`.
pub(super) fn unique_name() -> String {
    format!("freezer_backup_snap_{}", random_hex())
}

fn random_hex() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        // Unique enough for a name that lives for one backup.
        let t =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        b[..8].copy_from_slice(&(t.as_nanos() as u64).to_le_bytes());
        b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(b)
}
