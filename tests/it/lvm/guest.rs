//! Run inside the LVM guest only (`lvm::guest_suite` boots it): each test makes a volume group
//! on the guest's scratch disk, /dev/vda, with a file system on a logical volume, and checks
//! that `lvs` and the mount table show no snapshot afterwards, whatever happened.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::btrfs::{assert_restores_the_instant, json, writer};
use crate::support::*;

const VG: &str = "vgfrz";

/// `VG/data` (320 MiB: XFS's minimum is 300) formatted with `fs`, mounted at `origin()`.
struct Vg {
    dir: tempfile::TempDir,
}

impl Vg {
    fn new(fs: &str) -> Vg {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("origin");
        std::fs::create_dir(&origin).unwrap();
        sh(&format!(
            "pvcreate -q -ff -y /dev/vda && vgcreate -q {VG} /dev/vda && \
             lvcreate -q -y -L 320M -n data {VG} && mkfs.{fs} -q /dev/{VG}/data && \
             mount /dev/{VG}/data {}",
            origin.display()
        ));
        Vg { dir }
    }

    fn origin(&self) -> PathBuf {
        self.dir.path().join("origin")
    }

    fn tmp(&self) -> &Path {
        self.dir.path()
    }

    /// Logical volumes besides the origin (and `other`, which a test may add).
    fn snapshots(&self) -> Vec<String> {
        let out = sh(&format!("lvs --noheadings -o lv_name {VG}"));
        out.split_whitespace()
            .filter(|n| !["data", "other"].contains(n))
            .map(String::from)
            .collect()
    }

    /// No snapshot, no snapshot mounted, no mount folder left in /var/lib/freezer.
    fn assert_clean(&self, after: &str) {
        assert_eq!(self.snapshots(), Vec::<String>::new(), "a snapshot is left after {after}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let left: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(&format!("/dev/mapper/{VG}-")))
            .filter(|l| !l.contains(&format!("/dev/mapper/{VG}-data ")))
            .collect();
        assert_eq!(left, Vec::<&str>::new(), "a snapshot is still mounted after {after}");
        let dirs = std::fs::read_dir("/var/lib/freezer").map(|d| d.count()).unwrap_or(0);
        assert_eq!(dirs, 0, "a mount folder is left in /var/lib/freezer after {after}");
    }
}

impl Drop for Vg {
    fn drop(&mut self) {
        let _ = sh_quiet(&format!(
            "umount {}; vgremove -q -y -f {VG}; pvremove -q -y -ff /dev/vda",
            self.origin().display()
        ));
    }
}

fn sh_quiet(cmd: &str) -> std::io::Result<Output> {
    Command::new("bash").arg("-c").arg(cmd).output()
}

fn backup(src: &Path, c: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["backup", src.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "b"];
    args.extend_from_slice(extra);
    args.extend(["--snapshot", "--json", "--compression", "none"]);
    freezer(args)
}

fn stored(c: &Path) -> String {
    sh(&format!("find {} -name metadata -type f 2>/dev/null || true", c.display()))
}

/// A writer changes the origin throughout a slow backup; the hooks record its position
/// before and after the snapshot; the restore holds one instant between the two.
fn snapshot_backup_restores_the_instant(fs: &str, options: &[&str], mount_dir: &str) {
    let vg = Vg::new(fs);
    let data = vg.origin();
    let (c, log) = (vg.tmp().join("c"), vg.tmp().join("hooks.log"));
    sample_tree(&data.join("tree"));
    write(&data.join("big"), (0..3_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    write(&data.join("w/last"), "");
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(data.clone(), Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(300));
    let hook = |which: &str| {
        format!(
            "echo {which} $(cat {}/w/last) \"$FREEZER_SNAPSHOT_PATH\" >> {}",
            data.display(),
            log.display()
        )
    };
    let (pre, post) = (hook("pre"), hook("post"));
    let mut extra = vec!["--pre-exec", &pre, "--post-exec", &post, "--upload-limit", "2M"];
    extra.extend_from_slice(options);
    let out = backup(&data, &c, &extra);
    stop.store(true, Ordering::Relaxed);
    let written = w.join().unwrap();
    assert_code(&out, 0);
    assert_eq!(json(&out)["path_to_backup"].as_str(), data.to_str(), "the origin is recorded");
    let log = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 2, "{log}");
    let (at_pre, at_post): (u64, u64) =
        (lines[0][1].parse().unwrap(), lines[1][1].parse().unwrap());
    assert!(lines[1][2].starts_with(mount_dir), "snapshot mounted in {mount_dir}: {log}");
    assert!(written > at_post + 20, "the writer went on during the backup: {written}, {at_post}");
    vg.assert_clean("a backup");

    assert_restores_the_instant(&c, &vg.tmp().join("r"), &data, at_pre..=at_post);
}

#[test]
#[ignore = "runs inside the LVM guest: lvm::guest_suite boots it"]
fn ext4_found_from_the_path_restores_the_instant_of_the_snapshot() {
    // Everything by default: the volume from the mount, 1G, mounted under /var/lib/freezer.
    snapshot_backup_restores_the_instant("ext4", &[], "/var/lib/freezer/mount_");
}

#[test]
#[ignore = "runs inside the LVM guest: lvm::guest_suite boots it"]
fn xfs_with_every_option_given_restores_the_instant_of_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("snap-mount");
    let m = mnt.to_str().unwrap();
    let opts = ["--lvm-srcvol", "/dev/vgfrz/data", "--lvm-volgroup", VG, "--lvm-dirmount", m];
    let opts = [&opts[..], &["--lvm-snapname", "frz_xfs", "--lvm-snapsize", "25%ORIGIN"]].concat();
    snapshot_backup_restores_the_instant("xfs", &opts, m);
    assert!(!mnt.exists(), "the mount folder it made is removed");
}

#[test]
#[ignore = "runs inside the LVM guest: lvm::guest_suite boots it"]
fn a_failed_backup_a_failed_mount_and_sigterm_leave_no_snapshot() {
    let vg = Vg::new("ext4");
    write(&vg.origin().join("big"), (0..4_000_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    // The store fails: a container too small for the data.
    let small = vg.tmp().join("small");
    std::fs::create_dir(&small).unwrap();
    sh(&format!("mount -t tmpfs -o size=1m freezer-it {}", small.display()));
    let out = backup(&vg.origin(), &small.join("c"), &["--lvm-snapsize", "64M"]);
    let _ = Command::new("umount").arg(&small).status();
    assert_code(&out, 1);
    vg.assert_clean("a failed backup");

    // The mount fails: the mount point is a file.
    let file = vg.tmp().join("not-a-dir");
    write(&file, "x");
    let c = vg.tmp().join("c");
    let out = backup(
        &vg.origin(),
        &c,
        &["--lvm-snapsize", "64M", "--lvm-dirmount", file.to_str().unwrap()],
    );
    assert_code(&out, 1);
    assert!(stderr(&out).contains("cannot mount the LVM snapshot"), "{}", stderr(&out));
    vg.assert_clean("a failed mount");
    assert_eq!(stored(&c), "");

    let mut child = Command::new(bin())
        .args(["backup", vg.origin().to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "b"])
        .args(["--snapshot", "--lvm-snapsize", "64M", "--upload-limit", "500K"])
        .args(["--compression", "none"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while vg.snapshots().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!vg.snapshots().is_empty(), "the snapshot was taken");
    std::thread::sleep(Duration::from_millis(1500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status:?}");
    vg.assert_clean("SIGTERM");
    assert_eq!(stored(&c), "", "no backup visible");
}

#[test]
#[ignore = "runs inside the LVM guest: lvm::guest_suite boots it"]
fn a_snapshot_that_fills_up_fails_the_backup() {
    let vg = Vg::new("ext4");
    write(&vg.origin().join("f"), "x");
    // Once the snapshot exists, 24 MiB are written to the origin: 8 MiB cannot hold the
    // blocks this changes, and the snapshot becomes invalid before the backup reads it.
    let post = format!(
        "dd if=/dev/urandom of={}/fill bs=1M count=24 conv=fsync status=none",
        vg.origin().display()
    );
    let c = vg.tmp().join("c");
    let out = backup(&vg.origin(), &c, &["--lvm-snapsize", "8M", "--post-exec", &post]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("filled up during the backup"), "{}", stderr(&out));
    assert!(stderr(&out).contains("larger --lvm-snapsize"), "{}", stderr(&out));
    assert_eq!(stored(&c), "", "nothing stored");
    vg.assert_clean("a full snapshot");
}

#[test]
#[ignore = "runs inside the LVM guest: lvm::guest_suite boots it"]
fn a_volume_that_does_not_hold_the_path_is_refused() {
    let vg = Vg::new("ext4");
    sh(&format!("lvcreate -q -y -L 16M -n other {VG}"));
    write(&vg.origin().join("f"), "x");
    let c = vg.tmp().join("c");
    let cases: [(&[&str], &str); 3] = [
        (&["--lvm-volgroup", "vgnone"], "--lvm-volgroup vgnone does not match"),
        (&["--lvm-srcvol", "/dev/vgfrz/other"], "is not the volume holding"),
        (
            &["--lvm-srcvol", "/dev/vgfrz/nosuch"],
            "--lvm-srcvol /dev/vgfrz/nosuch: no such logical volume",
        ),
    ];
    for (opts, want) in cases {
        let out = backup(&vg.origin(), &c, opts);
        assert_code(&out, 2);
        assert!(stderr(&out).contains(want), "{opts:?}: {}", stderr(&out));
    }
    // /tmp is a tmpfs in the guest.
    let plain = tempfile::tempdir().unwrap();
    write(&plain.path().join("f"), "x");
    let out = backup(plain.path(), &c, &[]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("which is not an LVM logical volume"), "{}", stderr(&out));
    assert_eq!(stored(&c), "");
    vg.assert_clean("refused options");
}

#[test]
#[ignore = "runs inside the LVM guest: lvm::guest_suite boots it"]
fn mysql_on_lvm_locks_only_for_the_snapshot_and_restores_to_the_position() {
    let vg = Vg::new("ext4");
    // Software emulation: creating the snapshot (and so the lock) takes longer than natively.
    let snapshot = ["--snapshot", "--lvm-snapsize", "128M"];
    crate::mysql::locks_only_for_the_snapshot(&vg.origin(), &snapshot, Duration::from_secs(10));
    vg.assert_clean("a MySQL backup");
}
