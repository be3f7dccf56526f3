//! One backup per host and backup name at a time.
//!
//! Two runs backing up the same `<hostname>_<backup_name>` at once would both choose level N on
//! the same parent and race. A [`Lock`] is an object in the storage itself
//! (`locks/tar/<HB>.lock`, JSON: hostname, pid, start time, last refresh), so it also works
//! across hosts sharing a container. While held, a background thread refreshes it every
//! `stale_after / 3`; a lock whose holder died is taken over: at once when the holder was on
//! this host and its pid is gone, otherwise once its refresh is older than `stale_after`
//! (which assumes the hosts' clocks agree to well within `stale_after`).
//!
//! Races, kept small rather than impossible:
//! - Creating: [`StorageWrite::create_new`] is atomic (a hard link locally, `If-None-Match: *`
//!   on Swift); a lost reply to it is recognised by the token when the retry finds the lock.
//! - Taking over a stale lock: the holder is read again just before deleting it, then the
//!   lock is created anew; another taker acting in those few milliseconds can delete the lock
//!   just created. Both would then have to have found the same holder stale at the same moment.
//! - Refreshing: the owner is read back just before each refresh; a run seen as stale (a host
//!   suspended past `stale_after`) stops refreshing and [`Lock::is_lost`] says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::catalog::{ENGINE, Layout, format_local};
use crate::error::{Error, Result};
use crate::storage::StorageWrite;

#[cfg(test)]
mod tests;

/// How to acquire a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockOptions {
    /// Wait up to this long for another run to finish; `None`: fail at once.
    pub wait: Option<Duration>,
    /// A lock not refreshed for this long belongs to a run that died.
    pub stale_after: Duration,
}

impl Default for LockOptions {
    /// Fail at once; stale after 10 minutes (refreshed every 3 min 20 s).
    fn default() -> Self {
        LockOptions { wait: None, stale_after: Duration::from_secs(600) }
    }
}

/// The content of a lock object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub hostname: String,
    pub pid: u32,
    /// Unix seconds.
    pub started: i64,
    /// Unix seconds of the last refresh.
    pub refreshed: i64,
    /// Unique to one acquisition: tells our lock from another run's (even one of the same pid).
    pub token: String,
    /// The holder host's boot id: a lock taken before the host last booted is dead at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
}

impl Holder {
    /// `pid 123 on host x, started 2026-11-26 10:00:00`.
    fn describe(&self) -> String {
        format!(
            "pid {} on host {}, started {}",
            self.pid,
            self.hostname,
            format_local(self.started)
        )
    }
}

/// The key of the lock of `layout`: `locks/tar/<HB>.lock`.
pub fn lock_key(layout: &Layout) -> String {
    format!("locks/{ENGINE}/{}.lock", layout.host_backup())
}

/// A held lock; released by [`Lock::release`] or, best effort, on drop.
pub struct Lock {
    storage: Arc<dyn StorageWrite>,
    key: String,
    token: String,
    /// Dropping the sender stops the refresh thread.
    refresher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    lost: Arc<AtomicBool>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock").field("key", &self.key).field("token", &self.token).finish()
    }
}

impl Lock {
    /// Take the lock of `layout` in `storage`, waiting or taking over a stale one as `opts`
    /// says. The storage is shared with the refresh thread, hence the `Arc`.
    pub fn acquire(
        storage: Arc<dyn StorageWrite>,
        layout: &Layout,
        opts: LockOptions,
    ) -> Result<Lock> {
        let key = lock_key(layout);
        let hostname = nix::unistd::gethostname()
            .map_err(|e| Error::io("cannot read this host's name", e.into()))?
            .to_string_lossy()
            .into_owned();
        let mine = Holder {
            hostname,
            pid: std::process::id(),
            started: now(),
            refreshed: now(),
            token: new_token(),
            boot: boot_id(),
        };
        let started = Instant::now();
        let poll = (opts.stale_after / 30).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            crate::interrupt::check()?;
            let fresh = Holder { refreshed: now(), ..mine.clone() };
            // `create_new` is atomic on every storage: stored means ours.
            if storage.create_new(&key, &to_json(&fresh)?)? {
                return Lock::start(storage, key, fresh, opts.stale_after);
            }
            let Some(holder) = read_holder(&*storage, &key)? else {
                // Released between our attempt and the read: try again at once.
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            if holder.token == mine.token {
                // Our create was stored, but its reply was lost and the retry found it there.
                return Lock::start(storage, key, holder, opts.stale_after);
            }
            if let Some(why) = stale(&holder, &mine, opts.stale_after) {
                log::warn!(
                    "taking over the lock {key} of another freezer ({}): {why}",
                    holder.describe()
                );
                if read_holder(&*storage, &key)?.as_ref() == Some(&holder) {
                    storage.delete(&key)?;
                }
                continue;
            }
            let waited = started.elapsed();
            let remaining = opts.wait.and_then(|w| w.checked_sub(waited)).unwrap_or_default();
            if remaining.is_zero() {
                return Err(held(&*storage, &key, layout, &holder, opts.wait));
            }
            thread::sleep(poll.min(remaining));
        }
    }

    fn start(
        storage: Arc<dyn StorageWrite>,
        key: String,
        mine: Holder,
        stale_after: Duration,
    ) -> Result<Lock> {
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let interval = (stale_after / 3).max(Duration::from_millis(10));
        let (s, k, l) = (Arc::clone(&storage), key.clone(), Arc::clone(&lost));
        let token = mine.token.clone();
        let thread = thread::Builder::new()
            .name("freezer-lock".into())
            .spawn(move || refresh_loop(&*s, &k, mine, (interval, stale_after), &stopped, &l));
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                let _ = storage.delete(&key);
                return Err(Error::io("cannot start the lock refresh thread", e));
            }
        };
        Ok(Lock { storage, key, token, refresher: Some((stop, thread)), lost })
    }

    /// The lock object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether another run took the lock over, judging this one dead (it was not refreshed
    /// for `stale_after`, e.g. the host was suspended). The backup should stop.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stop refreshing and remove the lock object (if it is still ours).
    pub fn release(mut self) -> Result<()> {
        self.unlock()
    }

    fn unlock(&mut self) -> Result<()> {
        // Also after SIGTERM: a lock left behind blocks the next run until it goes stale.
        let _cleanup = crate::interrupt::shield();
        let Some((stop, thread)) = self.refresher.take() else {
            return Ok(());
        };
        drop(stop);
        let _ = thread.join();
        match read_holder(&*self.storage, &self.key)? {
            Some(h) if h.token == self.token => self.storage.delete(&self.key),
            _ => {
                log::warn!("the lock {} was no longer ours when released", self.key);
                Ok(())
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Err(e) = self.unlock() {
            log::warn!(
                "cannot remove the lock {}: {e}; it is taken over once stale, or remove it",
                self.key
            );
        }
    }
}

/// Refresh every `interval` until told to stop (or the sender is dropped).
fn refresh_loop(
    storage: &dyn StorageWrite,
    key: &str,
    mut mine: Holder,
    (interval, stale_after): (Duration, Duration),
    stopped: &mpsc::Receiver<()>,
    lost: &AtomicBool,
) {
    let mut last_ok = Instant::now();
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        let refreshed = read_holder(storage, key).and_then(|holder| match holder {
            Some(h) if h.token == mine.token => {
                mine.refreshed = now();
                storage.put(key, &to_json(&mine)?).map(|()| true)
            }
            _ => Ok(false),
        });
        match refreshed {
            Ok(true) => last_ok = Instant::now(),
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                log::error!(
                    "the lock {key} was taken over by another freezer, which judged this run \
                     dead; two backups may now run at once"
                );
                return;
            }
            Err(e) if last_ok.elapsed() > stale_after => {
                lost.store(true, Ordering::SeqCst);
                log::error!(
                    "the lock {key} could not be refreshed for {} s ({e}): another freezer may \
                     have taken it over",
                    last_ok.elapsed().as_secs()
                );
                return;
            }
            Err(e) => log::warn!("cannot refresh the lock {key}: {e}; trying again"),
        }
    }
}

/// The holder of `key`, `None` if there is no lock.
fn read_holder(storage: &dyn StorageWrite, key: &str) -> Result<Option<Holder>> {
    let Some(bytes) = storage.get(key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::storage(format!(
            "the lock object {key} in {} is not valid ({e}); if no freezer is backing up, \
             remove it",
            storage.describe()
        ))
    })
}

/// This boot of this host, as the kernel names it.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

/// Why `holder` is dead, if it is. A holder on this host, in this boot, whose process is
/// alive is never dead, however old its refresh: it may only be suspended or slow.
fn stale(holder: &Holder, mine: &Holder, stale_after: Duration) -> Option<String> {
    if holder.hostname == mine.hostname && holder.pid != mine.pid {
        let booted_since = holder.boot.is_some() && mine.boot.is_some() && holder.boot != mine.boot;
        if booted_since {
            return Some("it was taken before this host last booted".into());
        }
        if !alive(holder.pid) {
            return Some(format!("its process {} is gone", holder.pid));
        }
        if holder.boot.is_some() && holder.boot == mine.boot {
            return None;
        }
    }
    let age = now().saturating_sub(holder.refreshed);
    if age > 0 && age as u64 > stale_after.as_secs() {
        return Some(format!(
            "it was last refreshed {age} s ago, and a lock is stale after {} s",
            stale_after.as_secs()
        ));
    }
    None
}

/// Whether a process `pid` exists on this host (a pid reused since is seen as alive; the
/// lock then goes stale by age).
fn alive(pid: u32) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    match i32::try_from(pid) {
        Ok(p) if p > 0 => !matches!(kill(Pid::from_raw(p), None), Err(Errno::ESRCH)),
        _ => true,
    }
}

fn held(
    storage: &dyn StorageWrite,
    key: &str,
    layout: &Layout,
    holder: &Holder,
    wait: Option<Duration>,
) -> Error {
    let waited = match wait {
        Some(w) if !w.is_zero() => format!(" (still, after waiting {} s)", w.as_secs_f64()),
        _ => String::new(),
    };
    Error::new(
        crate::ErrorKind::Locked,
        format!(
            "another freezer ({}) is backing up {}{waited}; wait for it, or remove {key} from {} \
         if it is gone",
            holder.describe(),
            layout.host_backup(),
            storage.describe()
        ),
    )
}

fn to_json(holder: &Holder) -> Result<Vec<u8>> {
    serde_json::to_vec(holder).map_err(|e| {
        Error::new(crate::ErrorKind::Io, "cannot serialize the lock object").with_source(e)
    })
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// host-independent and unique per acquisition in this process and across processes.
fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}
