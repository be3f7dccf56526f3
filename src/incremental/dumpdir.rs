//! GNU dumpdir: the contents of a directory as recorded in a `D` archive member and in the
//! snapshot file. A sequence of `<flag><name>\0` records closed by one more `\0`:
//! `Y` dumped in this archive, `N` present but unchanged, `D` a subdirectory, and, in the
//! dumpdir of the top directory only, `X tmp` / `R from` `T to` directory renames.

use crate::error::{Error, Result};

/// How an entry of a directory was treated by the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flag {
    /// `Y`: new or changed, its member follows in this archive.
    Dumped,
    /// `N`: present and unchanged (or excluded); keep what the earlier level restored.
    Kept,
    /// `D`: a subdirectory; it has its own `D` member.
    Dir,
}

impl Flag {
    /// The flag's byte in the dumpdir.
    pub fn byte(self) -> u8 {
        match self {
            Flag::Dumped => b'Y',
            Flag::Kept => b'N',
            Flag::Dir => b'D',
        }
    }

    fn from_byte(b: u8) -> Option<Flag> {
        match b {
            b'Y' => Some(Flag::Dumped),
            b'N' => Some(Flag::Kept),
            b'D' => Some(Flag::Dir),
            _ => None,
        }
    }
}

/// One directory-rename step, applied before the purge, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rename {
    /// `X name`: make a temporary directory next to `name` to break a rename cycle.
    Temp(Vec<u8>),
    /// `R from` + `T to`: archive-relative paths; an empty one means the temporary directory.
    Move { from: Vec<u8>, to: Vec<u8> },
}

/// The entries of one directory, sorted by name (byte order), packed as the dumpdir records
/// themselves (`<flag><name>\0`): a million files cost their names and 10 bytes each, not a
/// heap allocation apiece.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Entries {
    records: Vec<u8>,
    /// Where each record starts in `records`.
    starts: Vec<usize>,
}

impl Entries {
    /// Append an entry; entries must come sorted by name (see [`Entries::sort`]).
    pub fn push(&mut self, flag: Flag, name: &[u8]) {
        self.starts.push(self.records.len());
        self.records.push(flag.byte());
        self.records.extend_from_slice(name);
        self.records.push(0);
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> (Flag, &[u8]) {
        self.at(self.starts[i])
    }

    /// The record starting at `start`.
    fn at(&self, start: usize) -> (Flag, &[u8]) {
        let rest = &self.records[start + 1..];
        let name = rest.split(|&b| b == 0).next().unwrap_or(rest);
        (Flag::from_byte(self.records[start]).unwrap_or(Flag::Kept), name)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (Flag, &[u8])> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The flag of `name`, if it is listed.
    pub fn lookup(&self, name: &[u8]) -> Option<Flag> {
        let i = self.starts.binary_search_by(|&s| self.at(s).1.cmp(name)).ok()?;
        Some(self.get(i).0)
    }

    /// Sort by name (parsed dumpdirs from elsewhere may not be).
    pub fn sort(&mut self) {
        if self.starts.windows(2).all(|w| self.at(w[0]).1 <= self.at(w[1]).1) {
            return;
        }
        let mut order = self.starts.clone();
        order.sort_by(|a, b| self.at(*a).1.cmp(self.at(*b).1));
        *self = order.into_iter().map(|s| self.at(s)).collect();
    }
}

impl<'a> FromIterator<(Flag, &'a [u8])> for Entries {
    fn from_iter<I: IntoIterator<Item = (Flag, &'a [u8])>>(iter: I) -> Entries {
        let mut e = Entries::default();
        for (flag, name) in iter {
            e.push(flag, name);
        }
        e
    }
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(flag, n)| (flag, String::from_utf8_lossy(n))))
            .finish()
    }
}

/// A parsed dumpdir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dumpdir {
    /// Entries sorted by name (byte order), as GNU tar writes them.
    pub entries: Entries,
    /// Rename steps, in archive order.
    pub renames: Vec<Rename>,
}

impl Dumpdir {
    /// Parse and validate dumpdir bytes (with or without the final terminator).
    pub fn parse(data: &[u8]) -> Result<Dumpdir> {
        let mut out = Dumpdir::default();
        let mut pending_from: Option<Vec<u8>> = None;
        let mut has_temp = false;
        for rec in data.split(|&b| b == 0) {
            let Some((&flag, name)) = rec.split_first() else {
                break; // the empty record ends the dumpdir
            };
            if pending_from.is_some() && flag != b'T' {
                return Err(Error::corrupt("malformed dumpdir: 'R' not followed by 'T'"));
            }
            match flag {
                b'X' => {
                    if has_temp {
                        return Err(Error::corrupt("malformed dumpdir: 'X' duplicated"));
                    }
                    has_temp = true;
                    out.renames.push(Rename::Temp(name.to_vec()));
                }
                b'R' => {
                    if name.is_empty() && !has_temp {
                        return Err(Error::corrupt("malformed dumpdir: empty name in 'R'"));
                    }
                    pending_from = Some(name.to_vec());
                }
                b'T' => {
                    let Some(from) = pending_from.take() else {
                        return Err(Error::corrupt("malformed dumpdir: 'T' not preceded by 'R'"));
                    };
                    if name.is_empty() && !has_temp {
                        return Err(Error::corrupt("malformed dumpdir: empty name in 'T'"));
                    }
                    out.renames.push(Rename::Move { from, to: name.to_vec() });
                }
                other => {
                    // GNU tar ignores unknown flags; so do we.
                    let Some(f) = Flag::from_byte(other) else { continue };
                    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
                        return Err(Error::unsafe_path(format!(
                            "malformed dumpdir: entry name {:?} is not a plain file name",
                            String::from_utf8_lossy(name)
                        )));
                    }
                    out.entries.push(f, name);
                }
            }
        }
        if pending_from.is_some() {
            return Err(Error::corrupt("malformed dumpdir: 'R' at end of data"));
        }
        out.entries.sort();
        Ok(out)
    }

    /// The flag recorded for `name`, if it is listed.
    pub fn lookup(&self, name: &[u8]) -> Option<Flag> {
        self.entries.lookup(name)
    }

    /// Encode as GNU tar does: entries, then renames, then the closing `\0`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.entries.records);
        for r in &self.renames {
            match r {
                Rename::Temp(name) => {
                    out.push(b'X');
                    out.extend_from_slice(name);
                    out.push(0);
                }
                Rename::Move { from, to } => {
                    out.push(b'R');
                    out.extend_from_slice(from);
                    out.push(0);
                    out.push(b'T');
                    out.extend_from_slice(to);
                    out.push(0);
                }
            }
        }
        out.push(0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gnu_example() {
        let raw = b"Da_renamed\0Dc\0Nsparse\0Rsrc/a\0Tsrc/a_renamed\0\0";
        let d = Dumpdir::parse(raw).unwrap();
        assert_eq!(d.lookup(b"c"), Some(Flag::Dir));
        assert_eq!(d.lookup(b"sparse"), Some(Flag::Kept));
        assert_eq!(d.lookup(b"nope"), None);
        assert_eq!(
            d.renames,
            vec![Rename::Move { from: b"src/a".to_vec(), to: b"src/a_renamed".to_vec() }]
        );
        assert_eq!(d.encode(), raw.to_vec());
    }

    #[test]
    fn rejects_malformed() {
        assert!(Dumpdir::parse(b"Rsrc/a\0Ysrc\0\0").is_err());
        assert!(Dumpdir::parse(b"Tsrc/a\0\0").is_err());
        assert!(Dumpdir::parse(b"Y../etc\0\0").is_err());
        assert!(Dumpdir::parse(b"Ya/b\0\0").is_err());
        assert!(Dumpdir::parse(b"R\0Tx\0\0").is_err());
    }

    #[test]
    fn entries_sort_look_up_and_encode_as_records() {
        let mut e: Entries = [(Flag::Dumped, &b"zz"[..]), (Flag::Dir, b"a"), (Flag::Kept, b"m")]
            .into_iter()
            .collect();
        e.sort();
        let names: Vec<&[u8]> = e.iter().map(|(_, n)| n).collect();
        assert_eq!(names, [&b"a"[..], b"m", b"zz"]);
        assert_eq!(
            (e.lookup(b"zz"), e.lookup(b"a"), e.lookup(b"b")),
            (Some(Flag::Dumped), Some(Flag::Dir), None)
        );
        let d = Dumpdir { entries: e, renames: Vec::new() };
        assert_eq!(d.encode(), b"Da\0Nm\0Yzz\0\0".to_vec());
        assert_eq!(Dumpdir::parse(&d.encode()).unwrap(), d);
    }

    #[test]
    fn empty_is_fine() {
        assert_eq!(Dumpdir::parse(b"\0").unwrap(), Dumpdir::default());
        assert_eq!(Dumpdir::parse(b"").unwrap(), Dumpdir::default());
    }
}
