//! What a person sees: a status line while working (only on a terminal), sizes, tables.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use freezer::progress::{self, Phase};

/// A status line redrawn on stderr a few times a second; silent unless stdout and stderr are
/// terminals, so cron, systemd and pipes see only the summary.
pub struct StatusLine {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatusLine {
    pub fn start(wanted: bool) -> StatusLine {
        let on = wanted && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = on.then(|| std::thread::spawn(move || draw(&flag)));
        StatusLine { stop, thread }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            eprint!("\r\x1b[K");
        }
    }
}

fn draw(stop: &AtomicBool) {
    let mut phase = Phase::Idle;
    let mut since = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let c = progress::counts();
        if c.phase != phase {
            phase = c.phase;
            since = Instant::now();
        }
        let secs = since.elapsed().as_secs_f64().max(0.001);
        let rate = c.bytes as f64 / secs;
        let line = match c.phase {
            Phase::Idle => continue,
            Phase::Scanning => format!("scanning: {} entries", c.files),
            Phase::Backing => {
                format!(
                    "backing up: {} files, {} read, {}/s",
                    c.files,
                    human(c.bytes),
                    human(rate as u64)
                )
            }
            Phase::Restoring => {
                let eta = if c.total > c.bytes && rate > 0.0 {
                    let left = ((c.total - c.bytes) as f64 / rate) as u64;
                    format!(", ETA {}:{:02}", left / 60, left % 60)
                } else {
                    String::new()
                };
                format!(
                    "restoring: {} members, {} of {}, {}/s{eta}",
                    c.files,
                    human(c.bytes),
                    human(c.total),
                    human(rate as u64)
                )
            }
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
    }
}

/// "1 file", "2 files".
pub fn count(n: u64, thing: &str) -> String {
    if n == 1 { format!("1 {thing}") } else { format!("{n} {thing}s") }
}

/// 1536 → "1.5 KiB".
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", units[u]) }
}

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}
