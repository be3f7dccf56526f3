//! `--snapshot-type btrfs` on a real btrfs file system (a loop-mounted image of the test's
//! own; needs root): the backup reads a read-only snapshot taken at one instant, while a
//! writer keeps changing the origin, and leaves no snapshot behind on any path.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::*;

/// A btrfs image mounted at `<tmp>/mnt`, with the subvolume `<tmp>/mnt/data`.
pub(crate) struct Btrfs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Btrfs {
    pub(crate) fn new() -> Btrfs {
        let dir = tempfile::tempdir().unwrap();
        let (img, mnt) = (dir.path().join("btrfs.img"), dir.path().join("mnt"));
        std::fs::create_dir(&mnt).unwrap();
        sh(&format!(
            "truncate -s 256M {0} && mkfs.btrfs -q {0} && mount -o loop {0} {1} && \
             btrfs -q subvolume create {1}/data",
            img.display(),
            mnt.display()
        ));
        Btrfs { _dir: dir, mnt }
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.mnt.join("data")
    }

    /// The subvolumes besides `data` (snapshots left behind).
    pub(crate) fn others(&self) -> Vec<String> {
        let all = sh(&format!("btrfs subvolume list {}", self.mnt.display()));
        all.lines().filter(|l| !l.ends_with(" path data")).map(String::from).collect()
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn backup(src: &Path, c: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["backup", src.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "b"];
    args.extend_from_slice(extra);
    args.extend(["--snapshot-type", "btrfs", "--json", "--compression", "none"]);
    freezer(args)
}

pub(crate) fn json(out: &std::process::Output) -> serde_json::Value {
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Writes `f<i>` durably (as a database does) then sets `last` to `i`, until stopped: any
/// instant has `f0..=f<last>`, and at most `f<last+1>` besides. Without the fsync a btrfs
/// snapshot may hold the rename of `last` but not yet the data of `f<last>` (data still in
/// the page cache when the snapshot commits is not in it, as after a crash); LVM freezes the
/// file system, which flushes everything.
pub(crate) fn writer(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut f = std::fs::File::create(dir.join(format!("w/f{i}"))).unwrap();
            std::io::Write::write_all(&mut f, i.to_string().as_bytes()).unwrap();
            f.sync_data().unwrap();
            std::fs::write(dir.join("w/last.tmp"), i.to_string()).unwrap();
            std::fs::rename(dir.join("w/last.tmp"), dir.join("w/last")).unwrap();
            i += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        i
    })
}

/// The restore of `c` holds the writer's files up to one position in `seen` (no later file),
/// and `tree` and `big` as in the source `data`.
pub(crate) fn assert_restores_the_instant(
    c: &Path,
    r: &Path,
    data: &Path,
    seen: std::ops::RangeInclusive<u64>,
) {
    freezer_ok(["restore", r.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "b"]);
    let last: u64 = std::fs::read_to_string(r.join("w/last")).unwrap().parse().unwrap();
    assert!(seen.contains(&last), "restored {last}, the hooks saw {seen:?}");
    for i in 0..=last {
        assert_eq!(std::fs::read_to_string(r.join(format!("w/f{i}"))).unwrap(), i.to_string());
    }
    assert!(!r.join(format!("w/f{}", last + 2)).exists(), "a file from after the instant");
    assert_eq!(manifest(&r.join("tree"), true), manifest(&data.join("tree"), true));
    assert_eq!(std::fs::read(r.join("big")).unwrap(), std::fs::read(data.join("big")).unwrap());
}

#[test]
fn a_btrfs_snapshot_backup_restores_the_instant_of_the_snapshot() {
    let fs = Btrfs::new();
    let t = tempfile::tempdir().unwrap();
    let (c, log) = (t.path().join("c"), t.path().join("hooks.log"));
    sample_tree(&fs.data().join("tree"));
    write(&fs.data().join("big"), (0..3_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    std::fs::create_dir(fs.data().join("w")).unwrap();
    write(&fs.data().join("w/last"), "");
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(fs.data(), Arc::clone(&stop));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The hooks record the writer's position just before and just after the snapshot.
    let hook = |which: &str| {
        format!(
            "echo {which} $(cat {}/w/last) \"$FREEZER_SNAPSHOT_PATH\" >> {}",
            fs.data().display(),
            log.display()
        )
    };
    let (pre, post) = (hook("pre"), hook("post"));
    // Slowed down, so that the writer goes on for seconds during the backup.
    let out =
        backup(&fs.data(), &c, &["--pre-exec", &pre, "--post-exec", &post, "--upload-limit", "2M"]);
    stop.store(true, Ordering::Relaxed);
    let written = w.join().unwrap();
    assert_code(&out, 0);
    let log = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 2, "{log}");
    let (at_pre, at_post): (u64, u64) =
        (lines[0][1].parse().unwrap(), lines[1][1].parse().unwrap());
    assert_eq!(lines[0].get(2), Some(&""), "no snapshot yet in the pre-exec hook: {log}");
    assert!(lines[1][2].contains("/.freezer-snapshots/freezer_backup_snap_"), "{log}");
    assert!(
        written > at_post + 100,
        "the writer went on during the backup: {written} vs {at_post}"
    );

    let r = t.path().join("r");
    assert_restores_the_instant(&c, &r, &fs.data(), at_pre..=at_post);
    assert!(!r.join(".freezer-snapshots").exists(), "the snapshot's own folder is left out");
    assert_eq!(fs.others(), Vec::<String>::new(), "no snapshot left");
    assert!(!fs.data().join(".freezer-snapshots").exists());
}

#[test]
fn a_chain_mixes_snapshot_and_plain_levels_and_finds_renames_through_snapshots() {
    let fs = Btrfs::new();
    let t = tempfile::tempdir().unwrap();
    let c = t.path().join("c");
    sample_tree(&fs.data().join("tree"));
    for i in 0..20 {
        write(&fs.data().join(format!("dir/f{i}")), format!("{i}"));
    }
    let inc = ["--max-level", "3"];
    let l0 = backup(&fs.data(), &c, &inc);
    assert_code(&l0, 0);
    let total = json(&l0)["files_new"].as_u64().unwrap();
    tick();
    std::fs::rename(fs.data().join("dir"), fs.data().join("moved")).unwrap();
    write(&fs.data().join("tree/a/file with space"), "changed");
    // Level 1 without a snapshot, level 2 with one again: same devices recorded.
    let data = fs.data();
    let mut args = vec!["backup", data.to_str().unwrap(), "-C", c.to_str().unwrap()];
    args.extend(["-N", "b", "--json", "--compression", "none", "--max-level", "3"]);
    let l1 = freezer(&args);
    assert_code(&l1, 0);
    let l1 = json(&l1);
    assert_eq!((l1["curr_backup_level"].as_u64(), l1["files_new"].as_u64()), (Some(1), Some(0)));
    assert_eq!(l1["files_changed"].as_u64(), Some(1), "{l1}");
    tick();
    std::fs::rename(fs.data().join("moved"), fs.data().join("again")).unwrap();
    let l2 = backup(&fs.data(), &c, &inc);
    assert_code(&l2, 0);
    let l2 = json(&l2);
    assert_eq!(l2["curr_backup_level"].as_u64(), Some(2));
    assert_eq!(l2["files_new"].as_u64(), Some(0), "the rename is found in the snapshot: {l2}");
    assert_eq!(l2["files_unchanged"].as_u64(), Some(total), "{l2}");
    let r = t.path().join("r");
    freezer_ok(["restore", r.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "b"]);
    assert_eq!(manifest(&r, false), manifest(&fs.data(), false));
}

#[test]
fn a_failed_or_interrupted_backup_leaves_no_snapshot_and_no_backup() {
    let fs = Btrfs::new();
    let t = tempfile::tempdir().unwrap();
    write(&fs.data().join("big"), (0..4_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    // The store fails: a container too small for the data.
    let small = t.path().join("small");
    std::fs::create_dir(&small).unwrap();
    sh(&format!("mount -t tmpfs -o size=1m freezer-it {}", small.display()));
    let log = t.path().join("post.log");
    let post = format!("echo ran >> {}", log.display());
    let out = backup(&fs.data(), &small.join("c"), &["--post-exec", &post]);
    let _ = Command::new("umount").arg(&small).status();
    assert_code(&out, 1);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "ran\n", "post-exec ran once");
    assert_eq!(fs.others(), Vec::<String>::new(), "no snapshot left after a failure");

    // SIGTERM once the snapshot exists.
    let c = t.path().join("c");
    let mut child = Command::new(bin())
        .args(["backup", fs.data().to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "b"])
        .args(["--snapshot-type", "btrfs", "--compression", "none", "--upload-limit", "500K"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fs.others().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!fs.others().is_empty(), "the snapshot was taken");
    std::thread::sleep(std::time::Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status:?}");
    assert_eq!(fs.others(), Vec::<String>::new(), "no snapshot left after SIGTERM");
    let visible = sh(&format!("find {} -name metadata -type f 2>/dev/null || true", c.display()));
    assert_eq!(visible, "", "no backup visible");
}

#[test]
fn a_path_not_on_btrfs_is_refused_before_anything_is_stored() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let out = backup(&src, &c, &[]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("is not on a btrfs file system"), "{}", stderr(&out));
    assert!(!c.join("metadata").exists());
}

#[test]
fn a_change_between_the_snapshot_and_the_scan_is_in_the_next_level() {
    let fs = Btrfs::new();
    let t = tempfile::tempdir().unwrap();
    let c = t.path().join("c");
    write(&fs.data().join("f"), "before");
    // The post-exec hook runs once the snapshot exists, before the scan: the level reads
    // "before", and the next level must see the change, so the reference time of the level
    // is taken before the snapshot, not when the scan starts.
    let post = format!("sleep 1.2; echo after > {}/f", fs.data().display());
    let l0 = backup(&fs.data(), &c, &["--max-level", "2", "--post-exec", &post]);
    assert_code(&l0, 0);
    tick();
    let l1 = backup(&fs.data(), &c, &["--max-level", "2"]);
    assert_code(&l1, 0);
    assert_eq!(
        json(&l1)["files_changed"].as_u64(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&l1.stdout)
    );
    let host_backup = format!("{}_b", json(&l1)["hostname"].as_str().unwrap());
    let levels = level_dirs(&c, &host_backup);
    assert_eq!(levels.len(), 2);
    for (i, (level, want)) in levels.iter().zip(["before", "after\n"]).enumerate() {
        let r = t.path().join(format!("r{i}"));
        let date = level_date(level);
        let (r_s, c_s) = (r.to_str().unwrap(), c.to_str().unwrap());
        freezer_ok(["restore", r_s, "-C", c_s, "-N", "b", "--restore-from-date", &date]);
        assert_eq!(std::fs::read_to_string(r.join("f")).unwrap(), want, "level {i}");
    }
}

#[test]
fn a_dry_run_takes_and_removes_the_snapshot_and_runs_the_hooks() {
    let fs = Btrfs::new();
    let t = tempfile::tempdir().unwrap();
    let (c, log) = (t.path().join("c"), t.path().join("hooks.log"));
    write(&fs.data().join("f"), "x");
    let hook =
        |which: &str| format!("echo {which} \"$FREEZER_SNAPSHOT_PATH\" >> {}", log.display());
    let (pre, post) = (hook("pre"), hook("post"));
    let out = backup(&fs.data(), &c, &["--dry-run", "--pre-exec", &pre, "--post-exec", &post]);
    assert_code(&out, 0);
    let log = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(lines[0], "pre ", "{log}");
    assert!(lines[1].starts_with("post ") && lines[1].contains("/.freezer-snapshots/"), "{log}");
    assert_eq!(fs.others(), Vec::<String>::new(), "no snapshot left");
    let stored = sh(&format!("find {} -type f 2>/dev/null || true", c.display()));
    assert_eq!(stored, "", "a dry run stores nothing");
}
