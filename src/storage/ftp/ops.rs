//! The storage's steps on one connection, each safe to repeat on a fresh one: directories
//! made as needed, small objects stored by temporary name and rename, recursive delete, the
//! exclusive create.

use std::io::Write;
use std::time::{Duration, Instant};

use suppaftp::FtpError;

use super::conn::{Conn, absent, broken};
use super::{is_temp_name, join, marker_path, parent, temp_path};

/// How long a create-marker without its object may be in progress before it counts as left
/// behind by a run that died.
pub(super) const MARKER_STALE: Duration = Duration::from_secs(10);

/// Make `dir` and its missing parents.
pub(super) fn mkdirs(c: &mut Conn, dir: &str) -> Result<(), FtpError> {
    if c.ftp.cwd(dir).is_ok() {
        return Ok(());
    }
    if let Some(up) = parent(dir) {
        mkdirs(c, up)?;
    }
    match c.ftp.mkdir(dir) {
        Ok(()) => Ok(()),
        // Made meanwhile by another writer.
        Err(e) if absent(&e) && c.ftp.cwd(dir).is_ok() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Write `data` to the file `path` (created or truncated).
pub(super) fn store(c: &mut Conn, path: &str, data: &[u8]) -> Result<(), FtpError> {
    let mut stream = c.stor(path)?;
    let written = stream.write_all(data).map_err(FtpError::ConnectionError);
    let finished = stream.finish();
    written?;
    finished
}

/// Remove a file; one that is not there is fine. A dropped connection is still an error.
fn remove_file(c: &mut Conn, path: &str) -> Result<(), FtpError> {
    match c.ftp.rm(path) {
        Err(e) if !absent(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Store a small object whole: temporary file, then rename over the key.
pub(super) fn put(c: &mut Conn, path: &str, data: &[u8]) -> Result<(), FtpError> {
    if let Some(dir) = parent(path) {
        mkdirs(c, dir)?;
    }
    let temp = temp_path(path);
    let done = store(c, &temp, data).and_then(|()| c.ftp.rename(temp.as_str(), path));
    if let Err(e) = &done
        && !broken(e)
    {
        remove_file(c, &temp)?;
    }
    done
}

/// Delete the file `path`, or the directory and everything under it; absent is fine.
pub(super) fn remove(c: &mut Conn, path: &str) -> Result<(), FtpError> {
    match c.ftp.rm(path) {
        Ok(()) => {
            // An object made by create_new leaves its marker until now.
            match c.ftp.rmdir(marker_path(path)) {
                Err(e) if broken(&e) => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) if !absent(&e) => Err(e),
        Err(_) => remove_tree(c, path),
    }
}

/// FTP has no recursive delete: walk (temporary files included), then RMD bottom up.
fn remove_tree(c: &mut Conn, dir: &str) -> Result<(), FtpError> {
    let Some(entries) = c.entries(dir)? else { return Ok(()) };
    for e in entries {
        let path = join(dir, &e.name);
        if e.dir { remove_tree(c, &path)? } else { remove_file(c, &path)? }
    }
    // Not from inside it: some servers refuse to remove the working directory.
    if let Some(up) = parent(dir) {
        c.ftp.cwd(up)?;
    }
    match c.ftp.rmdir(dir) {
        Err(e) if !(absent(&e) && c.ftp.cwd(dir).is_err()) => Err(e),
        _ => Ok(()),
    }
}

/// Whether directory `dir` holds a file (not a temporary one) at any depth: the way an
/// object store sees a "directory" (empty ones left by a failed backup do not count).
pub(super) fn has_file(c: &mut Conn, dir: &str) -> Result<bool, FtpError> {
    let Some(entries) = c.entries(dir)? else { return Ok(false) };
    for e in entries {
        if is_temp_name(&e.name) {
            continue;
        }
        if !e.dir || has_file(c, &join(dir, &e.name))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// See [`super::FtpStorage`]'s `create_new`: store by temporary name, MKD the marker, rename.
pub(super) fn create_new(c: &mut Conn, path: &str, data: &[u8]) -> Result<bool, FtpError> {
    if let Some(dir) = parent(path) {
        mkdirs(c, dir)?;
    }
    let temp = temp_path(path);
    store(c, &temp, data)?;
    let created = claim(c, path, &temp);
    match &created {
        Ok(true) => {}
        Err(e) if broken(e) => return created,
        _ => remove_file(c, &temp)?,
    }
    created
}

/// Make the marker of `path` and move `temp` into place; `false` if the key is taken.
fn claim(c: &mut Conn, path: &str, temp: &str) -> Result<bool, FtpError> {
    let marker = marker_path(path);
    let mut orphan_since: Option<Instant> = None;
    loop {
        match c.ftp.mkdir(&marker) {
            Ok(()) => {
                return match c.ftp.rename(temp, path) {
                    Ok(()) => Ok(true),
                    Err(e) => {
                        if !broken(&e) {
                            let _ = c.ftp.rmdir(&marker);
                        }
                        Err(e)
                    }
                };
            }
            Err(e) if !absent(&e) => return Err(e),
            Err(refusal) => {
                if c.size(path)?.is_some() {
                    return Ok(false);
                }
                if c.ftp.cwd(&marker).is_err() {
                    // No marker either: MKD fails for another reason (permissions).
                    return Err(refusal);
                }
                let since = *orphan_since.get_or_insert_with(Instant::now);
                if since.elapsed() > MARKER_STALE {
                    log::warn!(
                        "removing {marker}: a create of {path} that never finished (a run \
                         stopped between its two steps) left it"
                    );
                    if let Some(up) = parent(&marker) {
                        c.ftp.cwd(up)?;
                    }
                    c.ftp.rmdir(&marker)?;
                    orphan_since = None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
