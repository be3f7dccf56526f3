//! SIGTERM and SIGINT: stop at the next safe point, clean up (an unfinished upload removes its
//! temporary data; nothing becomes visible), then die by the same signal, so a supervisor such
//! as freezer-scheduler sees "killed by SIGTERM" (aborted) rather than a failure to retry.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::error::{Error, ErrorKind};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(sig: i32) {
    // Only an atomic store: async-signal-safe.
    RECEIVED.store(sig, Ordering::SeqCst);
}

/// Catch SIGTERM and SIGINT from now on.
pub fn install() -> io::Result<()> {
    let action = SigAction::new(SigHandler::Handler(note), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { signal::sigaction(sig, &action) }.map_err(io::Error::from)?;
    }
    Ok(())
}

/// The signal received, if any.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

thread_local! {
    /// Open [`Shield`]s on this thread.
    static SHIELDS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// While alive, [`check`] on this thread passes even after a signal: cleanup after an
/// interrupt (removing a failed backup's segments, releasing the lock) must not itself be
/// interrupted.
pub struct Shield(());

/// Shield this thread's cleanup from the signal already received.
pub fn shield() -> Shield {
    SHIELDS.with(|s| s.set(s.get() + 1));
    Shield(())
}

impl Drop for Shield {
    fn drop(&mut self) {
        SHIELDS.with(|s| s.set(s.get().saturating_sub(1)));
    }
}

/// An error when a signal has arrived: call it at safe points.
pub fn check() -> Result<(), Error> {
    if SHIELDS.with(|s| s.get()) > 0 {
        return Ok(());
    }
    match received() {
        None => Ok(()),
        Some(sig) => Err(Error::new(ErrorKind::Interrupted, format!("interrupted by {sig}"))),
    }
}

/// Restore the default action and raise the signal again, ending the process by it.
pub fn die_by_signal(sig: Signal) {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: restoring the default disposition.
    let _ = unsafe { signal::sigaction(sig, &default) };
    let _ = signal::raise(sig);
}

/// A reader or writer that fails once a signal has arrived, so that a long file stops the
/// backup promptly instead of being padded out.
pub struct Interruptible<T>(pub T);

impl<R: Read> Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        check()?;
        self.0.read(buf)
    }
}

impl<W: Write> Write for Interruptible<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        check()?;
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
