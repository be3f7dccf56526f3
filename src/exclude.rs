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
        Ok(Excludes { globs, exact: Vec::new() })
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
