//! `--pre-exec`/`--post-exec` hooks and freezer-agent's `--action exec --command`: shell
//! commands, whose output goes to the log (stdout may carry `--metadata-out -`'s JSON).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, ErrorKind, Result};

/// Run a hook with `sh -c`, its output logged line by line. It sees `FREEZER_HOOK` (`pre-exec`
/// or `post-exec`), `FREEZER_PATH_TO_BACKUP` and, once a snapshot exists,
/// `FREEZER_SNAPSHOT_PATH` (where the backup reads the path).
pub(super) fn run(which: &str, cmd: &str, path: &Path, snapshot: Option<&Path>) -> Result<()> {
    log::info!("running the {which} hook: {cmd}");
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(cmd).stdin(Stdio::null());
    c.env("FREEZER_HOOK", which).env("FREEZER_PATH_TO_BACKUP", path);
    if let Some(s) = snapshot {
        c.env("FREEZER_SNAPSHOT_PATH", s);
    }
    let out = c.output().map_err(|e| Error::io(format!("cannot run the {which} hook"), e))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        log::info!("{which}: {line}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines() {
        log::warn!("{which}: {line}");
    }
    if out.status.success() {
        return Ok(());
    }
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    Err(Error::new(
        ErrorKind::Io,
        format!(
            "the {which} hook failed ({}){}: {cmd}",
            out.status,
            last.map(|l| format!(", saying \"{}\"", l.trim())).unwrap_or_default()
        ),
    ))
}

/// freezer-agent's `--action exec --command CMD`: run it with `sh -c`, output as it comes.
pub fn exec(cmd: &str) -> Result<()> {
    log::info!("running: {cmd}");
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .map_err(|e| Error::io("cannot run --command", e))?;
    match status.success() {
        true => Ok(()),
        false => Err(Error::new(ErrorKind::Io, format!("--command failed ({status}): {cmd}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_sees_where_the_backup_reads() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let cmd = format!(
            "echo \"$FREEZER_HOOK $FREEZER_PATH_TO_BACKUP $FREEZER_SNAPSHOT_PATH\" > {}",
            log.display()
        );
        run("post-exec", &cmd, Path::new("/srv"), Some(Path::new("/mnt/snap/srv"))).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "post-exec /srv /mnt/snap/srv\n");
    }

    #[test]
    fn a_failing_hook_says_what_it_printed() {
        let e = run("pre-exec", "echo frozen? >&2; echo no >&2; exit 4", Path::new("/"), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("the pre-exec hook failed (exit status: 4)"), "{e}");
        assert!(e.contains("saying \"no\""), "{e}");
        assert!(exec("exit 0").is_ok());
        assert!(exec("false").unwrap_err().to_string().contains("--command failed"));
    }
}
