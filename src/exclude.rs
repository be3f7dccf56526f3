//! `--exclude` patterns with GNU tar's defaults for exclusion: shell wildcards where `*` also
//! matches `/`, unanchored (a pattern matches the whole name or any trailing part of it that
//! starts after a `/`), e.g. `*.log`, `cache`, `./var/tmp`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};

/// A compiled set of exclude patterns.
#[derive(Debug, Default, Clone)]
pub struct Excludes {
    globs: Vec<GlobMatcher>,
    /// The patterns as given, recorded in the backup's metadata.
    patterns: Vec<String>,
    /// Names excluded exactly (relative to the backed-up directory, no `./`).
    exact: Vec<Vec<u8>>,
}

impl Excludes {
    /// Compile the patterns; a bad pattern is a usage error naming it.
    pub fn new(patterns: &[String]) -> Result<Excludes> {
        let mut globs = Vec::with_capacity(patterns.len());
        for p in patterns {
            let trimmed = p.trim_end_matches('/');
            let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
            let glob = GlobBuilder::new(trimmed)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::usage(format!("invalid --exclude pattern '{p}': {e}")))?;
            globs.push(glob.compile_matcher());
        }
        Ok(Excludes { globs, patterns: patterns.to_vec(), exact: Vec::new() })
    }

    /// What is excluded, as it can be recorded: the patterns, then the exact names prefixed
    /// with `=`.
    pub fn describe(&self) -> Vec<String> {
        let exact = self.exact.iter().map(|e| format!("={}", String::from_utf8_lossy(e)));
        self.patterns.iter().cloned().chain(exact).collect()
    }

    /// The excludes [`Excludes::describe`] recorded.
    pub fn from_recorded(recorded: &[String]) -> Result<Excludes> {
        let (exact, patterns): (Vec<&String>, Vec<&String>) =
            recorded.iter().partition(|r| r.starts_with('='));
        let patterns: Vec<String> = patterns.into_iter().cloned().collect();
        let mut ex = Excludes::new(&patterns)?;
        ex.exact = exact.into_iter().map(|e| e.as_bytes()[1..].to_vec()).collect();
        Ok(ex)
    }

    /// Also exclude the one entry at `relative` (a path under the backed-up directory).
    pub fn add_exact(&mut self, relative: &std::path::Path) {
        self.exact.push(relative.as_os_str().as_bytes().to_vec());
    }

    /// Whether an archive name such as `./a/b.log` is excluded.
    pub fn is_excluded(&self, name: &[u8]) -> bool {
        let name = name.strip_prefix(b"./").unwrap_or(name);
        if self.exact.iter().any(|e| e == name) {
            return true;
        }
        if self.globs.is_empty() {
            return false;
        }
        let mut start = 0;
        loop {
            let candidate = OsStr::from_bytes(&name[start..]);
            if self.globs.iter().any(|g| g.is_match(candidate)) {
                return true;
            }
            match name[start..].iter().position(|&b| b == b'/') {
                Some(i) => start += i + 1,
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(p: &[&str]) -> Excludes {
        Excludes::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn unanchored_wildcards() {
        let e = ex(&["*.log", "cache", "./var/tmp"]);
        assert!(e.is_excluded(b"./a/b.log"));
        assert!(e.is_excluded(b"./x.log"));
        assert!(e.is_excluded(b"./deep/cache"));
        assert!(e.is_excluded(b"./var/tmp"));
        assert!(!e.is_excluded(b"./cached"));
        assert!(!e.is_excluded(b"./a/b.txt"));
        assert!(!e.is_excluded(b"./other/var/tmpx"));
    }

    #[test]
    fn star_matches_slash() {
        let e = ex(&["a*z"]);
        assert!(e.is_excluded(b"./a/b/z"));
    }

    #[test]
    fn bad_pattern_is_usage_error() {
        assert!(Excludes::new(&["[".to_string()]).is_err());
    }
}
