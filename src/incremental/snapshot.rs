//! GNU tar's snapshot file (`--listed-incremental`), stored as a backup's `engine_metadata`.
//!
//! Format 2 (what GNU tar ≥ 1.16 writes and what we write):
//! `GNU tar-<version>-2\n`, then NUL-terminated fields: the dump's start time (sec, nsec), and
//! per directory `nfs`, `mtime sec`, `mtime nsec`, `dev`, `ino`, `name`, its dumpdir entries
//! (`Y`/`N`/`D` + name each) and an empty field closing the record. Formats 0 and 1 (line based,
//! no dumpdir) are read so that very old chains can be continued.

use crate::error::{Error, Result};
use crate::incremental::dumpdir::{Dumpdir, Entries, Flag};

/// Seconds and nanoseconds, as the snapshot records times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

/// One directory as recorded by a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRecord {
    pub nfs: bool,
    pub mtime: Timespec,
    pub dev: u64,
    pub ino: u64,
    /// The name as archived, e.g. `.` or `./a/b` (no trailing slash).
    pub name: Vec<u8>,
    /// Its contents at that dump; `None` for formats 0 and 1, which did not record them.
    pub entries: Option<Entries>,
}

/// A whole snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Start time of the dump that wrote it: the next level dumps what changed since.
    pub start: Timespec,
    pub dirs: Vec<DirRecord>,
}

// GNU tar parses `GNU tar-<version>-<format>` up to the first '-' after the version, so the
// version must not contain '-'. We write the version of the GNU tar whose format we follow.
const HEADER: &[u8] = b"GNU tar-1.34-2\n";

impl Snapshot {
    /// Parse a snapshot file of format 0, 1 or 2.
    pub fn parse(data: &[u8]) -> Result<Snapshot> {
        let nl = data.iter().position(|&b| b == b'\n');
        let first = &data[..nl.unwrap_or(data.len())];
        if let Some(rest) = first.strip_prefix(b"GNU tar-") {
            let dash = rest
                .iter()
                .position(|&b| b == b'-')
                .ok_or_else(|| bad("header has no format number"))?;
            let version = std::str::from_utf8(&rest[dash + 1..])
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .ok_or_else(|| bad("header has an invalid format number"))?;
            let body = nl.map(|i| &data[i + 1..]).unwrap_or(&[]);
            match version {
                2 => parse_v2(body),
                1 => parse_v01(body, true),
                v => Err(bad(&format!("unsupported incremental format version {v}"))),
            }
        } else if data.is_empty() {
            Ok(Snapshot::default())
        } else {
            parse_v01(data, false)
        }
    }

    /// Encode as format 2.
    pub fn encode(&self) -> Vec<u8> {
        let mut enc = Encoder::new(self.start);
        for d in &self.dirs {
            enc.dir(d, d.entries.iter().flat_map(|e| e.iter()));
        }
        enc.finish()
    }
}

/// Writes format 2 one directory at a time, so that a dump's entries are not copied into a
/// [`Snapshot`] first (a million files would hold them twice).
pub struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    /// A snapshot of a dump that started at `start`.
    pub fn new(start: Timespec) -> Encoder {
        let mut enc = Encoder { out: HEADER.to_vec() };
        enc.field(start.sec.to_string().as_bytes());
        enc.field(start.nsec.to_string().as_bytes());
        enc
    }

    /// One directory: `d`'s fields (not its `entries`), then `entries`.
    pub fn dir<'a>(&mut self, d: &DirRecord, entries: impl Iterator<Item = (Flag, &'a [u8])>) {
        self.field(if d.nfs { b"1" } else { b"0" });
        self.field(d.mtime.sec.to_string().as_bytes());
        self.field(d.mtime.nsec.to_string().as_bytes());
        self.field(d.dev.to_string().as_bytes());
        self.field(d.ino.to_string().as_bytes());
        self.field(&d.name);
        for (flag, name) in entries {
            self.out.push(flag.byte());
            self.field(name);
        }
        self.out.extend_from_slice(b"\0\0");
    }

    /// The encoded snapshot.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }

    fn field(&mut self, s: &[u8]) {
        self.out.extend_from_slice(s);
        self.out.push(0);
    }
}

fn bad(what: &str) -> Error {
    Error::corrupt(format!("invalid GNU tar snapshot file (engine_metadata): {what}"))
}

/// A cursor over NUL-terminated fields.
struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn next(&mut self, what: &str) -> Result<&'a [u8]> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let end = rest.iter().position(|&b| b == 0).ok_or_else(|| {
            bad(&format!("unexpected end of file while reading {what} at byte {}", self.pos))
        })?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn num<T: std::str::FromStr>(&mut self, what: &str) -> Result<T> {
        let raw = self.next(what)?;
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(&format!("invalid {what} {:?}", String::from_utf8_lossy(raw))))
    }

    fn time(&mut self, what: &str) -> Result<Timespec> {
        let sec = self.num(what)?;
        let nsec: u32 = self.num(what)?;
        if nsec >= 1_000_000_000 {
            return Err(bad(&format!("invalid nanoseconds in {what}")));
        }
        Ok(Timespec { sec, nsec })
    }
}

fn parse_v2(body: &[u8]) -> Result<Snapshot> {
    let mut f = Fields { data: body, pos: 0 };
    let start = f.time("start time")?;
    let mut dirs = Vec::new();
    while !f.at_end() {
        let nfs: u8 = f.num("nfs flag")?;
        let mtime = f.time("directory mtime")?;
        let dev = f.num("device number")?;
        let ino = f.num("inode number")?;
        let name = f.next("directory name")?.to_vec();
        let mut raw = Vec::new();
        loop {
            let e = f.next("dumpdir entry")?;
            if e.is_empty() {
                break;
            }
            raw.extend_from_slice(e);
            raw.push(0);
        }
        // The record ends with one more empty field.
        if !f.next("record terminator")?.is_empty() {
            return Err(bad("missing record terminator"));
        }
        raw.push(0);
        let entries = Dumpdir::parse(&raw)?.entries;
        dirs.push(DirRecord { nfs: nfs == 1, mtime, dev, ino, name, entries: Some(entries) });
    }
    Ok(Snapshot { start, dirs })
}

/// Formats 0 and 1: a time line, then `[+][mtime_sec mtime_nsec ]dev ino name` per line.
fn parse_v01(body: &[u8], v1: bool) -> Result<Snapshot> {
    let mut lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let time_line = lines.next().ok_or_else(|| bad("missing time stamp"))?;
    let text = String::from_utf8_lossy(time_line);
    let mut parts = text.split_whitespace();
    let sec = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad("invalid time stamp"))?;
    let nsec = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut dirs = Vec::new();
    for line in lines {
        let (nfs, line) = match line.strip_prefix(b"+") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let nums = if v1 { 4 } else { 2 };
        let mut it = line.splitn(nums + 1, |&b| b == b' ');
        let mut n = Vec::with_capacity(nums);
        for _ in 0..nums {
            let raw = it.next().ok_or_else(|| bad("short directory line"))?;
            let v: i64 = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("invalid number in directory line"))?;
            n.push(v);
        }
        let name = unquote(it.next().ok_or_else(|| bad("directory line has no name"))?);
        let (mtime, dev, ino) = if v1 {
            (Timespec { sec: n[0], nsec: n[1] as u32 }, n[2], n[3])
        } else {
            (Timespec::default(), n[0], n[1])
        };
        dirs.push(DirRecord { nfs, mtime, dev: dev as u64, ino: ino as u64, name, entries: None });
    }
    Ok(Snapshot { start: Timespec { sec, nsec }, dirs })
}

/// Undo GNU `quotearg` C-style escapes used by formats 0 and 1.
fn unquote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            let c = s[i + 1];
            let simple = match c {
                b'\\' => Some(b'\\'),
                b'n' => Some(b'\n'),
                b't' => Some(b'\t'),
                b'r' => Some(b'\r'),
                b'a' => Some(7),
                b'b' => Some(8),
                b'f' => Some(12),
                b'v' => Some(11),
                b'?' => Some(127),
                _ => None,
            };
            if let Some(b) = simple {
                out.push(b);
                i += 2;
                continue;
            }
            let digits: Vec<u8> = s[i + 1..]
                .iter()
                .take(3)
                .take_while(|d| (b'0'..=b'7').contains(d))
                .copied()
                .collect();
            if !digits.is_empty() {
                out.push(digits.iter().fold(0u8, |acc, d| acc.wrapping_mul(8) + (d - b'0')));
                i += 1 + digits.len();
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_v2() {
        let raw = b"GNU tar-1.34-2\n1795712698\x0046053596\x000\x001795712697\x0016391452\x0065024\x0010010744\x00.\x00Da2\x00Dc\x00Nlnk\x00\x00\x000\x001795712697\x0032391452\x0065024\x0010010747\x00./c\x00Nf2\x00Ynew\x00\x00\x00";
        let s = Snapshot::parse(raw).unwrap();
        assert_eq!(s.start, Timespec { sec: 1795712698, nsec: 46053596 });
        assert_eq!(s.dirs.len(), 2);
        assert_eq!(s.dirs[1].name, b"./c");
        assert_eq!(
            s.dirs[1].entries.as_ref().map(|e| e.iter().collect::<Vec<_>>()),
            Some(vec![(Flag::Kept, &b"f2"[..]), (Flag::Dumped, &b"new"[..])])
        );
        assert_eq!(s.encode(), raw.to_vec());
    }

    #[test]
    fn empty_directory_record() {
        let raw = b"GNU tar-1.34-2\n1\x002\x000\x003\x004\x005\x006\x00./e\x00\x00\x00";
        let s = Snapshot::parse(raw).unwrap();
        assert_eq!(s.dirs[0].entries.as_ref().map(Entries::len), Some(0));
        assert_eq!(s.encode(), raw.to_vec());
    }

    #[test]
    fn rejects_truncated() {
        let raw = b"GNU tar-1.34-2\n1\x002\x000\x003\x004\x005\x006\x00./e\x00Yx\x00";
        assert!(Snapshot::parse(raw).is_err());
        assert!(Snapshot::parse(b"GNU tar-1.34-9\n").is_err());
    }

    #[test]
    fn reads_format_1() {
        let raw = b"GNU tar-1.15-1\n1700000000 5\n+1700000000 7 2049 1234 ./a\\040b\n";
        let s = Snapshot::parse(raw).unwrap();
        assert_eq!(s.start.sec, 1700000000);
        assert!(s.dirs[0].nfs);
        assert_eq!(s.dirs[0].ino, 1234);
        assert_eq!(s.dirs[0].name, b"./a b");
        assert_eq!(s.dirs[0].entries, None);
    }
}
