use std::time::{Duration, Instant};

use super::*;
use crate::ErrorKind;
use crate::storage::Storage;
use crate::storage::local::LocalStorage;

fn setup() -> (tempfile::TempDir, Arc<dyn StorageWrite>, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::new(&dir.path().join("c")).unwrap();
    (dir, Arc::new(storage), Layout::new("h", "b"))
}

fn opts(wait: Option<Duration>, stale_after: Duration) -> LockOptions {
    LockOptions { wait, stale_after }
}

fn holder(storage: &dyn StorageWrite) -> Holder {
    serde_json::from_slice(&storage.get("locks/tar/h_b.lock").unwrap().unwrap()).unwrap()
}

fn hostname() -> String {
    nix::unistd::gethostname().unwrap().to_string_lossy().into_owned()
}

#[test]
fn second_acquire_fails_while_held_and_release_removes_it() {
    let (_dir, storage, layout) = setup();
    let lock = Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap();
    assert_eq!(lock.key(), "locks/tar/h_b.lock");
    let h = holder(&*storage);
    assert_eq!(h.pid, std::process::id());
    assert_eq!(h.hostname, hostname());
    assert!(h.refreshed >= h.started && h.started > 0);

    let err = Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    let msg = err.to_string();
    let want = format!("another freezer (pid {} on host {}, started ", h.pid, h.hostname);
    assert!(msg.contains(&want), "{msg}");
    assert!(msg.contains("is backing up h_b; wait for it, or remove locks/tar/h_b.lock"), "{msg}");
    // The failed attempt left the holder alone.
    assert_eq!(holder(&*storage), h);

    // Another backup name is not blocked.
    let other = Lock::acquire(Arc::clone(&storage), &Layout::new("h", "c"), LockOptions::default());
    other.unwrap().release().unwrap();

    lock.release().unwrap();
    assert!(!storage.exists("locks/tar/h_b.lock").unwrap());
    Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap();
}

#[test]
fn drop_releases() {
    let (_dir, storage, layout) = setup();
    drop(Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap());
    assert!(!storage.exists("locks/tar/h_b.lock").unwrap());
}

#[test]
fn waits_then_succeeds_after_release() {
    let (_dir, storage, layout) = setup();
    let first = Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap();
    let started = Instant::now();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        first.release().unwrap();
    });
    let wait = opts(Some(Duration::from_secs(20)), Duration::from_secs(3));
    let second = Lock::acquire(Arc::clone(&storage), &layout, wait).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    releaser.join().unwrap();
    assert_eq!(holder(&*storage).token, second.token);
}

#[test]
fn wait_gives_up() {
    let (_dir, storage, layout) = setup();
    let _first = Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap();
    let started = Instant::now();
    let wait = opts(Some(Duration::from_millis(200)), Duration::from_secs(3));
    let err = Lock::acquire(Arc::clone(&storage), &layout, wait).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(err.to_string().contains("after waiting 0.2 s"), "{err}");
}

/// A lock object as another run would have left it.
fn plant(storage: &dyn StorageWrite, hostname: &str, pid: u32, refreshed: i64) -> Holder {
    let h = Holder {
        hostname: hostname.into(),
        pid,
        started: refreshed - 5,
        refreshed,
        token: "someone-else".into(),
        boot: None,
    };
    storage.put("locks/tar/h_b.lock", &serde_json::to_vec(&h).unwrap()).unwrap();
    h
}

#[test]
fn stale_by_dead_pid_on_this_host() {
    let (_dir, storage, layout) = setup();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    plant(&*storage, &hostname(), pid, now());
    let lock = Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap();
    assert_eq!(holder(&*storage).token, lock.token);
    assert_eq!(holder(&*storage).pid, std::process::id());
}

#[test]
fn live_pid_on_another_host_is_not_stale_until_old() {
    let (_dir, storage, layout) = setup();
    // A fresh lock of a pid that does not exist here, but on another host: held.
    plant(&*storage, "elsewhere", u32::MAX - 1, now());
    let err = Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap_err();
    assert!(err.to_string().contains("on host elsewhere"), "{err}");

    // Refreshed longer ago than stale_after: taken over.
    plant(&*storage, "elsewhere", 1, now() - 1000);
    let lock = Lock::acquire(Arc::clone(&storage), &layout, opts(None, Duration::from_secs(60)));
    assert_eq!(holder(&*storage).token, lock.unwrap().token);
}

#[test]
fn refreshes_while_held_and_notices_a_takeover() {
    let (_dir, storage, layout) = setup();
    let lock = Lock::acquire(Arc::clone(&storage), &layout, opts(None, Duration::from_millis(300)))
        .unwrap();
    let first = holder(&*storage).refreshed;
    std::thread::sleep(Duration::from_millis(1300));
    assert!(holder(&*storage).refreshed > first);
    assert!(!lock.is_lost());

    plant(&*storage, "elsewhere", 7, now());
    // The next refresh (every 300 ms) notices; a loaded machine may delay the thread.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lock.is_lost() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lock.is_lost());
    // Released, it leaves the new holder's lock alone.
    lock.release().unwrap();
    assert_eq!(holder(&*storage).hostname, "elsewhere");
}

#[test]
fn invalid_lock_object_says_to_remove_it() {
    let (_dir, storage, layout) = setup();
    storage.put("locks/tar/h_b.lock", b"garbage").unwrap();
    let err = Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap_err();
    assert!(err.to_string().contains("locks/tar/h_b.lock"), "{err}");
    assert!(err.to_string().contains("remove it"), "{err}");
}

#[test]
fn local_create_new_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::new(&dir.path().join("c")).unwrap();
    assert!(storage.create_new("locks/tar/x.lock", b"one").unwrap());
    assert!(!storage.create_new("locks/tar/x.lock", b"two").unwrap());
    assert_eq!(storage.get("locks/tar/x.lock").unwrap().unwrap(), b"one");
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("c/locks/tar"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["x.lock"]);
}

/// A holder on this host as `plant` leaves it, but with a boot id.
fn plant_booted(storage: &dyn StorageWrite, pid: u32, refreshed: i64, boot: &str) {
    let mut h = plant(storage, &hostname(), pid, refreshed);
    h.boot = Some(boot.into());
    storage.put("locks/tar/h_b.lock", &serde_json::to_vec(&h).unwrap()).unwrap();
}

#[test]
fn a_live_holder_on_this_host_is_never_stale_by_age() {
    let (_dir, storage, layout) = setup();
    let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    // Refreshed an hour ago, as a suspended run would leave it: still held.
    plant_booted(&*storage, sleeper.id(), now() - 3600, &boot_id().unwrap());
    let err = Lock::acquire(Arc::clone(&storage), &layout, opts(None, Duration::from_secs(60)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    // Its process gone: taken over at once.
    let lock = Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap();
    assert_eq!(holder(&*storage).token, lock.token);
}

#[test]
fn a_lock_from_before_this_boot_is_dead() {
    let (_dir, storage, layout) = setup();
    plant_booted(&*storage, std::process::id() + 1, now(), "an-earlier-boot");
    let lock = Lock::acquire(Arc::clone(&storage), &layout, LockOptions::default()).unwrap();
    assert_eq!(holder(&*storage).token, lock.token);
    assert_eq!(holder(&*storage).boot, boot_id());
}

#[test]
fn a_backup_whose_lock_was_lost_does_not_become_visible() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    let local = LocalStorage::new(&dir.path().join("c")).unwrap();
    let storage: Arc<dyn StorageWrite> = Arc::new(local.clone());
    let layout = Layout::new("h", "b");
    let lock = Lock::acquire(Arc::clone(&storage), &layout, opts(None, Duration::from_millis(300)))
        .unwrap();
    plant(&*storage, "elsewhere", 7, now());
    // The next refresh (every 300 ms) notices; a loaded machine may delay the thread.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lock.is_lost() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lock.is_lost());
    let opts = crate::backup::BackupOptions::for_test(src);
    let err = crate::backup::run(&local, &opts, Some(&lock)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(err.to_string().contains("stopped before becoming visible"), "{err}");
    assert!(crate::catalog::load(&local, &layout).unwrap().is_empty());
    assert!(!local.exists("data").unwrap(), "its data is removed");
}
