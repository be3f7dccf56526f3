//! `--consistency-check` / `--consistency-checksum`: freezer-agent 19's checksum of a tree
//! (`freezer/utils/checksum.py`), computed before a backup and compared after a restore.
//!
//! The agent's algorithm: one sha256 state fed, in walk order, with each directory's path and
//! each file's content (or, for what is not a regular file, its path), and after each entry
//! with the running hex digest concatenated with that entry's digest; the result is the final
//! hex digest (followed by the file name when a single file was checked). Paths are `./a/b`
//! relative to the checked directory, Python `unicode-escape`d. Unlike the agent, which walks
//! in the file system's order (so two copies of one tree can differ), the walk here is sorted
//! by name; excluded names are left out, as they are left out of the backup.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::exclude::Excludes;

/// The running state of the agent's checksum.
struct State {
    hasher: Sha256,
    increment: String,
    count: u64,
}

impl State {
    fn digest(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// The agent's `get_hash`: feed the entry, then fold its digest into the increment.
    fn entry(&mut self, feed: impl FnOnce(&mut Sha256) -> io::Result<()>) -> io::Result<()> {
        feed(&mut self.hasher)?;
        let entry_hash = self.digest();
        if self.increment.is_empty() {
            self.increment = entry_hash;
        } else {
            let both = format!("{}{entry_hash}", self.increment);
            self.hasher.update(both.as_bytes());
            self.increment = self.digest();
        }
        self.count += 1;
        Ok(())
    }
}

/// Python's `str.encode('unicode-escape')` of a path decoded with surrogateescape.
fn escape(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut rest = path;
    while !rest.is_empty() {
        let (text, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, None),
            Err(e) => (
                std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
                Some(rest[e.valid_up_to()]),
            ),
        };
        for c in text.chars() {
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                ' '..='~' => out.push(c as u8),
                c if (c as u32) < 0x100 => {
                    out.extend_from_slice(format!("\\x{:02x}", c as u32).as_bytes())
                }
                c if (c as u32) < 0x10000 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => out.extend_from_slice(format!("\\U{:08x}", c as u32).as_bytes()),
            }
        }
        rest = &rest[text.len()..];
        if let Some(b) = bad {
            out.extend_from_slice(format!("\\udc{b:02x}").as_bytes());
            rest = &rest[1..];
        }
    }
    out
}

/// The checksum of `path` (a directory or a file). With `ignore_links`, symbolic links count
/// by their path, not what they point to (the agent's choice: on backup unless
/// `--dereference-symlink soft|all`, always on restore).
pub fn compute(path: &Path, excludes: &Excludes, ignore_links: bool) -> Result<String> {
    let fail = |e: io::Error| {
        Error::io(format!("cannot compute the consistency checksum of {}", path.display()), e)
    };
    let mut state = State { hasher: Sha256::new(), increment: String::new(), count: 0 };
    let meta = fs::metadata(path).map_err(fail)?;
    if meta.is_file() {
        state.entry(|h| feed_file(h, path)).map_err(fail)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(format!("{}{name}", state.increment));
    }
    walk(path, b".", excludes, ignore_links, &mut state).map_err(fail)?;
    if state.count == 1 {
        // An empty directory: the agent appends the basename of the one "file" it saw.
        return Ok(format!("{}.", state.increment));
    }
    Ok(state.increment)
}

/// Compare a restored tree with the checksum recorded at backup time.
pub fn matches(path: &Path, recorded: &str) -> Result<bool> {
    // A single file's checksum carries its name after the 64 hex digits.
    let (digest, file) = recorded.split_at(recorded.len().min(64));
    let target = if file.is_empty() || file == "." { path.to_path_buf() } else { path.join(file) };
    let got = compute(&target, &Excludes::default(), true)?;
    Ok(got.get(..64) == Some(digest))
}

fn feed_file(h: &mut Sha256, path: &Path) -> io::Result<()> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// The agent's `os.walk(followlinks=True)`, sorted: the directory, its files, then each
/// subdirectory in turn.
fn walk(
    dir: &Path,
    name: &[u8],
    ex: &Excludes,
    ignore_links: bool,
    state: &mut State,
) -> io::Result<()> {
    state.entry(|h| {
        h.update(escape(name));
        Ok(())
    })?;
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut subdirs = Vec::new();
    for e in entries {
        let mut child = name.to_vec();
        child.push(b'/');
        child.extend_from_slice(e.file_name().as_bytes());
        if ex.is_excluded(&child) {
            continue;
        }
        let path = e.path();
        let is_link = e.file_type()?.is_symlink();
        let target = fs::metadata(&path);
        if target.as_ref().is_ok_and(|m| m.is_dir()) {
            // A link to a directory is walked (followlinks), unless links are ignored.
            if is_link && ignore_links {
                state.entry(|h| {
                    h.update(escape(&child));
                    Ok(())
                })?;
            } else {
                subdirs.push((path, child));
            }
            continue;
        }
        let content = target.is_ok_and(|m| m.is_file()) && !(is_link && ignore_links);
        state.entry(|h| {
            if content {
                feed_file(h, &path)
            } else {
                h.update(escape(&child));
                Ok(())
            }
        })?;
    }
    for (path, child) in subdirs {
        walk(&path, &child, ex, ignore_links, state)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_python_does() {
        assert_eq!(escape(b"./a b/c"), b"./a b/c");
        assert_eq!(escape("./é\n\\".as_bytes()), b"./\\xe9\\n\\\\");
        assert_eq!(escape("./€".as_bytes()), b"./\\u20ac");
        assert_eq!(escape(b"./\xff"), b"./\\udcff");
    }

    #[test]
    fn same_tree_same_sum_and_any_change_differs() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for root in [&a, &b] {
            fs::create_dir_all(root.join("d/e")).unwrap();
            fs::write(root.join("d/f"), "content").unwrap();
            fs::write(root.join("g"), "more").unwrap();
        }
        let none = Excludes::default();
        let sum = compute(&a, &none, true).unwrap();
        assert_eq!(sum.len(), 64);
        assert_eq!(sum, compute(&b, &none, true).unwrap());
        assert!(matches(&b, &sum).unwrap());
        fs::write(b.join("d/f"), "changed").unwrap();
        assert!(!matches(&b, &sum).unwrap());
        // One file: its name follows the digest, and the check finds it under the target.
        let one = compute(&a.join("g"), &none, true).unwrap();
        assert!(one.ends_with("g") && one.len() == 65);
        assert!(matches(&a, &one).unwrap());
    }

    /// The value freezer-agent 19 computes for this tree (with a walk in the same order):
    /// the Python code run by hand on `./`, `./f` ("x"), `./d`.
    #[test]
    fn agrees_with_the_agents_formula() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("f"), "x").unwrap();
        let mut h = Sha256::new();
        let step = |h: &mut Sha256, data: &[u8]| {
            h.update(data);
            hex::encode(h.clone().finalize())
        };
        let mut inc = step(&mut h, b".");
        let fh = step(&mut h, b"x");
        inc = step(&mut h, format!("{inc}{fh}").as_bytes());
        let dh = step(&mut h, b"./d");
        inc = step(&mut h, format!("{inc}{dh}").as_bytes());
        assert_eq!(compute(t.path(), &Excludes::default(), true).unwrap(), inc);
    }
}
