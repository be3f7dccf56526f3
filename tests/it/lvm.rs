//! LVM snapshots against real device-mapper. This machine's kernel has none, so
//! `guest_suite` boots a qemu guest (`scripts/lvm-vm`) that sees this machine's / read-only,
//! and runs this very test binary in it, with the tests of `lvm::guest` (ignored here:
//! outside the guest they would have no LVM to talk to).

use std::path::Path;
use std::process::Command;

use crate::support::*;

mod guest;

/// The number of tests in `guest.rs`, so that the suite notices a test that did not run.
fn guest_tests() -> usize {
    include_str!("lvm/guest.rs").lines().filter(|l| l.trim() == "#[test]").count()
}

#[test]
fn guest_suite() {
    // Not under /tmp: the guest mounts a tmpfs there, which would hide the share.
    let share = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "cd {}\nexec bash {} {}\n",
        share.path().display(),
        repo().join("tests/it/lvm/guest.sh").display(),
        exe.display()
    );
    let run = share.path().join("run.sh");
    write(&run, script);
    let out = Command::new(repo().join("scripts/lvm-vm"))
        .arg("run")
        .arg(&run)
        .arg(share.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "the guest's tests failed ({:?}); output above", out.status);
    let want = format!("test result: ok. {} passed", guest_tests());
    assert!(stdout.contains(&want), "expected '{want}' in the guest's output");
    console_is_clean(&share.path().join(".vm-console.log"));
}

/// The kernel found nothing to complain about (a dm oops would not fail a test by itself).
fn console_is_clean(console: &Path) {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    for bad in ["BUG:", "Oops", "Call Trace"] {
        assert!(!text.contains(bad), "the guest's kernel logged {bad}:\n{text}");
    }
}

#[test]
fn guest_tests_are_counted() {
    assert!(guest_tests() >= 5, "guest.rs has {} tests", guest_tests());
}
