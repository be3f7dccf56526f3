//! A small `log` backend: warnings and errors to stderr (unless quiet), everything at info and
//! above to `--log-file` with a timestamp.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

struct Logger {
    stderr: bool,
    level: log::LevelFilter,
    file: Option<Mutex<File>>,
}

static STDERR: AtomicBool = AtomicBool::new(false);

/// Whether error lines already reach stderr through the logger.
pub fn printed_to_stderr() -> bool {
    STDERR.load(Ordering::Relaxed)
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        // The FTP and TLS crates' own lines are for debugging only (the storage reports
        // failures itself), and suppaftp traces every command, the FTP password's too.
        if ["suppaftp", "rustls"].iter().any(|t| m.target().starts_with(t)) {
            return m.level() <= log::Level::Debug && self.level >= log::LevelFilter::Debug;
        }
        m.level() <= self.level || m.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let library = ["suppaftp", "rustls"].iter().any(|t| record.target().starts_with(t));
        if self.stderr && record.level() <= log::Level::Warn && !library {
            let level = if record.level() == log::Level::Error { "error" } else { "warning" };
            eprintln!("freezer: {level}: {}", record.args());
        }
        if record.level() > self.level {
            return;
        }
        if let Some(Ok(mut f)) = self.file.as_ref().map(|f| f.lock()) {
            let now = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S%.3f");
            let _ =
                writeln!(f, "{now} {} {} {}", std::process::id(), record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Install the logger; a log file that cannot be opened is an error naming it.
pub fn init(quiet: bool, log_file: Option<&Path>, level: log::LevelFilter) -> anyhow::Result<()> {
    let file = match log_file {
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create the directory of --log-file {}: {e}",
                        p.display()
                    )
                })?;
            }
            let f = OpenOptions::new().create(true).append(true).open(p).map_err(|e| {
                anyhow::anyhow!(
                    "cannot open --log-file {}: {e}; choose a writable path",
                    p.display()
                )
            })?;
            Some(Mutex::new(f))
        }
        None => None,
    };
    STDERR.store(!quiet, Ordering::Relaxed);
    let logger = Logger { stderr: !quiet, level, file };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level.max(log::LevelFilter::Warn));
    }
    Ok(())
}
