//! Restore never deletes across a file system boundary: a mount point in the backed-up tree
//! (whose contents the backup leaves out) is not emptied on restore, and neither is a file
//! system mounted in the restore target. These tests mount a tmpfs: they need root.

use std::path::Path;
use std::process::Command;

use crate::support::*;

struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(at: &Path) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "freezer-it"])
            .arg(at)
            .status();
        assert!(ok.unwrap().success(), "mounting a tmpfs at {} (needs root)", at.display());
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_mount_point_in_the_source_is_not_emptied_on_restore() {
    let t = tempfile::tempdir().unwrap();
    let (src, c) = (t.path().join("src"), t.path().join("c"));
    write(&src.join("f"), "f");
    let _m = Mount::tmpfs(&src.join("mnt"));
    write(&src.join("mnt/on-tmpfs"), "left out of the backup");
    let common = ["-N", "m", "-C", c.to_str().unwrap()];
    let out = freezer_ok([&["backup", src.to_str().unwrap()][..], &common].concat());
    assert!(stderr(&out).contains("different file system"), "{}", stderr(&out));
    // Restore over a tree whose mnt holds data of its own (mounted or not at restore time).
    let dest = t.path().join("dest");
    write(&dest.join("mnt/their-data"), "must survive");
    write(&dest.join("stale"), "goes: not in the backup");
    freezer_ok([&["restore", dest.to_str().unwrap(), "--overwrite"][..], &common].concat());
    assert_eq!(std::fs::read_to_string(dest.join("mnt/their-data")).unwrap(), "must survive");
    assert!(!dest.join("stale").exists());
    assert!(!dest.join("mnt/on-tmpfs").exists());
}

#[test]
fn a_file_system_mounted_in_the_target_is_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let (src, c) = (t.path().join("src"), t.path().join("c"));
    write(&src.join("data/new"), "from the backup");
    let common = ["-N", "t", "-C", c.to_str().unwrap()];
    freezer_ok([&["backup", src.to_str().unwrap()][..], &common].concat());
    let dest = t.path().join("dest");
    let _m = Mount::tmpfs(&dest.join("data"));
    write(&dest.join("data/precious"), "on its own file system");
    let out = freezer([&["restore", dest.to_str().unwrap(), "--overwrite"][..], &common].concat());
    assert_code(&out, 0);
    assert_eq!(
        std::fs::read_to_string(dest.join("data/precious")).unwrap(),
        "on its own file system"
    );
    assert_eq!(std::fs::read_to_string(dest.join("data/new")).unwrap(), "from the backup");
    assert!(stderr(&out).contains("another file system is mounted there"), "{}", stderr(&out));
}

/// A file bind-mounted from another file system is left out like a mount point's contents
/// (GNU tar lists it as unchanged), at a level 0 whose scan takes no status of new files and
/// at the next level; `--cross-file-systems` stores it.
#[test]
fn a_file_bind_mounted_from_another_file_system_is_left_out() {
    let t = tempfile::tempdir().unwrap();
    let (src, c) = (t.path().join("src"), t.path().join("c"));
    write(&src.join("d/plain"), "stored");
    write(&src.join("d/bound"), "hidden under the mount");
    let _tmpfs = Mount::tmpfs(&t.path().join("other"));
    write(&t.path().join("other/secret"), "from another file system");
    let ok = Command::new("mount")
        .arg("--bind")
        .arg(t.path().join("other/secret"))
        .arg(src.join("d/bound"))
        .status();
    assert!(ok.unwrap().success(), "bind mount (needs root)");
    let _bind = Mount(src.join("d/bound"));
    let c = c.to_str().unwrap();
    let backup = |name: &str, more: &[&str]| {
        let base = ["--action", "backup", "--path-to-backup", src.to_str().unwrap()];
        let rest = ["--backup-name", name, "--container", c, "--incremental", "--max-level", "2"];
        let out = freezer_ok([&base[..], &rest, more].concat());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for level in 0..2 {
        assert!(backup("b", &[]).contains(&format!("level {level}")));
        let dest = t.path().join(format!("dest{level}"));
        freezer_ok(["restore", dest.to_str().unwrap(), "-N", "b", "-C", c]);
        assert_eq!(std::fs::read_to_string(dest.join("d/plain")).unwrap(), "stored");
        assert!(!dest.join("d/bound").exists(), "level {level} stored the bound file");
    }
    backup("x", &["--cross-file-systems"]);
    let dest = t.path().join("dest-across");
    freezer_ok(["restore", dest.to_str().unwrap(), "-N", "x", "-C", c]);
    assert_eq!(std::fs::read_to_string(dest.join("d/bound")).unwrap(), "from another file system");
}
