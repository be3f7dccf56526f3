//! Progress counters, updated by the backup and restore loops and read by whoever shows
//! progress (the binary draws a status line on a terminal). Process-wide atomics: cheap to
//! bump from any stage, and the library never touches a terminal.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// What the run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle = 0,
    Scanning = 1,
    Backing = 2,
    Restoring = 3,
}

static PHASE: AtomicU8 = AtomicU8::new(0);
static FILES: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static TOTAL: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub phase: Phase,
    /// Entries scanned (scanning), files written into the archive (backup) or restored.
    pub files: u64,
    /// File bytes read (backup) or stored bytes read back (restore).
    pub bytes: u64,
    /// Bytes expected in all, when known (restore: the stored size of the chain).
    pub total: u64,
}

pub fn set_phase(p: Phase) {
    PHASE.store(p as u8, Ordering::Relaxed);
    FILES.store(0, Ordering::Relaxed);
    BYTES.store(0, Ordering::Relaxed);
}

pub fn set_total(bytes: u64) {
    TOTAL.store(bytes, Ordering::Relaxed);
}

pub fn add_files(n: u64) {
    FILES.fetch_add(n, Ordering::Relaxed);
}

pub fn add_bytes(n: u64) {
    BYTES.fetch_add(n, Ordering::Relaxed);
}

pub fn counts() -> Counts {
    let phase = match PHASE.load(Ordering::Relaxed) {
        1 => Phase::Scanning,
        2 => Phase::Backing,
        3 => Phase::Restoring,
        _ => Phase::Idle,
    };
    Counts {
        phase,
        files: FILES.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
        total: TOTAL.load(Ordering::Relaxed),
    }
}

/// Counts the bytes that pass through a reader.
pub struct Counting<R>(pub R);

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        add_bytes(n as u64);
        Ok(n)
    }
}
